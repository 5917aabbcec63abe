package blob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/roost-iot/roost/internal/engine"
)

// legacyMeta is the meta.json of a version stored by Roost versions that kept built-in blobs
// on disk, at <data-dir>/blobs/data/<hash>/<version>/, beside its block files 000000, 000001...
type legacyMeta struct {
	Container string `json:"container"`
	Name      string `json:"name"`
	Blocks    []struct {
		ID   string `json:"id"`
		Size int64  `json:"size"`
	} `json:"blocks"`
}

// importLegacy moves the blobs an older Roost kept in this node's data dir into the engine, once:
// every version found there that the index still names as current is copied into objects and its
// entry rewritten to name them (with compare-and-set, so a commit made meanwhile wins), and the
// directory is removed. Versions the index no longer names, uncommitted blocks and unfinished
// writes are dropped: the old store would have collected them too. A version that fails to
// import stays on disk and is tried again at the next start.
func (l *Local) importLegacy(ctx context.Context) error {
	data := filepath.Join(l.cfg.Dir, "data")
	hashes, err := os.ReadDir(data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	imported, failed := 0, 0
	for _, hd := range hashes {
		versions, err := os.ReadDir(filepath.Join(data, hd.Name()))
		if err != nil {
			continue
		}
		for _, v := range versions {
			dir := filepath.Join(data, hd.Name(), v.Name())
			ok, err := l.importVersion(ctx, dir, v.Name())
			if err != nil {
				failed++
				l.log.Warn("could not import a blob stored by an older version; it stays on disk", "dir", dir, "err", err)
				continue
			}
			if ok {
				imported++
			}
			_ = os.RemoveAll(dir)
		}
		_ = os.Remove(filepath.Join(data, hd.Name())) // only when empty
	}
	if failed == 0 {
		for _, d := range []string{"staging", "tmp", "data"} {
			_ = os.RemoveAll(filepath.Join(l.cfg.Dir, d))
		}
		_ = os.Remove(l.cfg.Dir)
	}
	if imported > 0 || failed > 0 {
		l.log.Info("imported blobs from the data dir into the engine", "imported", imported, "failed", failed)
	}
	return nil
}

// importVersion imports one version directory; it reports false, with no error, for a version
// that is not to be imported (the index names another, or none).
func (l *Local) importVersion(ctx context.Context, dir, version string) (bool, error) {
	mb, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return false, nil // a version whose commit never finished
	}
	var m legacyMeta
	if json.Unmarshal(mb, &m) != nil {
		return false, nil
	}
	p, rev, err := l.cfg.Index.Get(ctx, m.Container, m.Name)
	if errors.Is(err, engine.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// The version's name is unique (time and randomness), so the content is here even if the
	// node was renamed since it stored it.
	if p.Version != version || !isLegacy(p) {
		return false, nil
	}
	var blocks []Extent
	drop := func() {
		for _, b := range blocks {
			l.dropObjects(ctx, b.Obj)
		}
	}
	for i, b := range m.Blocks {
		f, err := os.Open(filepath.Join(dir, fmt.Sprintf("%06d", i)))
		if err != nil {
			drop()
			return false, err
		}
		ext, err := l.writeObject(ctx, m.Name, f, b.Size, nil)
		_ = f.Close()
		if err != nil {
			drop()
			return false, err
		}
		ext.ID = b.ID
		blocks = append(blocks, ext)
	}
	np := p
	np.Node, np.Version = "", ""
	if err := l.setBlocks(ctx, &np, blocks); err != nil {
		drop()
		return false, err
	}
	if np.Blocks == nil && np.Manifest == nil {
		np.Blocks = []Extent{} // an empty blob
	}
	if _, err := l.cfg.Index.Put(ctx, np, rev); err != nil {
		drop()
		if np.Manifest != nil {
			l.dropObjects(ctx, np.Manifest.Obj)
		}
		if errors.Is(err, engine.ErrRevisionMismatch) {
			return false, nil // replaced meanwhile by a commit into the engine
		}
		return false, err
	}
	l.keep(ctx, np.objects()...)
	for _, b := range blocks {
		l.keep(ctx, b.Obj)
	}
	return true, nil
}

package blob

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// stagedBlock is an uncommitted block: the value of its staging key.
type stagedBlock struct {
	Container string `json:"container"`
	Name      string `json:"name"`
	Extent
	// Staged is when it was stored, by the store's clock; it goes [LocalConfig.BlockTTL] later.
	Staged time.Time `json:"staged"`
}

// stagedEntry is a staged block as read back with its key and revision.
type stagedEntry struct {
	key   string
	rev   uint64
	block stagedBlock
}

// stagingLimits is a blob's g.<hash> entry: what the Blob service's limits on uncommitted
// blocks need to know without listing them.
type stagingLimits struct {
	// IDLen is the length in bytes of the blob's block ids; all must have the same.
	IDLen int `json:"idLen"`
	// Count is how many blocks were staged since the last commit (a block staged twice under
	// one id counts twice, so the limit is reached early rather than late).
	Count   int       `json:"count"`
	Updated time.Time `json:"updated"`
}

// trashEntry is a t.<object> entry: the object may be deleted after After unless the blob's
// current version or a staging key refers to it.
type trashEntry struct {
	Container string    `json:"container"`
	Name      string    `json:"name"`
	After     time.Time `json:"after"`
}

func stagedKey(h, hexID, obj string) string { return "s." + h + "." + hexID + "." + obj }
func limitsKey(h string) string             { return "g." + h }
func trashKey(obj string) string            { return "t." + obj }

// maxReserveAttempts bounds the compare-and-set loop on a blob's limits entry, which the
// parallel Put Blocks of one upload update together.
const maxReserveAttempts = 64

// reserve counts one more staged block of the blob with hash h, checking the limits: at most
// [MaxUncommittedBlocks], and ids all of one length.
func (l *Local) reserve(ctx context.Context, h string, idLen int) error {
	key := limitsKey(h)
	for range maxReserveAttempts {
		var (
			lim stagingLimits
			rev uint64
		)
		ent, err := l.staging.Get(ctx, key)
		switch {
		case errors.Is(err, engine.ErrNotFound):
			lim.IDLen = idLen
		case err != nil:
			return internal(err, "could not store the block")
		default:
			rev = ent.Revision
			if json.Unmarshal(ent.Value, &lim) != nil {
				rev, lim = 0, stagingLimits{IDLen: idLen}
			}
		}
		if lim.IDLen != idLen {
			return Fail(http.StatusBadRequest, CodeInvalidBlobOrBlock,
				"The specified blob or block content is invalid: all block ids of a blob must have the same length.")
		}
		if lim.Count >= MaxUncommittedBlocks {
			return Fail(http.StatusConflict, CodeBlockCountExceedsLimit,
				"The uncommitted block count cannot exceed the maximum limit of %d blocks.", MaxUncommittedBlocks)
		}
		lim.Count++
		lim.Updated = l.cfg.Now().UTC()
		data, _ := json.Marshal(lim)
		if rev == 0 && err == nil {
			_, err = l.staging.Put(ctx, key, data) // an unreadable entry: start it again
		} else if rev == 0 {
			_, err = l.staging.Create(ctx, key, data)
		} else {
			_, err = l.staging.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, engine.ErrExists) && !errors.Is(err, engine.ErrRevisionMismatch) {
			return internal(err, "could not store the block")
		}
	}
	return Fail(http.StatusServiceUnavailable, CodeServerBusy, "Too many blocks of this blob are being stored at once; try again.")
}

// stagedBlocks lists the uncommitted blocks of the blob with hash h, in the order they were
// stored.
func (l *Local) stagedBlocks(ctx context.Context, h string) ([]stagedEntry, error) {
	var out []stagedEntry
	err := l.staging.Scan(ctx, []string{"s." + h + ".*.*"}, func(e engine.Entry) bool {
		var b stagedBlock
		if json.Unmarshal(e.Value, &b) == nil {
			out = append(out, stagedEntry{key: e.Key, rev: e.Revision, block: b})
		}
		return true
	})
	return out, err
}

// trash schedules object obj, part of blob name, for deletion after the time after.
func (l *Local) trash(ctx context.Context, obj, name string, after time.Time) error {
	data, _ := json.Marshal(trashEntry{Container: l.cfg.Container, Name: name, After: after.UTC()})
	_, err := l.staging.Put(ctx, trashKey(obj), data)
	return err
}

// GCStats says what a garbage collection removed.
type GCStats struct {
	Blocks  int // uncommitted blocks older than the block TTL
	Objects int // objects deleted from the engine (blocks, replaced versions, abandoned writes)
}

// GC removes uncommitted blocks older than the block TTL and deletes the objects whose deletion
// time has come and that nothing refers to any more: discarded blocks, replaced versions, and
// writes that never finished. Any node may run it, several at once.
func (l *Local) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	now := l.cfg.Now()
	var expired []stagedEntry
	err := l.staging.Scan(ctx, []string{"s.>"}, func(e engine.Entry) bool {
		var b stagedBlock
		if json.Unmarshal(e.Value, &b) == nil && now.Sub(b.Staged) > l.cfg.BlockTTL {
			expired = append(expired, stagedEntry{key: e.Key, rev: e.Revision, block: b})
		}
		return true
	})
	if err != nil {
		return st, err
	}
	for _, s := range expired {
		// The deletion entry first: should the key's removal fail, the object is still referred
		// to and the collector keeps it.
		if err := l.trash(ctx, s.block.Obj, s.block.Name, now); err != nil {
			return st, err
		}
		if l.staging.Delete(ctx, s.key, s.rev) == nil {
			st.Blocks++
		}
	}
	var stale []string
	_ = l.staging.Scan(ctx, []string{"g.*"}, func(e engine.Entry) bool {
		var lim stagingLimits
		if json.Unmarshal(e.Value, &lim) != nil || now.Sub(lim.Updated) > l.cfg.BlockTTL {
			stale = append(stale, e.Key)
		}
		return true
	})
	for _, k := range stale {
		_ = l.staging.Delete(ctx, k, 0)
	}

	type due struct {
		obj string
		rev uint64
		t   trashEntry
	}
	var todo []due
	err = l.staging.Scan(ctx, []string{"t.*"}, func(e engine.Entry) bool {
		var t trashEntry
		if json.Unmarshal(e.Value, &t) == nil && !now.Before(t.After) {
			todo = append(todo, due{obj: e.Key[len("t."):], rev: e.Revision, t: t})
		}
		return true
	})
	if err != nil {
		return st, err
	}
	inUse := map[string]map[string]bool{} // container/name -> objects of its current version
	for _, d := range todo {
		id := d.t.Container + "/" + d.t.Name
		used, ok := inUse[id]
		if !ok {
			used = map[string]bool{}
			p, _, err := l.cfg.Index.Get(ctx, d.t.Container, d.t.Name)
			switch {
			case err == nil:
				for _, o := range p.objects() {
					used[o] = true
				}
				if p.Manifest != nil {
					ext, err := l.extents(ctx, p)
					if err != nil {
						return st, err
					}
					for _, e := range ext {
						used[e.Obj] = true
					}
				}
			case !errors.Is(err, engine.ErrNotFound):
				return st, err
			}
			inUse[id] = used
		}
		referred := used[d.obj]
		if !referred {
			h := nameHash(d.t.Container, d.t.Name)
			_ = l.staging.Scan(ctx, []string{"s." + h + ".*." + d.obj}, func(engine.Entry) bool { referred = true; return false })
		}
		if !referred {
			if err := l.objs.Delete(ctx, d.obj); err != nil {
				return st, err
			}
			st.Objects++
		}
		_ = l.staging.Delete(ctx, trashKey(d.obj), d.rev)
	}
	// Deleted keys leave markers; drop those older than a day so the bucket does not grow with
	// every block ever staged.
	if _, err := l.cfg.Engine.PurgeDeletes(ctx, l.staging, 24*time.Hour); err != nil {
		return st, err
	}
	return st, nil
}

package blob

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // Content-MD5 is the Blob service's integrity check, not a security measure
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
)

// Defaults of the built-in store.
const (
	DefaultMaxBlockSize   = 100 << 20
	DefaultMaxPutBlobSize = 256 << 20
	DefaultBlockTTL       = 24 * time.Hour
)

// LocalConfig configures the built-in store.
type LocalConfig struct {
	// Dir is where the store keeps its files (<data-dir>/blobs).
	Dir string
	// Index is the engine-held blob index.
	Index *Index
	// Account is the account name in the SAS canonical resource (the hub's name).
	Account string
	// Container is the one container the store serves.
	Container string
	// Host is the hostName devices are given: host[:port] of this node's HTTPS listener.
	Host string
	// NodeID names this node in the index, so other nodes know where a blob's bytes are.
	NodeID string
	// Sync makes a commit fsync the blob before it becomes visible.
	Sync bool
	// MaxBlockSize is the largest Put Block body in bytes. Zero means 100 MiB.
	MaxBlockSize int64
	// MaxPutBlobSize is the largest Put Blob body in bytes. Zero means 256 MiB.
	MaxPutBlobSize int64
	// BlockTTL is how long an uncommitted block is kept. Zero means a day.
	BlockTTL time.Duration
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Local is the built-in Azure-Blob-compatible store: blobs are files in the data dir, made
// visible atomically, listed in the engine-held [Index].
//
// Layout under Dir (every path component below Dir is made by the store, never taken from a
// request, so no blob name can reach outside its own place):
//
//	staging/<hash>/<hex block id>   uncommitted blocks of the blob whose name hashes to <hash>
//	data/<hash>/<version>/<n>       the n-th block (000000, 000001...) of one committed version
//	data/<hash>/<version>/meta.json its name and committed block list
//	tmp/<random>/                   a version being assembled
//
// A commit hard-links the blocks it names into a new directory under tmp/ (no byte is copied,
// so committing 100 MB costs as much as committing 1 KB), renames the directory into data/
// (atomic on one file system) and then writes the index entry that names it; only then can a
// reader find it. A crash at any point leaves either the old version visible or the new one,
// and at worst an orphan directory that [Local.GC] removes. A replaced version stays on disk for
// an hour, so reads that started before the commit finish; GC removes it after that.
type Local struct {
	cfg LocalConfig
	key []byte
	log *slog.Logger

	mu    sync.Mutex
	locks map[string]*blobLock // per blob hash, held during a commit
	stop  chan struct{}        // closes the garbage collector
	wg    sync.WaitGroup
}

type blobLock struct {
	mu   sync.Mutex
	refs int
}

// OpenLocal opens the built-in store, creating its directories and, on first use in the
// engine, the account key.
func OpenLocal(ctx context.Context, cfg LocalConfig) (*Local, error) {
	if cfg.MaxBlockSize <= 0 {
		cfg.MaxBlockSize = DefaultMaxBlockSize
	}
	if cfg.MaxPutBlobSize <= 0 {
		cfg.MaxPutBlobSize = DefaultMaxPutBlobSize
	}
	if cfg.BlockTTL <= 0 {
		cfg.BlockTTL = DefaultBlockTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, d := range []string{"staging", "data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
	}
	key, err := cfg.Index.AccountKey(ctx)
	if err != nil {
		return nil, err
	}
	return &Local{cfg: cfg, key: key, log: log.With("component", "blob"), locks: map[string]*blobLock{}}, nil
}

// Container returns the container the store serves.
func (l *Local) Container() string { return l.cfg.Container }

// Grant returns a SAS for one blob that lets a device create and write it (and nothing else)
// until expiry.
func (l *Local) Grant(name string, expiry time.Time) Grant {
	s := BlobSAS(l.cfg.Account, l.key, l.cfg.Container, name, "cw", expiry)
	return Grant{HostName: l.cfg.Host, Container: l.cfg.Container, SASToken: "?" + s.Encode()}
}

// ReadSAS returns a SAS that lets its holder read one blob until expiry.
func (l *Local) ReadSAS(name string, expiry time.Time) string {
	return "?" + BlobSAS(l.cfg.Account, l.key, l.cfg.Container, name, "r", expiry).Encode()
}

// URI is the blob's URL as devices see it.
func (l *Local) URI(name string) string {
	return "https://" + l.cfg.Host + "/" + l.cfg.Container + "/" + EscapeName(name)
}

// Authorize checks the SAS in a request's query for an operation on one blob of the store that
// any of the permissions in need allows ("w", "cw", "r").
func (l *Local) Authorize(q url.Values, name, need string, remote net.IP) error {
	s, ok := ParseSAS(q)
	if !ok {
		return authFail("The request carries no shared access signature (sig)")
	}
	return s.Verify(VerifyRequest{Account: l.cfg.Account, Container: l.cfg.Container, Name: name, Key: l.key,
		Need: need, Now: l.cfg.Now(), RemoteIP: remote})
}

// Headers are the blob properties a Put Blob or Put Block List sets (x-ms-blob-content-type
// and friends, x-ms-meta-*).
type Headers struct {
	ContentType, ContentEncoding, ContentLanguage, ContentDisposition, CacheControl string
	ContentMD5                                                                      []byte
	Metadata                                                                        map[string]string
}

// Conditions are a write's preconditions (If-Match, If-None-Match), compared with the current
// version's ETag.
type Conditions struct {
	IfMatch, IfNoneMatch string
}

func (c Conditions) check(cur Props, exists bool) error {
	etag := `"` + cur.ETag + `"`
	if c.IfMatch != "" && (!exists || c.IfMatch != "*" && strings.Trim(c.IfMatch, `"`) != cur.ETag) {
		return Fail(http.StatusPreconditionFailed, CodeConditionNotMet, "The condition specified using HTTP conditional header(s) is not met.")
	}
	if c.IfNoneMatch != "" && exists && (c.IfNoneMatch == "*" || c.IfNoneMatch == etag || c.IfNoneMatch == cur.ETag) {
		if c.IfNoneMatch == "*" {
			return Fail(http.StatusConflict, CodeBlobAlreadyExists, "The specified blob already exists.")
		}
		return Fail(http.StatusPreconditionFailed, CodeConditionNotMet, "The condition specified using HTTP conditional header(s) is not met.")
	}
	return nil
}

// lock serialises commits of one blob on this node.
func (l *Local) lock(h string) func() {
	l.mu.Lock()
	bl := l.locks[h]
	if bl == nil {
		bl = &blobLock{}
		l.locks[h] = bl
	}
	bl.refs++
	l.mu.Unlock()
	bl.mu.Lock()
	return func() {
		bl.mu.Unlock()
		l.mu.Lock()
		if bl.refs--; bl.refs == 0 {
			delete(l.locks, h)
		}
		l.mu.Unlock()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newVersion makes an ETag that also names a version's directory: 0x and 20 hex digits, from
// the clock and randomness so two commits never share one.
func (l *Local) newVersion() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("0x%016X%02X%02X", l.cfg.Now().UnixNano(), b[0], b[1])
}

// writers buffer staged blocks on their way to the disk, in writes of 1 MiB.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1<<20) }}

// trackedWriter remembers its writer's error, so a failed copy can tell the disk's failure from
// the client's.
type trackedWriter struct {
	w   io.Writer
	err error
}

func (t *trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil {
		t.err = err
	}
	return n, err
}

// copyExactly copies size bytes from r to w, failing if r ends early.
func copyExactly(w io.Writer, r io.Reader, size int64) error {
	n, err := io.Copy(w, io.LimitReader(r, size))
	if err != nil {
		return err
	}
	if n != size {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// bodyError maps a failure to read a request body: a client that stopped sending, a read
// deadline, or a body shorter than its Content-Length.
func bodyError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Fail(http.StatusRequestTimeout, CodeOperationTimedOut, "The client stopped sending the request body; nothing was stored.")
	}
	return Fail(http.StatusBadRequest, CodeIncompleteBody, "The request body is shorter than its Content-Length; nothing was stored.")
}

// StageBlock stores an uncommitted block of exactly size bytes read from body. With
// wantMD5 set, the block must hash to it (Content-MD5). It returns the block's MD5 when one was
// asked for. Until its rename into place the block is a temporary file, so a block whose body
// stops halfway is never seen by a commit.
func (l *Local) StageBlock(_ context.Context, name string, id []byte, body io.Reader, size int64, wantMD5 []byte) ([]byte, error) {
	if size > l.cfg.MaxBlockSize {
		return nil, Fail(http.StatusRequestEntityTooLarge, CodeRequestBodyTooLarge,
			"The request body is too large and exceeds the maximum permissible limit of %d bytes.", l.cfg.MaxBlockSize)
	}
	h := nameHash(l.cfg.Container, name)
	dir := filepath.Join(l.cfg.Dir, "staging", h)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, internal(err, "could not store the block")
	}
	if err := checkStaged(dir, len(id)); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if errors.Is(err, fs.ErrNotExist) {
		// A commit of this blob removed its staging directory just now; make it again.
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.CreateTemp(dir, ".tmp-*")
		}
	}
	if err != nil {
		return nil, internal(err, "could not store the block")
	}
	tmp := f.Name()
	defer func() {
		if tmp != "" {
			_ = os.Remove(tmp)
		}
	}()
	// A TLS body arrives a record (16 KiB) at a time; gather it into large writes (the upload
	// benchmark gains about a third).
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() { bw.Reset(nil); writers.Put(bw) }()
	var sum hash.Hash
	dst := &trackedWriter{w: bw}
	var w io.Writer = dst
	if wantMD5 != nil {
		sum = md5.New() //nolint:gosec // see import
		w = io.MultiWriter(dst, sum)
	}
	if err := copyExactly(w, body, size); err != nil {
		_ = f.Close()
		if dst.err != nil {
			return nil, internal(dst.err, "could not store the block")
		}
		return nil, bodyError(err)
	}
	if err := bw.Flush(); err != nil {
		_ = f.Close()
		return nil, internal(err, "could not store the block")
	}
	if l.cfg.Sync {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, internal(err, "could not store the block")
		}
	}
	if err := f.Close(); err != nil {
		return nil, internal(err, "could not store the block")
	}
	var got []byte
	if sum != nil {
		got = sum.Sum(nil)
		if !bytes.Equal(got, wantMD5) {
			return nil, Fail(http.StatusBadRequest, CodeMd5Mismatch, "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
		}
	}
	if err := os.Rename(tmp, filepath.Join(dir, hex.EncodeToString(id))); err != nil {
		return nil, internal(err, "could not store the block")
	}
	tmp = ""
	return got, nil
}

// checkStaged enforces the limits on a blob's uncommitted blocks: at most
// MaxUncommittedBlocks, and all ids of one length.
func checkStaged(dir string, idLen int) error {
	d, err := os.Open(dir)
	if err != nil {
		return internal(err, "could not store the block")
	}
	defer d.Close()
	names, err := d.Readdirnames(MaxUncommittedBlocks + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return internal(err, "could not store the block")
	}
	n := 0
	for _, nm := range names {
		if strings.HasPrefix(nm, ".") {
			continue
		}
		n++
		if len(nm) != 2*idLen {
			return Fail(http.StatusBadRequest, CodeInvalidBlobOrBlock,
				"The specified blob or block content is invalid: all block ids of a blob must have the same length.")
		}
	}
	if n >= MaxUncommittedBlocks {
		return Fail(http.StatusConflict, CodeBlockCountExceedsLimit,
			"The uncommitted block count cannot exceed the maximum limit of %d blocks.", MaxUncommittedBlocks)
	}
	return nil
}

// meta is a committed version's own description, kept beside its content.
type meta struct {
	Container string       `json:"container"`
	Name      string       `json:"name"`
	Blocks    []blockEntry `json:"blocks"`
}

type blockEntry struct {
	ID   string `json:"id"` // hex
	Size int64  `json:"size"`
}

// part is one block of a new version: a staged block file or a block of the current version.
type part struct {
	id   string // hex
	path string
	size int64
}

// CommitBlockList makes a new version of the blob from the blocks refs names, in order, and
// makes it visible atomically. Uncommitted blocks it does not name are discarded.
func (l *Local) CommitBlockList(ctx context.Context, name string, refs []BlockRef, hdr Headers, cond Conditions) (Props, error) {
	h := nameHash(l.cfg.Container, name)
	unlock := l.lock(h)
	defer unlock()
	cur, rev, exists, err := l.current(ctx, name)
	if err != nil {
		return Props{}, err
	}
	if err := cond.check(cur, exists); err != nil {
		return Props{}, err
	}
	committed := map[string]part{}
	if exists && cur.Node == l.cfg.NodeID {
		if m, err := l.readMeta(h, cur.Version); err == nil {
			for i, b := range m.Blocks {
				committed[b.ID] = part{id: b.ID, path: l.partPath(h, cur.Version, i), size: b.Size}
			}
		}
	}
	staging := filepath.Join(l.cfg.Dir, "staging", h)
	parts := make([]part, 0, len(refs))
	idLen := -1
	for i, ref := range refs {
		if idLen >= 0 && len(ref.ID) != idLen {
			return Props{}, Fail(http.StatusBadRequest, CodeInvalidBlockList, "The specified block list is invalid: all block ids of a blob must have the same length.")
		}
		idLen = len(ref.ID)
		id := hex.EncodeToString(ref.ID)
		var (
			p     part
			found bool
		)
		if ref.From != FromCommitted {
			if fi, err := os.Stat(filepath.Join(staging, id)); err == nil {
				p, found = part{id: id, path: filepath.Join(staging, id), size: fi.Size()}, true
			}
		}
		if !found && ref.From != FromUncommitted {
			p, found = committed[id]
		}
		if !found {
			return Props{}, Fail(http.StatusBadRequest, CodeInvalidBlockList,
				"The specified block list is invalid: entry %d (%s) names a block that does not exist.", i+1, ref.From)
		}
		parts = append(parts, p)
	}
	tmp, size, err := l.assemble(ctx, name, parts, nil)
	if err != nil {
		return Props{}, err
	}
	p := l.newProps(name, size, hdr, cur, exists)
	if err := l.publish(ctx, h, tmp, p, cur, rev, exists); err != nil {
		return Props{}, err
	}
	_ = os.RemoveAll(staging) // the Blob service discards uncommitted blocks on commit
	return p, nil
}

// PutBlob writes a whole blob of exactly size bytes from body as one new version. Its MD5 is
// computed and stored; with wantMD5 set, the body must hash to it.
func (l *Local) PutBlob(ctx context.Context, name string, body io.Reader, size int64, hdr Headers, cond Conditions, wantMD5 []byte) (Props, error) {
	if size > l.cfg.MaxPutBlobSize {
		return Props{}, Fail(http.StatusRequestEntityTooLarge, CodeRequestBodyTooLarge,
			"The request body is too large and exceeds the maximum permissible limit of %d bytes.", l.cfg.MaxPutBlobSize)
	}
	h := nameHash(l.cfg.Container, name)
	// Write the bytes before taking the lock: a slow client must not hold up other writers.
	sum := md5.New() //nolint:gosec // see import
	tmp, _, err := l.assemble(ctx, name, nil, func(w io.Writer) error {
		if err := copyExactly(io.MultiWriter(w, sum), body, size); err != nil {
			return bodyError(err)
		}
		return nil
	})
	if err != nil {
		return Props{}, err
	}
	md := sum.Sum(nil)
	if wantMD5 != nil && !bytes.Equal(md, wantMD5) {
		_ = os.RemoveAll(tmp)
		return Props{}, Fail(http.StatusBadRequest, CodeMd5Mismatch, "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
	}
	if hdr.ContentMD5 == nil {
		hdr.ContentMD5 = md
	}
	unlock := l.lock(h)
	defer unlock()
	cur, rev, exists, err := l.current(ctx, name)
	if err == nil {
		err = cond.check(cur, exists)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return Props{}, err
	}
	p := l.newProps(name, size, hdr, cur, exists)
	if err := l.publish(ctx, h, tmp, p, cur, rev, exists); err != nil {
		return Props{}, err
	}
	return p, nil
}

func (l *Local) newProps(name string, size int64, hdr Headers, cur Props, exists bool) Props {
	now := l.cfg.Now().UTC()
	created := now
	if exists && !cur.Created.IsZero() {
		created = cur.Created
	}
	ct := hdr.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	return Props{
		Container: l.cfg.Container, Name: name, Size: size, ETag: l.newVersion(), Created: created, Modified: now,
		ContentType: ct, ContentEncoding: hdr.ContentEncoding, ContentLanguage: hdr.ContentLanguage,
		ContentDisposition: hdr.ContentDisposition, CacheControl: hdr.CacheControl, ContentMD5: hdr.ContentMD5,
		Metadata: hdr.Metadata, Node: l.cfg.NodeID, URI: l.URI(name),
	}
}

// current reads the blob's index entry; exists is false when there is none.
func (l *Local) current(ctx context.Context, name string) (Props, uint64, bool, error) {
	p, rev, err := l.cfg.Index.Get(ctx, l.cfg.Container, name)
	if errors.Is(err, engine.ErrNotFound) {
		return Props{}, 0, false, nil
	}
	if err != nil {
		return Props{}, 0, false, internal(err, "could not read the blob's properties")
	}
	return p, rev, true, nil
}

// assemble builds a version in a new directory under tmp/: the parts hard-linked in order (a
// part that cannot be linked is copied), or, for a whole blob, one block that write writes. It
// returns the directory and the content's size.
func (l *Local) assemble(ctx context.Context, name string, parts []part, write func(io.Writer) error) (string, int64, error) {
	tmp := filepath.Join(l.cfg.Dir, "tmp", randomHex(12))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", 0, internal(err, "could not store the blob")
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	m := meta{Container: l.cfg.Container, Name: name, Blocks: make([]blockEntry, 0, len(parts))}
	var size int64
	for i, p := range parts {
		if err := ctx.Err(); err != nil {
			return "", 0, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The request was cancelled.")
		}
		dst := filepath.Join(tmp, partName(i))
		if err := os.Link(p.path, dst); err != nil {
			if err := copyFile(dst, p.path, p.size); err != nil {
				return "", 0, internal(err, "could not assemble the blob")
			}
		}
		m.Blocks = append(m.Blocks, blockEntry{ID: p.id, Size: p.size})
		size += p.size
	}
	if write != nil {
		f, err := os.OpenFile(filepath.Join(tmp, partName(0)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return "", 0, internal(err, "could not store the blob")
		}
		defer f.Close()
		bw := writers.Get().(*bufio.Writer)
		bw.Reset(f)
		defer func() { bw.Reset(nil); writers.Put(bw) }()
		dst := &trackedWriter{w: bw}
		if err := write(dst); err != nil {
			if dst.err != nil {
				return "", 0, internal(dst.err, "could not store the blob")
			}
			return "", 0, err
		}
		if err := bw.Flush(); err != nil {
			return "", 0, internal(err, "could not store the blob")
		}
		fi, err := f.Stat()
		if err != nil {
			return "", 0, internal(err, "could not store the blob")
		}
		size = fi.Size()
		if l.cfg.Sync {
			if err := f.Sync(); err != nil {
				return "", 0, internal(err, "could not store the blob")
			}
		}
		if err := f.Close(); err != nil {
			return "", 0, internal(err, "could not store the blob")
		}
		m.Blocks = append(m.Blocks, blockEntry{Size: size})
	}
	mb, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), mb, 0o600); err != nil {
		return "", 0, internal(err, "could not store the blob")
	}
	ok = true
	return tmp, size, nil
}

// partName is the file name of a version's i-th block.
func partName(i int) string { return fmt.Sprintf("%06d", i) }

// copyFile copies size bytes of src into a new file dst; the kernel copies file to file.
func copyFile(dst, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := copyExactly(out, in, size); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// publish moves an assembled version into data/ and then points the index at it: the moment
// the index entry is written is the moment the new version becomes visible. The replaced
// version's files are removed afterwards.
func (l *Local) publish(ctx context.Context, h, tmp string, p Props, cur Props, rev uint64, exists bool) error {
	p.Version = p.ETag
	final := l.versionDir(h, p.Version)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		_ = os.RemoveAll(tmp)
		return internal(err, "could not store the blob")
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return internal(err, "could not store the blob")
	}
	if l.cfg.Sync {
		syncDir(filepath.Dir(final))
	}
	if !exists {
		rev = 0
	}
	for attempt := 0; ; attempt++ {
		_, err := l.cfg.Index.Put(ctx, p, rev)
		if err == nil {
			break
		}
		if attempt < 5 && (errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrExists)) {
			// Another node committed this blob meanwhile; the last commit wins, as in the Blob
			// service. Replace whatever is there now.
			var e2 error
			cur, rev, exists, e2 = l.current(ctx, p.Name)
			if e2 == nil {
				if !exists {
					rev = 0
				}
				continue
			}
			err = e2
		}
		_ = os.RemoveAll(final)
		return internal(err, "could not record the blob")
	}
	if exists && cur.Node == l.cfg.NodeID && cur.Version != "" && cur.Version != p.Version {
		// Readers may still be in the replaced version: GC removes it an hour from now.
		now := l.cfg.Now()
		_ = os.Chtimes(l.versionDir(h, cur.Version), now, now)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func (l *Local) versionDir(h, version string) string {
	return filepath.Join(l.cfg.Dir, "data", h, version)
}

func (l *Local) partPath(h, version string, i int) string {
	return filepath.Join(l.versionDir(h, version), partName(i))
}

func (l *Local) readMeta(h, version string) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(l.versionDir(h, version), "meta.json"))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// Stat returns a committed blob's properties, from the index.
func (l *Local) Stat(ctx context.Context, name string) (Props, error) {
	p, _, exists, err := l.current(ctx, name)
	if err != nil {
		return Props{}, err
	}
	if !exists {
		return Props{}, Fail(http.StatusNotFound, CodeBlobNotFound, "The specified blob does not exist.")
	}
	return p, nil
}

// Confirm checks that an upload's blob exists and returns its properties.
func (l *Local) Confirm(ctx context.Context, name string) (Props, error) { return l.Stat(ctx, name) }

// Open returns the current version of a blob for reading, from its first byte. The version's
// files stay on disk for an hour after a newer commit replaces it, so a read in progress
// finishes with the bytes it started with.
func (l *Local) Open(ctx context.Context, name string) (*Content, Props, error) {
	h := nameHash(l.cfg.Container, name)
	for attempt := 0; attempt < 3; attempt++ {
		p, err := l.Stat(ctx, name)
		if err != nil {
			return nil, Props{}, err
		}
		if p.Node != l.cfg.NodeID {
			return nil, Props{}, Fail(http.StatusNotFound, CodeBlobNotFound,
				"The specified blob is stored in the data dir of node %s; read it through that node.", p.Node)
		}
		m, err := l.readMeta(h, p.Version)
		if err == nil {
			return newContent(l.versionDir(h, p.Version), m.Blocks), p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, Props{}, internal(err, "could not read the blob")
		}
		// A commit replaced the version between the index read and the open; read again.
	}
	return nil, Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The blob is being rewritten; try again.")
}

// OpenReader is [Local.Open] for callers that only read forward.
func (l *Local) OpenReader(ctx context.Context, name string) (io.ReadCloser, Props, error) {
	c, p, err := l.Open(ctx, name)
	if err != nil {
		return nil, Props{}, err
	}
	return c, p, nil
}

// Content is a committed version's bytes, read across its block files in order. It is an
// io.ReadSeeker (for ranges) and an io.ReaderAt; it holds one block file open at a time.
type Content struct {
	*io.SectionReader
	parts *partsReader
}

func newContent(dir string, blocks []blockEntry) *Content {
	pr := &partsReader{dir: dir, offs: make([]int64, len(blocks)+1), cur: -1}
	for i, b := range blocks {
		pr.offs[i+1] = pr.offs[i] + b.Size
	}
	return &Content{SectionReader: io.NewSectionReader(pr, 0, pr.offs[len(blocks)]), parts: pr}
}

// Close closes the open block file.
func (c *Content) Close() error { return c.parts.close() }

// partsReader reads at an offset across a version's block files.
type partsReader struct {
	dir  string
	offs []int64 // offs[i] is where block i starts; the last entry is the size

	mu  sync.Mutex
	cur int // the block whose file is open, -1 for none
	f   *os.File
}

func (r *partsReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		last := len(r.offs) - 1
		if pos >= r.offs[last] {
			return n, io.EOF
		}
		i := sort.Search(last, func(i int) bool { return r.offs[i+1] > pos })
		if i != r.cur {
			if r.f != nil {
				_ = r.f.Close()
				r.f = nil
			}
			f, err := os.Open(filepath.Join(r.dir, partName(i)))
			if err != nil {
				return n, err
			}
			r.f, r.cur = f, i
		}
		want := min(int64(len(p)-n), r.offs[i+1]-pos)
		m, err := r.f.ReadAt(p[n:n+int(want)], pos-r.offs[i])
		n += m
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a block file shorter than its entry
			}
			return n, err
		}
	}
	return n, nil
}

func (r *partsReader) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f, r.cur = nil, -1
	return err
}

// GCStats says what a garbage collection removed.
type GCStats struct {
	Blocks   int // uncommitted blocks older than the block TTL
	Temp     int // abandoned temporary files and directories
	Versions int // versions no index entry names
}

// GC removes uncommitted blocks older than the block TTL, temporary files older than an hour
// (an upload or commit that never finished) and versions on this node that the index no longer
// names (a commit that crashed before its index write, or whose old version was not removed).
func (l *Local) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	now := l.cfg.Now()
	old := func(fi fs.FileInfo, age time.Duration) bool { return now.Sub(fi.ModTime()) > age }
	staging := filepath.Join(l.cfg.Dir, "staging")
	dirs, err := os.ReadDir(staging)
	if err != nil {
		return st, err
	}
	for _, d := range dirs {
		dir := filepath.Join(staging, d.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		left := len(files)
		for _, f := range files {
			fi, err := f.Info()
			if err != nil {
				continue
			}
			ttl := l.cfg.BlockTTL
			if strings.HasPrefix(f.Name(), ".tmp-") {
				ttl = time.Hour
			}
			if old(fi, ttl) && os.Remove(filepath.Join(dir, f.Name())) == nil {
				left--
				if ttl == time.Hour {
					st.Temp++
				} else {
					st.Blocks++
				}
			}
		}
		if left == 0 {
			_ = os.Remove(dir)
		}
	}
	tmpRoot := filepath.Join(l.cfg.Dir, "tmp")
	if tmps, err := os.ReadDir(tmpRoot); err == nil {
		for _, t := range tmps {
			if fi, err := t.Info(); err == nil && old(fi, time.Hour) && os.RemoveAll(filepath.Join(tmpRoot, t.Name())) == nil {
				st.Temp++
			}
		}
	}
	data := filepath.Join(l.cfg.Dir, "data")
	hashes, err := os.ReadDir(data)
	if err != nil {
		return st, err
	}
	for _, hd := range hashes {
		versions, err := os.ReadDir(filepath.Join(data, hd.Name()))
		if err != nil {
			continue
		}
		for _, v := range versions {
			fi, err := v.Info()
			if err != nil || !old(fi, time.Hour) {
				continue // a commit may be between its rename and its index write
			}
			m, err := l.readMeta(hd.Name(), v.Name())
			if err != nil {
				continue
			}
			p, _, exists, err := l.current(ctx, m.Name)
			if err != nil {
				return st, err
			}
			if !exists || p.Node != l.cfg.NodeID || p.Version != v.Name() {
				if os.RemoveAll(filepath.Join(data, hd.Name(), v.Name())) == nil {
					st.Versions++
				}
			}
		}
		_ = os.Remove(filepath.Join(data, hd.Name())) // only succeeds when empty
	}
	return st, nil
}

// Grant is where and how a device uploads one blob: the file upload answer's hostName,
// containerName and sasToken.
type Grant struct {
	HostName  string
	Container string
	// SASToken starts with '?'.
	SASToken string
}

// StartGC runs [Local.GC] every interval (zero means an hour) until [Local.Close].
func (l *Local) StartGC(every time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil {
		return
	}
	stop := make(chan struct{})
	l.stop = stop
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), every)
				st, err := l.GC(ctx)
				cancel()
				if err != nil {
					l.log.Warn("blob garbage collection failed", "err", err)
				} else if st != (GCStats{}) {
					l.log.Info("blob garbage collection", "blocks", st.Blocks, "temp", st.Temp, "versions", st.Versions)
				}
			}
		}
	}()
}

// Close stops the garbage collector started by [Local.StartGC] and waits for it.
func (l *Local) Close() {
	l.mu.Lock()
	stop := l.stop
	l.stop = nil
	l.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	l.wg.Wait()
}

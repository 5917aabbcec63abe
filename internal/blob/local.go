package blob

import (
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
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	// ReplacedGrace is how long the content of a replaced version stays readable, so that reads
	// which started before a commit finish with the bytes they started with.
	ReplacedGrace = time.Hour
)

// LocalConfig configures the built-in store.
type LocalConfig struct {
	// Engine holds everything the store keeps: blocks, committed content, the staging area.
	Engine *engine.Engine
	// Index is the engine-held blob index.
	Index *Index
	// Dir is where Roost versions before 0.2 kept blob content on disk (<data-dir>/blobs). Blobs
	// found there that the index says this node holds are imported into the engine when the store
	// opens, and the directory is removed. Empty skips the import.
	Dir string
	// Account is the account name in the SAS canonical resource (the hub's name).
	Account string
	// Container is the one container the store serves.
	Container string
	// Host is the hostName devices are given: host[:port] of the hub's HTTPS listener.
	Host string
	// NodeID names this node (for log lines).
	NodeID string
	// MaxBlockSize is the largest Put Block body in bytes. Zero means 100 MiB.
	MaxBlockSize int64
	// MaxPutBlobSize is the largest Put Blob body in bytes. Zero means 256 MiB.
	MaxPutBlobSize int64
	// BlockTTL is how long an uncommitted block is kept. Zero means a day.
	BlockTTL time.Duration
	// ChunkSize is the size in bytes of the engine messages content is stored in. Zero means
	// 256 KiB.
	ChunkSize int
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Local is the built-in Azure-Blob-compatible store. Everything it keeps is in the engine, so
// every node of a cluster serves every blob: a device may send each block of an upload to a
// different node, commit through a third and read through a fourth.
//
// What is where (all in the engine):
//
//	stream blobdata     content: objects cut into chunks (blobdata.<object>.<n>), one object per
//	                    staged block, per Put Blob, and per large block list
//	bucket blobs        the index: i.<container>.<device>.<hash> -> [Props], naming the objects
//	                    of the committed version in order (inline, or in a block-list object)
//	bucket blobstaging  s.<hash>.<hex block id>.<object>  an uncommitted block
//	                    g.<hash>                           the blob's staging limits (id length, count)
//	                    t.<object>                         an object to delete after a time
//
// <hash> is a digest of the container and blob name: no part of a client-chosen name becomes a
// key or a path.
//
// A Put Block writes its object, then its staging key; a block whose body stops halfway never
// gets one, so no commit can see it. A commit writes the index entry with compare-and-set on the
// revision it read, and that write is the moment the new version becomes visible: a reader
// sees the old version's objects or the new one's, never a mix, and a commit copies no byte
// (committing 100 MB costs as much as committing 1 KB). Commits of one blob through two nodes
// at once are ordered by that compare-and-set; the loser starts over on the winner's version.
//
// Deletion goes through t.<object> entries: an object is deleted once its entry's time has
// passed and neither the blob's current version nor a staging key names it. An object being
// written has an entry a day ahead (a writer that crashes leaves garbage for a day, never a
// hole), discarded uncommitted blocks one due at once, a replaced version's objects one due in
// [ReplacedGrace].
type Local struct {
	cfg     LocalConfig
	key     []byte
	log     *slog.Logger
	objs    *engine.Objects
	staging *engine.Bucket

	mu   sync.Mutex
	stop chan struct{} // closes the garbage collector
	wg   sync.WaitGroup
}

// OpenLocal opens the built-in store, creating its engine state on first use and, on first use
// in the engine, the account key. It imports blobs an older version left in cfg.Dir.
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
	if cfg.Engine == nil || cfg.Index == nil {
		return nil, errors.New("blob: the built-in store needs an engine and an index")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key, err := cfg.Index.AccountKey(ctx)
	if err != nil {
		return nil, err
	}
	objs, err := cfg.Engine.Objects(ctx, engine.ObjectsConfig{Name: dataStream, Description: "file upload blob content",
		ChunkSize: cfg.ChunkSize})
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	staging, err := cfg.Engine.KV(ctx, engine.BucketConfig{Name: stagingBucket,
		Description: "file upload blobs: uncommitted blocks and content to delete"})
	if err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	l := &Local{cfg: cfg, key: key, log: log.With("component", "blob"), objs: objs, staging: staging}
	if cfg.Dir != "" {
		if err := l.importLegacy(ctx); err != nil {
			return nil, fmt.Errorf("blob: import %s: %w", cfg.Dir, err)
		}
	}
	return l, nil
}

// dataStream is the engine stream of blob content; stagingBucket the bucket of the staging area.
const (
	dataStream    = "blobdata"
	stagingBucket = "blobstaging"
)

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

// newVersion makes an ETag: 0x and 20 hex digits, from
// the clock and randomness so two commits never share one.
func (l *Local) newVersion() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("0x%016X%02X%02X", l.cfg.Now().UnixNano(), b[0], b[1])
}

// trackedWriter remembers its writer's error, so a failed copy can tell the engine's failure
// from the client's.
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

// StageBlock stores an uncommitted block of exactly size bytes read from body. With wantMD5
// set, the block must hash to it (Content-MD5). It returns the block's MD5 when one was asked
// for. The block is streamed into the engine a chunk at a time, never held whole; it becomes
// visible to a commit only once all of it is stored.
func (l *Local) StageBlock(ctx context.Context, name string, id []byte, body io.Reader, size int64, wantMD5 []byte) ([]byte, error) {
	if size > l.cfg.MaxBlockSize {
		return nil, Fail(http.StatusRequestEntityTooLarge, CodeRequestBodyTooLarge,
			"The request body is too large and exceeds the maximum permissible limit of %d bytes.", l.cfg.MaxBlockSize)
	}
	h := nameHash(l.cfg.Container, name)
	if err := l.reserve(ctx, h, len(id)); err != nil {
		return nil, err
	}
	var sum hash.Hash
	if wantMD5 != nil {
		sum = md5.New() //nolint:gosec // see import
	}
	ext, err := l.writeObject(ctx, name, body, size, sum)
	if err != nil {
		return nil, err
	}
	var got []byte
	if sum != nil {
		got = sum.Sum(nil)
		if !bytes.Equal(got, wantMD5) {
			l.dropObjects(ctx, ext.Obj)
			return nil, Fail(http.StatusBadRequest, CodeMd5Mismatch, "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
		}
	}
	ext.ID = hex.EncodeToString(id)
	sb := stagedBlock{Container: l.cfg.Container, Name: name, Extent: ext, Staged: l.cfg.Now().UTC()}
	data, _ := json.Marshal(sb)
	if _, err := l.staging.Put(ctx, stagedKey(h, ext.ID, ext.Obj), data); err != nil {
		l.dropObjects(ctx, ext.Obj)
		return nil, internal(err, "could not store the block")
	}
	l.keep(ctx, ext.Obj)
	return got, nil
}

// writeObject streams exactly size bytes of body into a new object, hashing them into sum when
// it is not nil. The object has a deletion entry a day ahead until its owner calls
// [Local.keep]: a writer that dies leaves garbage, never a reference to missing content.
func (l *Local) writeObject(ctx context.Context, name string, body io.Reader, size int64, sum hash.Hash) (Extent, error) {
	obj := engine.NewObjectID()
	if err := l.trash(ctx, obj, name, l.cfg.Now().Add(l.cfg.BlockTTL)); err != nil {
		return Extent{}, internal(err, "could not store the content")
	}
	w := l.objs.NewWriter(ctx, obj)
	dst := &trackedWriter{w: w}
	var to io.Writer = dst
	if sum != nil {
		to = io.MultiWriter(dst, sum)
	}
	err := copyExactly(to, body, size)
	if err == nil {
		_, err = w.Close()
		if err != nil {
			dst.err = err
		}
	}
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		_ = w.Abort(cctx)
		_ = l.staging.Delete(cctx, trashKey(obj), 0)
		if dst.err != nil && ctx.Err() == nil {
			return Extent{}, internal(dst.err, "could not store the content")
		}
		return Extent{}, bodyError(err)
	}
	return Extent{Obj: obj, Size: size, Chunk: l.objs.ChunkSize()}, nil
}

// cleanupContext is for work that must finish although the request that caused it ended.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// dropObjects deletes objects no one refers to, now.
func (l *Local) dropObjects(ctx context.Context, objs ...string) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	for _, o := range objs {
		if err := l.objs.Delete(cctx, o); err != nil {
			l.log.Warn("could not delete blob content; the garbage collector will", "object", o, "err", err)
			continue
		}
		_ = l.staging.Delete(cctx, trashKey(o), 0)
	}
}

// keep removes the deletion entries of objects that are now referred to.
func (l *Local) keep(ctx context.Context, objs ...string) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	for _, o := range objs {
		// Should this fail the entry stays, and the collector, finding the object referred to,
		// keeps it and drops the entry.
		_ = l.staging.Delete(cctx, trashKey(o), 0)
	}
}

// Extent is one object of a committed version: a block, in order, or a block list.
type Extent struct {
	// ID is the hex block id; empty for a Put Blob's content and for a block list.
	ID string `json:"id,omitempty"`
	// Obj names the object in the engine.
	Obj string `json:"obj"`
	// Size is its length in bytes.
	Size int64 `json:"size"`
	// Chunk is the chunk size it was written with.
	Chunk int `json:"chunk"`
}

// maxInlineBlocks is how many blocks an index entry lists itself; a longer block list is an
// object of its own (an index entry must stay well under the engine's message size).
const maxInlineBlocks = 256

// blockList is the content of a block-list object.
type blockList struct {
	Blocks []Extent `json:"blocks"`
}

// CommitBlockList makes a new version of the blob from the blocks refs names, in order, and
// makes it visible atomically. Uncommitted blocks it does not name are discarded.
func (l *Local) CommitBlockList(ctx context.Context, name string, refs []BlockRef, hdr Headers, cond Conditions) (Props, error) {
	h := nameHash(l.cfg.Container, name)
	for range maxCommitAttempts {
		cur, rev, exists, err := l.current(ctx, name)
		if err != nil {
			return Props{}, err
		}
		if err := cond.check(cur, exists); err != nil {
			return Props{}, err
		}
		committed := map[string]Extent{}
		var old []Extent
		if exists {
			if old, err = l.extents(ctx, cur); err != nil && !isLegacy(cur) {
				return Props{}, err
			}
			for _, e := range old {
				committed[e.ID] = e
			}
		}
		staged, err := l.stagedBlocks(ctx, h)
		if err != nil {
			return Props{}, internal(err, "could not read the uncommitted blocks")
		}
		latest := map[string]stagedEntry{}
		for _, s := range staged {
			latest[s.block.ID] = s // later writes come later
		}
		blocks := make([]Extent, 0, len(refs))
		idLen := -1
		var size int64
		for i, ref := range refs {
			if idLen >= 0 && len(ref.ID) != idLen {
				return Props{}, Fail(http.StatusBadRequest, CodeInvalidBlockList, "The specified block list is invalid: all block ids of a blob must have the same length.")
			}
			idLen = len(ref.ID)
			id := hex.EncodeToString(ref.ID)
			var (
				e     Extent
				found bool
			)
			if ref.From != FromCommitted {
				var s stagedEntry
				if s, found = latest[id]; found {
					e = s.block.Extent
				}
			}
			if !found && ref.From != FromUncommitted {
				e, found = committed[id]
			}
			if !found {
				return Props{}, Fail(http.StatusBadRequest, CodeInvalidBlockList,
					"The specified block list is invalid: entry %d (%s) names a block that does not exist.", i+1, ref.From)
			}
			blocks = append(blocks, e)
			size += e.Size
		}
		p := l.newProps(name, size, hdr, cur, exists)
		if err := l.setBlocks(ctx, &p, blocks); err != nil {
			return Props{}, err
		}
		if _, err := l.cfg.Index.Put(ctx, p, revIf(exists, rev)); err != nil {
			if p.Manifest != nil {
				l.dropObjects(ctx, p.Manifest.Obj)
			}
			if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrExists) {
				continue // another node committed this blob meanwhile: start over on its version
			}
			return Props{}, internal(err, "could not record the blob")
		}
		l.afterCommit(ctx, h, p, cur, exists, staged)
		return p, nil
	}
	return Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The blob is being committed by other requests; try again.")
}

// maxCommitAttempts bounds how often a commit starts over after losing to another.
const maxCommitAttempts = 10

func revIf(exists bool, rev uint64) uint64 {
	if !exists {
		return 0
	}
	return rev
}

// setBlocks lists a new version's blocks in its entry, or in a block-list object when there are
// many.
func (l *Local) setBlocks(ctx context.Context, p *Props, blocks []Extent) error {
	if len(blocks) <= maxInlineBlocks {
		p.Blocks = blocks
		return nil
	}
	data, _ := json.Marshal(blockList{Blocks: blocks})
	ext, err := l.writeObject(ctx, p.Name, bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		return err
	}
	p.Manifest = &ext
	return nil
}

// objects lists the objects a version refers to.
func (p Props) objects() []string {
	out := make([]string, 0, len(p.Blocks)+1)
	for _, b := range p.Blocks {
		out = append(out, b.Obj)
	}
	if p.Manifest != nil {
		out = append(out, p.Manifest.Obj)
	}
	return out
}

// afterCommit tidies up after a new version p replaced cur: it keeps the objects p names,
// discards the blob's other uncommitted blocks (as the Blob service does) and schedules the
// replaced version's own objects for deletion once reads in progress have had time to finish.
func (l *Local) afterCommit(ctx context.Context, h string, p, cur Props, exists bool, staged []stagedEntry) {
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	used := map[string]bool{}
	for _, b := range p.Blocks {
		used[b.Obj] = true
	}
	if p.Manifest != nil {
		used[p.Manifest.Obj] = true
		l.keep(cctx, p.Manifest.Obj)
		// A long list's blocks are not in p.Blocks; read them back from what was just written.
		if bl, err := l.extents(cctx, p); err == nil {
			for _, b := range bl {
				used[b.Obj] = true
			}
		}
	}
	now := l.cfg.Now()
	for _, s := range staged {
		if !used[s.block.Obj] {
			if err := l.trash(cctx, s.block.Obj, p.Name, now); err != nil {
				continue // keep the key: the block stays staged until its day is over
			}
		}
		_ = l.staging.Delete(cctx, s.key, s.rev)
	}
	_ = l.staging.Delete(cctx, limitsKey(h), 0)
	if exists {
		var oldObjs []string
		if old, err := l.extents(cctx, cur); err == nil {
			for _, b := range old {
				oldObjs = append(oldObjs, b.Obj)
			}
		}
		if cur.Manifest != nil {
			oldObjs = append(oldObjs, cur.Manifest.Obj)
		}
		for _, o := range oldObjs {
			if !used[o] {
				_ = l.trash(cctx, o, p.Name, now.Add(ReplacedGrace))
			}
		}
	}
}

// PutBlob writes a whole blob of exactly size bytes from body as one new version. Its MD5 is
// computed and stored; with wantMD5 set, the body must hash to it.
func (l *Local) PutBlob(ctx context.Context, name string, body io.Reader, size int64, hdr Headers, cond Conditions, wantMD5 []byte) (Props, error) {
	if size > l.cfg.MaxPutBlobSize {
		return Props{}, Fail(http.StatusRequestEntityTooLarge, CodeRequestBodyTooLarge,
			"The request body is too large and exceeds the maximum permissible limit of %d bytes.", l.cfg.MaxPutBlobSize)
	}
	// Check the conditions before taking the bytes, and again before making them visible.
	cur, _, exists, err := l.current(ctx, name)
	if err == nil {
		err = cond.check(cur, exists)
	}
	if err != nil {
		return Props{}, err
	}
	sum := md5.New() //nolint:gosec // see import
	ext, err := l.writeObject(ctx, name, body, size, sum)
	if err != nil {
		return Props{}, err
	}
	md := sum.Sum(nil)
	if wantMD5 != nil && !bytes.Equal(md, wantMD5) {
		l.dropObjects(ctx, ext.Obj)
		return Props{}, Fail(http.StatusBadRequest, CodeMd5Mismatch, "The MD5 value specified in the request did not match with the MD5 value calculated by the server.")
	}
	if hdr.ContentMD5 == nil {
		hdr.ContentMD5 = md
	}
	for range maxCommitAttempts {
		cur, rev, exists, err := l.current(ctx, name)
		if err == nil {
			err = cond.check(cur, exists)
		}
		if err != nil {
			l.dropObjects(ctx, ext.Obj)
			return Props{}, err
		}
		p := l.newProps(name, size, hdr, cur, exists)
		p.Blocks = []Extent{ext}
		if _, err := l.cfg.Index.Put(ctx, p, revIf(exists, rev)); err != nil {
			if errors.Is(err, engine.ErrRevisionMismatch) || errors.Is(err, engine.ErrExists) {
				continue
			}
			l.dropObjects(ctx, ext.Obj)
			return Props{}, internal(err, "could not record the blob")
		}
		l.keep(ctx, ext.Obj)
		if exists {
			l.afterCommit(ctx, nameHash(l.cfg.Container, name), p, cur, true, nil)
		}
		return p, nil
	}
	l.dropObjects(ctx, ext.Obj)
	return Props{}, Fail(http.StatusServiceUnavailable, CodeServerBusy, "The blob is being committed by other requests; try again.")
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
		Metadata: hdr.Metadata, URI: l.URI(name),
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

// isLegacy reports whether an entry names content an older version kept in a node's data dir,
// not yet imported into the engine.
func isLegacy(p Props) bool { return p.Node != "" && p.Blocks == nil && p.Manifest == nil }

// extents returns the objects of a version's content, in order.
func (l *Local) extents(ctx context.Context, p Props) ([]Extent, error) {
	if p.Manifest == nil {
		if isLegacy(p) {
			return nil, Fail(http.StatusServiceUnavailable, CodeServerBusy,
				"The blob was stored by an older Roost in the data dir of node %s, which imports it into the engine when it starts with this version.", p.Node)
		}
		return p.Blocks, nil
	}
	r := l.objs.NewReader(ctx, p.Manifest.Obj, p.Manifest.Size, p.Manifest.Chunk)
	defer r.Close()
	data := make([]byte, p.Manifest.Size)
	if _, err := r.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && p.Manifest.Size == 0) {
		return nil, internal(err, "could not read the blob's block list")
	}
	var bl blockList
	if err := json.Unmarshal(data, &bl); err != nil {
		return nil, internal(err, "could not read the blob's block list")
	}
	return bl.Blocks, nil
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

// Open returns the current version of a blob for reading, from its first byte, on any node. A
// replaced version's content stays in the engine for [ReplacedGrace], so a read in progress
// finishes with the bytes it started with. ctx bounds the reads.
func (l *Local) Open(ctx context.Context, name string) (*Content, Props, error) {
	p, err := l.Stat(ctx, name)
	if err != nil {
		return nil, Props{}, err
	}
	ext, err := l.extents(ctx, p)
	if err != nil {
		return nil, Props{}, err
	}
	return newContent(ctx, l.objs, ext), p, nil
}

// OpenReader is [Local.Open] for callers that only read forward.
func (l *Local) OpenReader(ctx context.Context, name string) (io.ReadCloser, Props, error) {
	c, p, err := l.Open(ctx, name)
	if err != nil {
		return nil, Props{}, err
	}
	return c, p, nil
}

// Content is a committed version's bytes, read across its objects in order. It is an
// io.ReadSeeker (for ranges) and an io.ReaderAt; it reads one object at a time, a few chunks
// ahead.
type Content struct {
	*io.SectionReader
	parts *extentsReader
}

func newContent(ctx context.Context, objs *engine.Objects, ext []Extent) *Content {
	er := &extentsReader{ctx: ctx, objs: objs, ext: ext, offs: make([]int64, len(ext)+1), cur: -1}
	for i, e := range ext {
		er.offs[i+1] = er.offs[i] + e.Size
	}
	return &Content{SectionReader: io.NewSectionReader(er, 0, er.offs[len(ext)]), parts: er}
}

// Close stops reading.
func (c *Content) Close() error { return c.parts.close() }

// extentsReader reads at an offset across a version's objects.
type extentsReader struct {
	ctx  context.Context // the request's; bounds the reads
	objs *engine.Objects
	ext  []Extent
	offs []int64 // offs[i] is where object i starts; the last entry is the size

	mu  sync.Mutex
	cur int // the object being read, -1 for none
	r   *engine.ObjectReader
}

func (r *extentsReader) ReadAt(p []byte, off int64) (int, error) {
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
			if r.r != nil {
				_ = r.r.Close()
			}
			e := r.ext[i]
			r.r, r.cur = r.objs.NewReader(r.ctx, e.Obj, e.Size, e.Chunk), i
		}
		want := min(int64(len(p)-n), r.offs[i+1]-pos)
		m, err := r.r.ReadAt(p[n:n+int(want)], pos-r.offs[i])
		n += m
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

func (r *extentsReader) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil {
		_ = r.r.Close()
		r.r, r.cur = nil, -1
	}
	return nil
}

// Grant is where and how a device uploads one blob: the file upload answer's hostName,
// containerName and sasToken.
type Grant struct {
	HostName  string
	Container string
	// SASToken starts with '?'.
	SASToken string
}

// StartGC runs [Local.GC] every interval (zero means an hour) until [Local.Close]. Every node
// runs it; the work is idempotent, so two nodes collecting at once do no harm.
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
					l.log.Info("blob garbage collection", "blocks", st.Blocks, "objects", st.Objects)
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

package blob_test

import (
	"bytes"
	"context"
	"crypto/md5" //nolint:gosec // the Blob service's checksum
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/blob/blobtest"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

type storeFixture struct {
	st  *blob.Local
	ix  *blob.Index
	dir string
	clk *blobtest.Clock
}

func newStore(t testing.TB, eng *engine.Engine, node string) *storeFixture {
	t.Helper()
	return newStoreChunk(t, eng, node, 64<<10)
}

// newStoreChunk opens a store whose content chunks are chunk bytes (0: the default).
func newStoreChunk(t testing.TB, eng *engine.Engine, node string, chunk int) *storeFixture {
	t.Helper()
	if eng == nil {
		eng = enginetest.Start(t)
	}
	clk := blobtest.NewClock()
	dir := t.TempDir()
	st, ix := blobtest.Open(t, eng, blob.LocalConfig{Dir: dir, NodeID: node, Now: clk.Now,
		MaxBlockSize: 8 << 20, MaxPutBlobSize: 16 << 20, ChunkSize: chunk})
	return &storeFixture{st: st, ix: ix, dir: dir, clk: clk}
}

func blockID(i int) []byte { return []byte(fmt.Sprintf("block-%06d", i)) }

func (f *storeFixture) stage(t testing.TB, name string, i int, data []byte) {
	t.Helper()
	if _, err := f.st.StageBlock(context.Background(), name, blockID(i), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("stage block %d: %v", i, err)
	}
}

func (f *storeFixture) read(t testing.TB, name string) ([]byte, blob.Props) {
	t.Helper()
	file, p, err := f.st.Open(context.Background(), name)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer file.Close()
	b, err := io.ReadAll(file)
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

func latest(ids ...int) []blob.BlockRef {
	out := make([]blob.BlockRef, len(ids))
	for i, id := range ids {
		out[i] = blob.BlockRef{ID: blockID(id), From: blob.FromLatest}
	}
	return out
}

// walk lists every file under dir, relative to it.
func walk(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestBlobBlocksCommitInListOrder(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	name := "dev1/video.bin"
	parts := [][]byte{bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 2000), []byte("c")}
	for i, p := range parts {
		f.stage(t, name, i, p)
	}
	if _, err := f.st.Stat(ctx, name); storageCode(err) != blob.CodeBlobNotFound {
		t.Fatalf("staged blocks are visible before the commit: %v", err)
	}
	p, err := f.st.CommitBlockList(ctx, name, latest(2, 0, 1), blob.Headers{ContentType: "video/mp4"}, blob.Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]byte{}, parts[2]...), parts[0]...), parts[1]...)
	got, gp := f.read(t, name)
	if !bytes.Equal(got, want) || p.Size != int64(len(want)) || gp.ETag != p.ETag || gp.ContentType != "video/mp4" {
		t.Fatalf("content %d bytes (want %d), props %+v", len(got), len(want), gp)
	}
	if !strings.HasPrefix(p.URI, "https://hub.test/fileupload/dev1/video.bin") || p.Node != "" || len(p.Blocks) != 3 {
		t.Errorf("props: %+v", p)
	}
	// Uncommitted blocks are gone after the commit; a new version can reuse committed blocks.
	f.stage(t, name, 3, []byte("dd"))
	refs := []blob.BlockRef{{ID: blockID(0), From: blob.FromCommitted}, {ID: blockID(3), From: blob.FromUncommitted}, {ID: blockID(1), From: blob.FromLatest}}
	p2, err := f.st.CommitBlockList(ctx, name, refs, blob.Headers{}, blob.Conditions{IfMatch: `"` + p.ETag + `"`})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = f.read(t, name)
	if want := string(parts[0]) + "dd" + string(parts[1]); string(got) != want || p2.ETag == p.ETag {
		t.Fatalf("second version: %q", got)
	}
	if _, err := f.st.CommitBlockList(ctx, name, latest(2), blob.Headers{}, blob.Conditions{}); storageCode(err) != blob.CodeInvalidBlockList {
		t.Fatalf("block 2 was discarded by the first commit, got %v", err)
	}
	if _, err := f.st.CommitBlockList(ctx, name, latest(0), blob.Headers{}, blob.Conditions{IfMatch: `"` + p.ETag + `"`}); storageCode(err) != blob.CodeConditionNotMet {
		t.Fatalf("stale If-Match: %v", err)
	}
	if _, err := f.st.CommitBlockList(ctx, name, latest(0), blob.Headers{}, blob.Conditions{IfNoneMatch: "*"}); storageCode(err) != blob.CodeBlobAlreadyExists {
		t.Fatalf("If-None-Match * on an existing blob: %v", err)
	}
	// The replaced version's block 2 (no longer named) stays for readers in progress, and goes an
	// hour later; the blocks the new version shares with it stay.
	if st, err := f.st.GC(ctx); err != nil || st.Objects != 0 {
		t.Errorf("GC at once: %+v %v", st, err)
	}
	f.clk.Advance(61 * time.Minute)
	if st, err := f.st.GC(ctx); err != nil || st.Objects != 1 {
		t.Errorf("GC an hour later: %+v %v", st, err)
	}
	if got, _ := f.read(t, name); string(got) != string(parts[0])+"dd"+string(parts[1]) {
		t.Errorf("the current version was collected")
	}
	if keys := f.st.StagingKeys(ctx); len(keys) != 0 {
		t.Errorf("staging keys left: %v", keys)
	}
}

func TestBlobPutBlobAndChecksums(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	data := []byte("hello, blob")
	sum := md5.Sum(data) //nolint:gosec // see import
	p, err := f.st.PutBlob(ctx, "dev1/a.txt", bytes.NewReader(data), int64(len(data)), blob.Headers{ContentType: "text/plain"}, blob.Conditions{}, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.ContentMD5, sum[:]) {
		t.Errorf("stored MD5 %x, want %x", p.ContentMD5, sum)
	}
	bad := md5.Sum([]byte("other")) //nolint:gosec // see import
	if _, err := f.st.PutBlob(ctx, "dev1/b.txt", bytes.NewReader(data), int64(len(data)), blob.Headers{}, blob.Conditions{}, bad[:]); storageCode(err) != blob.CodeMd5Mismatch {
		t.Fatalf("wrong MD5: %v", err)
	}
	if _, err := f.st.StageBlock(ctx, "dev1/c.txt", blockID(0), bytes.NewReader(data), int64(len(data)), bad[:]); storageCode(err) != blob.CodeMd5Mismatch {
		t.Fatalf("wrong block MD5: %v", err)
	}
	if _, err := f.st.Stat(ctx, "dev1/b.txt"); storageCode(err) != blob.CodeBlobNotFound {
		t.Fatalf("a blob whose checksum failed exists: %v", err)
	}
	if _, err := f.st.PutBlob(ctx, "dev1/big", strings.NewReader(""), 17<<20, blob.Headers{}, blob.Conditions{}, nil); storageCode(err) != blob.CodeRequestBodyTooLarge {
		t.Fatalf("over the Put Blob limit: %v", err)
	}
	if _, err := f.st.StageBlock(ctx, "dev1/big", blockID(0), strings.NewReader(""), 9<<20, nil); storageCode(err) != blob.CodeRequestBodyTooLarge {
		t.Fatalf("over the block limit: %v", err)
	}
	if _, err := f.st.StageBlock(ctx, "dev1/ids", []byte("short"), strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.StageBlock(ctx, "dev1/ids", []byte("longer-id"), strings.NewReader("x"), 1, nil); storageCode(err) != blob.CodeInvalidBlobOrBlock {
		t.Fatalf("block ids of two lengths: %v", err)
	}
}

// A body that ends early, or fails, leaves nothing behind: no block, no blob, no temp file.
func TestBlobIncompleteBodiesLeaveNothing(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	short := strings.NewReader("only half")
	if _, err := f.st.StageBlock(ctx, "dev1/x", blockID(0), short, 100, nil); storageCode(err) != blob.CodeIncompleteBody {
		t.Fatalf("short block: %v", err)
	}
	broken := iotest.TimeoutReader(bytes.NewReader(bytes.Repeat([]byte("z"), 64<<10)))
	if _, err := f.st.PutBlob(ctx, "dev1/y", broken, 64<<10, blob.Headers{}, blob.Conditions{}, nil); err == nil {
		t.Fatal("a failing body was stored")
	}
	if _, err := f.st.CommitBlockList(ctx, "dev1/x", latest(0), blob.Headers{}, blob.Conditions{}); storageCode(err) != blob.CodeInvalidBlockList {
		t.Fatalf("the half block can be committed: %v", err)
	}
	// What remains is the limits entry of dev1/x, which counted the block before its body failed.
	for _, k := range f.st.StagingKeys(ctx) {
		if !strings.HasPrefix(k, "g.") {
			t.Errorf("staging key left behind: %s", k)
		}
	}
	if n := f.st.Chunks(ctx); n != 0 {
		t.Fatalf("%d chunks left behind", n)
	}
	if files := walk(t, f.dir); len(files) != 0 {
		t.Fatalf("files left behind: %v", files)
	}
}

// Readers see the old version or the new one, never a mix or a partial file, while a commit
// replaces a large blob again and again.
func TestBlobCommitIsAtomicForReaders(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	name := "dev1/atomic.bin"
	const size = 2 << 20
	versions := map[string]byte{}
	commit := func(fill byte) {
		f.stage(t, name, 0, bytes.Repeat([]byte{fill}, size/2))
		f.stage(t, name, 1, bytes.Repeat([]byte{fill}, size/2))
		p, err := f.st.CommitBlockList(ctx, name, latest(0, 1), blob.Headers{}, blob.Conditions{})
		if err != nil {
			t.Error(err)
			return
		}
		versions[p.ETag] = fill
	}
	commit('0')
	var (
		wg   sync.WaitGroup
		stop atomic.Bool
		bad  atomic.Value
	)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				file, _, err := f.st.Open(ctx, name)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				b, err := io.ReadAll(file)
				file.Close()
				if err != nil || len(b) != size || bytes.Count(b, b[:1]) != size {
					bad.Store(fmt.Sprintf("read %d bytes, mixed=%v, err=%v", len(b), len(b) > 0 && bytes.Count(b, b[:1]) != len(b), err))
					return
				}
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		commit(byte('0' + i%10))
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
}

func TestBlobGarbageCollection(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	f.stage(t, "dev1/abandoned", 0, []byte("never committed"))
	f.stage(t, "dev1/kept", 0, []byte("kept"))
	if _, err := f.st.CommitBlockList(ctx, "dev1/kept", latest(0), blob.Headers{}, blob.Conditions{}); err != nil {
		t.Fatal(err)
	}
	// A writer that died before its content was referred to (a node that crashed mid-block).
	if err := f.st.WriteAbandoned(ctx, "dev1/crashed", []byte("half a block")); err != nil {
		t.Fatal(err)
	}
	st, err := f.st.GC(ctx)
	if err != nil || st != (blob.GCStats{}) {
		t.Fatalf("fresh content was collected: %+v %v", st, err)
	}
	f.clk.Advance(2 * time.Hour)
	if st, err = f.st.GC(ctx); err != nil || st != (blob.GCStats{}) {
		t.Fatalf("after 2h: %+v %v", st, err)
	}
	// A block staged now, by the store's clock: two hours after the first one.
	f.stage(t, "dev1/abandoned", 1, []byte("still fresh"))
	f.clk.Advance(22*time.Hour + time.Minute) // the first block is a day old, the second 22 h
	if st, err = f.st.GC(ctx); err != nil || st.Blocks != 1 || st.Objects != 2 {
		t.Fatalf("after a day: %+v %v (keys %v)", st, err, f.st.StagingKeys(ctx))
	}
	if _, err := f.st.CommitBlockList(ctx, "dev1/abandoned", latest(0), blob.Headers{}, blob.Conditions{}); storageCode(err) != blob.CodeInvalidBlockList {
		t.Fatalf("an expired block was committed: %v", err)
	}
	f.clk.Advance(2 * time.Hour)
	if st, err = f.st.GC(ctx); err != nil || st.Blocks != 1 || st.Objects != 1 {
		t.Fatalf("after 26 h: %+v %v (keys %v)", st, err, f.st.StagingKeys(ctx))
	}
	if got, _ := f.read(t, "dev1/kept"); string(got) != "kept" {
		t.Fatalf("a committed blob was collected: %q", got)
	}
	if keys := f.st.StagingKeys(ctx); len(keys) != 0 {
		t.Fatalf("staging left: %v", keys)
	}
	// What is left is the committed blob's one chunk.
	if n := f.st.Chunks(ctx); n != 1 {
		t.Fatalf("%d chunks left, want 1", n)
	}
}

// A commit that loses the race for a block's staging key to the collector keeps the block: the
// collector deletes only content that neither the current version nor a staging key names.
func TestBlobCollectorSparesCommittedBlocks(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	f.stage(t, "dev1/late", 0, []byte("committed just in time"))
	f.clk.Advance(25 * time.Hour)
	if _, err := f.st.CommitBlockList(ctx, "dev1/late", latest(0), blob.Headers{}, blob.Conditions{}); err != nil {
		t.Fatal(err)
	}
	if st, err := f.st.GC(ctx); err != nil || st.Objects != 0 {
		t.Fatalf("GC: %+v %v", st, err)
	}
	if got, _ := f.read(t, "dev1/late"); string(got) != "committed just in time" {
		t.Fatalf("read %q", got)
	}
}

// Names are never paths: whatever a client names its blob, the store writes under its own
// directory, in files it names itself.
func TestBlobNamesCannotEscape(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	for _, name := range []string{"../../etc/passwd", "dev1/../../x", "dev1/./x", "/abs", "dev1//x", `dev1\..\x`, "dev1/x.", "dev1/\x00", "dev1/" + strings.Repeat("a", 1100)} {
		if err := blob.CheckName(name); storageCode(err) != blob.CodeInvalidResourceName {
			t.Errorf("CheckName(%q) = %v, want InvalidResourceName", name, err)
		}
	}
	// Even a name CheckName would refuse cannot reach outside the store if a caller skipped it.
	outside := t.TempDir()
	name := "../../../../../../" + outside + "/pwned"
	if _, err := f.st.PutBlob(ctx, name, strings.NewReader("x"), 1, blob.Headers{}, blob.Conditions{}, nil); err != nil {
		t.Fatal(err)
	}
	f.stage(t, name, 0, []byte("y"))
	if files := walk(t, outside); len(files) != 0 {
		t.Fatalf("wrote outside the store: %v", files)
	}
	if files := walk(t, f.dir); len(files) != 0 {
		t.Fatalf("the store wrote files: %v", files)
	}
	for _, k := range f.st.StagingKeys(ctx) {
		if strings.Contains(k, "pwned") || strings.Contains(k, "..") {
			t.Fatalf("a client-chosen name became a key: %s", k)
		}
	}
	for _, ok := range []string{"dev1/a", "dev1/dir/sub/file.tar.gz", "dev1/naïve café.jpg", "dev1/%41"} {
		if err := blob.CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
}

func TestBlobIndexListsPerDevice(t *testing.T) {
	t.Parallel()
	f := newStore(t, nil, "n1")
	ctx := context.Background()
	for _, n := range []string{"d.1/a", "d.1/b", "d2/a"} {
		if _, err := f.st.PutBlob(ctx, n, strings.NewReader("x"), 1, blob.Headers{}, blob.Conditions{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	if err := f.ix.List(ctx, "fileupload", "d.1", func(p blob.Props) bool { names = append(names, p.Name); return true }); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 || names[0] != "d.1/a" || names[1] != "d.1/b" {
		t.Fatalf("d.1's blobs: %v", names)
	}
	n := 0
	_ = f.ix.List(ctx, "fileupload", "", func(blob.Props) bool { n++; return true })
	if n != 3 {
		t.Fatalf("all blobs: %d", n)
	}
}

// Two nodes on one NATS cluster share the key, the index and the content: a SAS issued by one
// is honoured by the other, blocks staged through either are committed through one and read
// through the other.
func TestBlobTwoNodesShareEverything(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := newStore(t, ext.Connect(t), "node-a")
	b := newStore(t, ext.Connect(t), "node-b")
	ctx := context.Background()
	g := a.st.Grant("dev1/x", time.Now().Add(time.Hour))
	q, err := urlQuery(g.SASToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.st.Authorize(q, "dev1/x", "w", nil); err != nil {
		t.Fatalf("node b refuses node a's SAS: %v", err)
	}
	var want []byte
	for i := 0; i < 6; i++ {
		part := bytes.Repeat([]byte{byte('a' + i)}, 100_000+i) // several chunks each
		want = append(want, part...)
		node := a
		if i%2 == 1 {
			node = b
		}
		node.stage(t, "dev1/x", i, part)
	}
	p, err := a.st.CommitBlockList(ctx, "dev1/x", latest(0, 1, 2, 3, 4, 5), blob.Headers{}, blob.Conditions{})
	if err != nil {
		t.Fatal(err)
	}
	got, bp := b.read(t, "dev1/x")
	if !bytes.Equal(got, want) || bp.ETag != p.ETag {
		t.Fatalf("node b read %d bytes (want %d), etag %s (want %s)", len(got), len(want), bp.ETag, p.ETag)
	}
	// A commit through b that reuses a's committed blocks.
	if _, err := b.st.CommitBlockList(ctx, "dev1/x", []blob.BlockRef{{ID: blockID(5), From: blob.FromCommitted}}, blob.Headers{}, blob.Conditions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.read(t, "dev1/x"); !bytes.Equal(got, want[len(want)-100_005:]) {
		t.Fatalf("node a read %d bytes after node b's commit", len(got))
	}
}

// Commits of one blob through two nodes at once: each reader sees one of them whole.
func TestBlobConcurrentCommitsAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := newStore(t, ext.Connect(t), "node-a")
	b := newStore(t, ext.Connect(t), "node-b")
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, f := range []*storeFixture{a, b} {
		data := bytes.Repeat([]byte{byte('A' + i)}, 300_000)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 5; n++ {
				if _, err := f.st.PutBlob(ctx, "dev1/race", bytes.NewReader(data), int64(len(data)), blob.Headers{}, blob.Conditions{}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, _ := b.read(t, "dev1/race")
	if len(got) != 300_000 || bytes.Count(got, got[:1]) != len(got) {
		t.Fatalf("a mixed or short blob: %d bytes", len(got))
	}
}

// Blobs an older version kept in the data dir are imported into the engine when the store
// opens, and the directory goes.
func TestBlobImportsTheDataDirOfOlderVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	eng := enginetest.Start(t)
	ix, err := blob.OpenIndex(ctx, eng)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, version string, blocks ...string) {
		h := blob.NameHashForTest("fileupload", name)
		vdir := filepath.Join(dir, "data", h, version)
		if err := os.MkdirAll(vdir, 0o700); err != nil {
			t.Fatal(err)
		}
		meta := `{"container":"fileupload","name":"` + name + `","blocks":[`
		for i, b := range blocks {
			_ = os.WriteFile(filepath.Join(vdir, fmt.Sprintf("%06d", i)), []byte(b), 0o600)
			if i > 0 {
				meta += ","
			}
			meta += fmt.Sprintf(`{"id":"%s","size":%d}`, hexID(i), len(b))
		}
		_ = os.WriteFile(filepath.Join(vdir, "meta.json"), []byte(meta+"]}"), 0o600)
	}
	write("dev1/old.txt", "0xV1", "hello, ", "old world")
	write("dev1/old.txt", "0xV0", "a replaced version")
	_ = os.MkdirAll(filepath.Join(dir, "staging", "abc"), 0o700)
	_ = os.WriteFile(filepath.Join(dir, "staging", "abc", "00"), []byte("uncommitted"), 0o600)
	for _, p := range []blob.Props{
		{Container: "fileupload", Name: "dev1/old.txt", Size: 16, ETag: "0xV1", Node: "n1", Version: "0xV1"},
		// Stored by another node that has not started with this version yet.
		{Container: "fileupload", Name: "dev1/other-node.txt", Size: 8, ETag: "0xV2", Node: "n2", Version: "0xV2"},
	} {
		if err := ix.Set(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st, err := blob.OpenLocal(ctx, blob.LocalConfig{Engine: eng, Dir: dir, Index: ix, Account: "hub", Container: "fileupload",
		Host: "hub.test", NodeID: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := &storeFixture{st: st, ix: ix, dir: dir}
	got, p := f.read(t, "dev1/old.txt")
	if string(got) != "hello, old world" || p.Node != "" || p.ETag != "0xV1" {
		t.Fatalf("imported blob: %q %+v", got, p)
	}
	if _, _, err := st.Open(ctx, "dev1/other-node.txt"); storageCode(err) != blob.CodeServerBusy || !strings.Contains(errMsg(err), "n2") {
		t.Fatalf("a blob still in another node's dir: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the old store's dir is still there: %v", walk(t, dir))
	}
}

func errMsg(err error) string {
	var e interface{ Error() string }
	if errors.As(err, &e) {
		return e.Error()
	}
	return ""
}

func urlQuery(sas string) (url.Values, error) { return url.ParseQuery(strings.TrimPrefix(sas, "?")) }

func hexID(i int) string { return hex.EncodeToString(blockID(i)) }

func TestBlobBlockList(t *testing.T) {
	t.Parallel()
	id := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	good := `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><BlockList><Latest>` + id("b1") + `</Latest>` +
		`<Committed>` + id("b2") + `</Committed><Uncommitted>` + id("b3") + "</Uncommitted>\n<Latest> " + id("b4") + " </Latest></BlockList>"
	refs, err := blob.ParseBlockList(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Latest b1", "Committed b2", "Uncommitted b3", "Latest b4"}
	for i, r := range refs {
		if got := r.From + " " + string(r.ID); i >= len(want) || got != want[i] {
			t.Fatalf("entry %d: %s, want %v", i, got, want)
		}
	}
	if len(refs) != len(want) {
		t.Fatalf("%d entries", len(refs))
	}
	huge := "<BlockList>" + strings.Repeat("<Latest>"+id("b1")+"</Latest>", blob.MaxCommittedBlocks+1) + "</BlockList>"
	tests := []struct{ name, body, code string }{
		{"empty list", "<BlockList></BlockList>", ""},
		{"not xml", "{}", blob.CodeInvalidXMLDocument},
		{"wrong root", "<Blocks/>", blob.CodeInvalidXMLDocument},
		{"unknown kind", "<BlockList><Newest>" + id("x") + "</Newest></BlockList>", blob.CodeInvalidXMLDocument},
		{"nested", "<BlockList><Latest><x/></Latest></BlockList>", blob.CodeInvalidXMLDocument},
		{"bad base64", "<BlockList><Latest>!!</Latest></BlockList>", blob.CodeInvalidBlockList},
		{"id too long", "<BlockList><Latest>" + id(strings.Repeat("x", 65)) + "</Latest></BlockList>", blob.CodeInvalidBlockList},
		{"too many blocks", huge, blob.CodeInvalidBlockList},
		{"body too large", "<BlockList>" + strings.Repeat(" ", blob.MaxBlockListBody) + "</BlockList>", blob.CodeRequestBodyTooLarge},
		{"unclosed", "<BlockList><Latest>" + id("a"), blob.CodeInvalidXMLDocument},
		{"entity", `<!DOCTYPE x [<!ENTITY e "e">]><BlockList><Latest>&e;</Latest></BlockList>`, blob.CodeInvalidXMLDocument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := blob.ParseBlockList(strings.NewReader(tc.body))
			if got := storageCode(err); got != tc.code {
				t.Fatalf("got %q (%v), want %q", got, err, tc.code)
			}
		})
	}
}

func FuzzParseBlockList(f *testing.F) {
	f.Add(`<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>YmxvY2sx</Latest></BlockList>`)
	f.Add(`<BlockList><Committed>AA==</Committed><Uncommitted>AQ==</Uncommitted></BlockList>`)
	f.Add(`<BlockList><Latest>`)
	f.Fuzz(func(t *testing.T, body string) {
		refs, err := blob.ParseBlockList(strings.NewReader(body))
		if err != nil {
			if storageCode(err) == "" {
				t.Fatalf("failure without a storage code: %v", err)
			}
			return
		}
		if len(refs) > blob.MaxCommittedBlocks {
			t.Fatalf("%d entries", len(refs))
		}
		for _, r := range refs {
			if len(r.ID) == 0 || len(r.ID) > blob.MaxBlockIDLength {
				t.Fatalf("block id of %d bytes", len(r.ID))
			}
		}
	})
}

// BenchmarkStoreUpload measures the store alone (no network): a 100 MB blob staged as 25
// blocks of 4 MiB, one after another, into the embedded engine, and committed.
func BenchmarkStoreUpload(b *testing.B) {
	f := newStoreChunk(b, nil, "n1", 0)
	ctx := context.Background()
	const size, block = 100 << 20, 4 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("dev/b%d", i)
		var refs []blob.BlockRef
		for j := 0; j < size/block; j++ {
			if _, err := f.st.StageBlock(ctx, name, blockID(j), bytes.NewReader(data[j*block:(j+1)*block]), block, nil); err != nil {
				b.Fatal(err)
			}
			refs = append(refs, blob.BlockRef{ID: blockID(j), From: blob.FromLatest})
		}
		if _, err := f.st.CommitBlockList(ctx, name, refs, blob.Headers{}, blob.Conditions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	for i := range p {
		p[i] = byte(i)
	}
	r.n -= int64(len(p))
	return len(p), nil
}

// A 100 MB block is streamed into the engine, not held: the node's heap (the engine is a
// separate nats-server here) grows by a few chunks, not by the block.
func TestBlobStagesLargeBlocksInBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	ext := enginetest.StartExternal(t)
	eng := ext.Connect(t)
	ctx := context.Background()
	st, _ := blobtest.Open(t, eng, blob.LocalConfig{})
	const size = 100 << 20
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	if _, err := st.StageBlock(ctx, "dev1/big", blockID(0), &patternReader{n: size}, size, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitBlockList(ctx, "dev1/big", latest(0), blob.Headers{}, blob.Conditions{}); err != nil {
		t.Fatal(err)
	}
	c, _, err := st.Open(ctx, "dev1/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, c)
	c.Close()
	close(done)
	wg.Wait()
	if err != nil || n != size {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	grew := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("heap in use grew by %.1f MiB for a %d MiB block", float64(grew)/(1<<20), size>>20)
	if grew > 32<<20 {
		t.Fatalf("heap in use grew by %d MiB while staging and reading a %d MiB block", grew>>20, size>>20)
	}
}

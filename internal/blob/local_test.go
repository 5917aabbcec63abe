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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

// clock is a settable clock for TTLs.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type storeFixture struct {
	st  *blob.Local
	ix  *blob.Index
	dir string
	clk *clock
}

func newStore(t testing.TB, eng *engine.Engine, node string) *storeFixture {
	t.Helper()
	ctx := context.Background()
	if eng == nil {
		eng = enginetest.Start(t)
	}
	ix, err := blob.OpenIndex(ctx, eng)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	dir := t.TempDir()
	st, err := blob.OpenLocal(ctx, blob.LocalConfig{Dir: dir, Index: ix, Account: "hub", Container: "fileupload",
		Host: "hub.test", NodeID: node, Now: clk.Now, MaxBlockSize: 8 << 20, MaxPutBlobSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
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
	if !strings.HasPrefix(p.URI, "https://hub.test/fileupload/dev1/video.bin") || p.Node != "n1" {
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
	// The replaced version stays for readers in progress, and goes an hour later.
	versions := func() int {
		n := 0
		for _, p := range walk(t, filepath.Join(f.dir, "data")) {
			if strings.HasSuffix(p, "meta.json") {
				n++
			}
		}
		return n
	}
	if n := versions(); n != 2 {
		t.Errorf("%d versions on disk, want 2: %v", n, walk(t, f.dir))
	}
	f.clk.Advance(61 * time.Minute)
	if st, err := f.st.GC(ctx); err != nil || st.Versions != 1 || versions() != 1 {
		t.Errorf("GC an hour later: %+v %v, %d versions left", st, err, versions())
	}
	if got, _ := f.read(t, name); string(got) != string(parts[0])+"dd"+string(parts[1]) {
		t.Errorf("the current version was collected")
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
	// A crashed commit: a version directory no index entry names, and a stray temp directory.
	orphan := filepath.Join(f.dir, "data", "0123456789abcdef0123456789abcdef", "0xDEAD")
	if err := os.MkdirAll(orphan, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(orphan, "000000"), []byte("orphan"), 0o600)
	_ = os.WriteFile(filepath.Join(orphan, "meta.json"), []byte(`{"container":"fileupload","name":"dev1/ghost"}`), 0o600)
	_ = os.MkdirAll(filepath.Join(f.dir, "tmp", "stray"), 0o700)

	st, err := f.st.GC(ctx)
	if err != nil || st != (blob.GCStats{}) {
		t.Fatalf("fresh files were collected: %+v %v", st, err)
	}
	f.clk.Advance(2 * time.Hour)
	if st, err = f.st.GC(ctx); err != nil || st.Versions != 1 || st.Temp != 1 || st.Blocks != 0 {
		t.Fatalf("after 2h: %+v %v", st, err)
	}
	// A block staged now, by the store's clock: two hours after the first one.
	f.stage(t, "dev1/abandoned", 1, []byte("still fresh"))
	fresh := filepath.Join(f.dir, "staging")
	for _, p := range walk(t, fresh) {
		if strings.HasSuffix(p, hexID(1)) {
			_ = os.Chtimes(filepath.Join(fresh, p), f.clk.Now(), f.clk.Now())
		}
	}
	f.clk.Advance(22*time.Hour + time.Minute) // the first block is a day old, the second 22 h
	if st, err = f.st.GC(ctx); err != nil || st.Blocks != 1 {
		t.Fatalf("after a day: %+v %v (files %v)", st, err, walk(t, f.dir))
	}
	f.clk.Advance(2 * time.Hour)
	if st, err = f.st.GC(ctx); err != nil || st.Blocks != 1 {
		t.Fatalf("after 26 h: %+v %v (files %v)", st, err, walk(t, f.dir))
	}
	if got, _ := f.read(t, "dev1/kept"); string(got) != "kept" {
		t.Fatalf("a committed blob was collected: %q", got)
	}
	if files := walk(t, filepath.Join(f.dir, "staging")); len(files) != 0 {
		t.Fatalf("staging left: %v", files)
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
	for _, p := range walk(t, f.dir) {
		if strings.Contains(p, "pwned") || strings.Contains(p, "..") {
			t.Fatalf("a client-chosen name became a path: %s", p)
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

// Two nodes on one engine share the key and the index: a SAS issued by one is honoured by the
// other, and a blob stored on one is known, but not readable, on the other.
func TestBlobTwoNodesShareKeyAndIndex(t *testing.T) {
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
	if _, err := a.st.PutBlob(ctx, "dev1/x", strings.NewReader("x"), 1, blob.Headers{}, blob.Conditions{}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := b.st.Stat(ctx, "dev1/x")
	if err != nil || p.Node != "node-a" {
		t.Fatalf("node b's view: %+v %v", p, err)
	}
	if _, _, err := b.st.Open(ctx, "dev1/x"); storageCode(err) != blob.CodeBlobNotFound || !strings.Contains(errMsg(err), "node-a") {
		t.Fatalf("reading node a's blob on node b: %v", err)
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
// blocks of 4 MiB and committed.
func BenchmarkStoreUpload(b *testing.B) {
	f := newStore(b, nil, "n1")
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

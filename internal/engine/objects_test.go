package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestObjectsWriteReadDelete(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	o, err := eng.Objects(ctx, engine.ObjectsConfig{Name: "objtest", ChunkSize: 1000, Window: 2})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 10_500)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	id := engine.NewObjectID()
	w := o.NewWriter(ctx, id)
	// Odd write sizes cross chunk boundaries.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 777)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	size, err := w.Close()
	if err != nil || size != int64(len(data)) {
		t.Fatalf("close: %d %v", size, err)
	}
	r := o.NewReader(ctx, id, size, 1000)
	got, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	part := make([]byte, 1500)
	if n, err := r.ReadAt(part, 9_700); n != 800 || !errors.Is(err, io.EOF) || !bytes.Equal(part[:n], data[9_700:]) {
		t.Fatalf("tail: %d %v", n, err)
	}
	if n, err := r.ReadAt(part, 1_234); n != len(part) || err != nil || !bytes.Equal(part, data[1_234:2_734]) {
		t.Fatalf("seek back: %d %v", n, err)
	}
	_ = r.Close()

	// A reader told a wrong size sees the difference instead of short or padded content.
	bad := o.NewReader(ctx, id, size+10, 1000)
	if _, err := io.ReadAll(io.NewSectionReader(bad, 0, size+10)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("wrong size: %v", err)
	}
	_ = bad.Close()

	if err := o.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	gone := o.NewReader(ctx, id, size, 1000)
	defer gone.Close()
	if _, err := gone.ReadAt(part, 0); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("read after delete: %v", err)
	}
	// Abort removes what a writer stored.
	id2 := engine.NewObjectID()
	w = o.NewWriter(ctx, id2)
	_, _ = w.Write(data)
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	ab := o.NewReader(ctx, id2, 1000, 1000)
	defer ab.Close()
	if _, err := ab.ReadAt(part[:10], 0); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("read after abort: %v", err)
	}
}

// BenchmarkObjectsWrite writes 100 MB objects to the embedded engine, in 4 MiB writes.
func BenchmarkObjectsWrite(b *testing.B) {
	eng := enginetest.Start(b)
	ctx := context.Background()
	o, err := eng.Objects(ctx, engine.ObjectsConfig{Name: "objbench"})
	if err != nil {
		b.Fatal(err)
	}
	const size, block = 100 << 20, 4 << 20
	data := bytes.Repeat([]byte("0123456789abcdef"), block/16)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		w := o.NewWriter(ctx, engine.NewObjectID())
		for range size / block {
			if _, err := w.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
}

func TestPurgeDeletesKeepsNewerValues(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	b, err := eng.KV(ctx, engine.BucketConfig{Name: "purgetest"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"gone", "back", "kept"} {
		if _, err := b.Put(ctx, k, []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	_ = b.Delete(ctx, "gone", 0)
	_ = b.Delete(ctx, "back", 0)
	if n, err := eng.PurgeDeletes(ctx, b, time.Hour); err != nil || n != 0 {
		t.Fatalf("young markers purged: %d %v", n, err)
	}
	if _, err := b.Put(ctx, "back", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if n, err := eng.PurgeDeletes(ctx, b, -time.Hour); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if e, err := b.Get(ctx, "back"); err != nil || string(e.Value) != "v2" {
		t.Fatalf("a key written again after its delete: %q %v", e.Value, err)
	}
	if e, err := b.Get(ctx, "kept"); err != nil || string(e.Value) != "v1" {
		t.Fatalf("an untouched key: %q %v", e.Value, err)
	}
	if _, err := b.Get(ctx, "gone"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("a deleted key: %v", err)
	}
	if _, err := b.Create(ctx, "gone", []byte("new")); err != nil {
		t.Fatalf("create after the marker was purged: %v", err)
	}
}

// The leader path that a reader falls back to when a replica has not caught up reads the same
// chunk as a direct get, and reports a missing one as not found.
func TestObjectsLeaderGet(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	o, err := eng.Objects(ctx, engine.ObjectsConfig{Name: "objleader", ChunkSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	id := engine.NewObjectID()
	w := o.NewWriter(ctx, id)
	_, _ = w.Write(bytes.Repeat([]byte("xy"), 75))
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := engine.LeaderGetForTest(ctx, o, "objleader."+id+".1")
	if err != nil || string(got) != strings.Repeat("xy", 25) {
		t.Fatalf("leader get: %q %v", got, err)
	}
	if _, err := engine.LeaderGetForTest(ctx, o, "objleader."+id+".2"); err == nil {
		t.Fatal("a chunk past the end was found")
	}
}

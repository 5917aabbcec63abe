package engine_test

import (
	"context"
	"errors"
	"testing"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestEngineKVCompareAndSet(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		ctx := context.Background()
		b, err := eng.KV(ctx, engine.BucketConfig{Name: "t"})
		if err != nil {
			t.Fatal(err)
		}
		key := "d." + engine.EncodeToken("dev.1*>")
		rev, err := b.Create(ctx, key, []byte("a"))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if _, err := b.Create(ctx, key, []byte("b")); !errors.Is(err, engine.ErrExists) {
			t.Fatalf("second create: got %v, want ErrExists", err)
		}
		rev2, err := b.Update(ctx, key, []byte("c"), rev)
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		if _, err := b.Update(ctx, key, []byte("d"), rev); !errors.Is(err, engine.ErrRevisionMismatch) {
			t.Fatalf("stale update: got %v, want ErrRevisionMismatch", err)
		}
		if err := b.Delete(ctx, key, rev); !errors.Is(err, engine.ErrRevisionMismatch) {
			t.Fatalf("stale delete: got %v, want ErrRevisionMismatch", err)
		}
		got, err := b.Get(ctx, key)
		if err != nil || string(got.Value) != "c" || got.Revision != rev2 {
			t.Fatalf("get: got %q rev %d err %v, want c rev %d", got.Value, got.Revision, err, rev2)
		}
		if err := b.Delete(ctx, key, rev2); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := b.Get(ctx, key); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("get deleted: got %v, want ErrNotFound", err)
		}
		if _, err := b.Create(ctx, key, []byte("e")); err != nil {
			t.Fatalf("re-create after delete: %v", err)
		}
		n := 0
		if err := b.Scan(ctx, []string{"d.*"}, func(engine.Entry) bool { n++; return true }); err != nil || n != 1 {
			t.Fatalf("scan: %d entries, err %v; want 1", n, err)
		}
	})
}

func TestEngineDataSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	eng, err := engine.Open(ctx, engine.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := eng.KV(ctx, engine.BucketConfig{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	_ = eng.Close()
	eng, err = engine.Open(ctx, engine.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	b, err = eng.KV(ctx, engine.BucketConfig{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Get(ctx, "k")
	if err != nil || string(got.Value) != "v" {
		t.Fatalf("after restart: got %q, %v; want v", got.Value, err)
	}
}

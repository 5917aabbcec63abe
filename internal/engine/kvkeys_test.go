package engine_test

import (
	"context"
	"testing"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestBucketMayHaveKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := enginetest.Start(t).KV(ctx, engine.BucketConfig{Name: "mods"})
	if err != nil {
		t.Fatal(err)
	}
	has := func(filter string) bool {
		t.Helper()
		ok, err := b.MayHaveKeys(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if has("m.a.*") {
		t.Fatal("an empty bucket has keys")
	}
	if _, err := b.Put(ctx, "m.a.x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "d.b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if !has("m.a.*") || has("m.b.*") || has("m.ab.*") {
		t.Fatal("wrong answer for one stored module key")
	}
	// A deleted key leaves its marker: "maybe", and Scan tells what is live.
	if err := b.Delete(ctx, "m.a.x", 0); err != nil {
		t.Fatal(err)
	}
	if !has("m.a.*") {
		t.Fatal("a deleted key's marker must still count")
	}
}

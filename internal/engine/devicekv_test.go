package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
)

func TestEngineDeviceKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dev, mod string }{
		{"d", ""}, {"dev.1*>", ""}, {"a$b", "m.1"}, {"x", "y"}, {"=", "=2E"},
	} {
		k := engine.DeviceKey(tc.dev, tc.mod, "twin")
		dev, mod, ok := engine.ParseDeviceKey(k, "twin")
		if !ok || dev != tc.dev || mod != tc.mod {
			t.Errorf("ParseDeviceKey(%q) = %q, %q, %v; want %q, %q", k, dev, mod, ok, tc.dev, tc.mod)
		}
		if _, _, ok := engine.ParseDeviceKey(k, "other"); ok {
			t.Errorf("ParseDeviceKey(%q, other) accepted a key of another kind", k)
		}
	}
	for _, k := range []string{"twin", ".twin", "a.b.twin", "a.m..twin", "a.m.b.c.twin", "a=ZZ.twin", "a.m.=.twin"} {
		if dev, mod, ok := engine.ParseDeviceKey(k, "twin"); ok {
			t.Errorf("ParseDeviceKey(%q) = %q, %q, true; want false", k, dev, mod)
		}
	}
}

func TestEngineDeviceKVPublishesStoredWrites(t *testing.T) {
	t.Parallel()
	enginetest.Each(t, func(t *testing.T, eng *engine.Engine) {
		ctx := context.Background()
		b, err := eng.DeviceKV(ctx, engine.BucketConfig{Name: "dk"}, "twin")
		if err != nil {
			t.Fatal(err)
		}
		mb := eng.NewMailbox(16)
		for _, mod := range []string{"", "m.1"} {
			sub, err := mb.Subscribe(engine.DeviceSubject("dev*1", mod, "twin"))
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
		}
		next := func() engine.Inbound {
			t.Helper()
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			in, err := mb.Next(nctx)
			if err != nil {
				t.Fatal(err)
			}
			return in
		}
		rev, err := b.Create(ctx, engine.DeviceKey("dev*1", "", "twin"), []byte("one"))
		if err != nil {
			t.Fatal(err)
		}
		if in := next(); in.Subject != engine.DeviceSubject("dev*1", "", "twin") || string(in.Data) != "one" {
			t.Fatalf("got %s %q", in.Subject, in.Data)
		}
		// A failed compare-and-set is not published.
		if _, err := b.Update(ctx, engine.DeviceKey("dev*1", "", "twin"), []byte("stale"), rev+100); err == nil {
			t.Fatal("stale update succeeded")
		}
		if _, err := b.Put(ctx, engine.DeviceKey("dev*1", "m.1", "twin"), []byte("two")); err != nil {
			t.Fatal(err)
		}
		if in := next(); in.Subject != engine.DeviceSubject("dev*1", "m.1", "twin") || string(in.Data) != "two" {
			t.Fatalf("got %s %q, want the module's write", in.Subject, in.Data)
		}
		if err := b.Delete(ctx, engine.DeviceKey("dev*1", "", "twin"), 0); err != nil {
			t.Fatal(err)
		}
		if in := next(); len(in.Data) != 0 {
			t.Fatalf("deletion published %q, want an empty value", in.Data)
		}
		var keys []string
		if err := b.Scan(ctx, engine.DeviceKeyFilters("twin", true), func(e engine.Entry) bool { keys = append(keys, e.Key); return true }); err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0] != engine.DeviceKey("dev*1", "m.1", "twin") {
			t.Fatalf("module keys %v", keys)
		}
	})
}

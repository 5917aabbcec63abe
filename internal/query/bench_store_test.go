package query_test

import (
	"context"
	"flag"
	"fmt"
	"testing"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/twin"
)

var storeTwins = flag.Int("query.storetwins", 10_000, "twins BenchmarkQueryTwinStore registers")

// BenchmarkQueryTwinStore measures a query page read from the real twin store on the embedded
// engine: the store's Scan (every identity and its twin) plus the query's own work. With
// BenchmarkQuery it splits a page's cost between reading the twins and evaluating the query.
//
//	go test -run '^$' -bench QueryTwinStore -benchtime 5x ./internal/query/ [-query.storetwins 100000]
func BenchmarkQueryTwinStore(b *testing.B) {
	ctx := context.Background()
	eng := enginetest.Start(b)
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	store, err := twin.Open(ctx, eng, twin.Config{Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	n := *storeTwins
	for i := range n {
		id := fmt.Sprintf("device-%06d", i)
		if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 { // half the twins have been written, half are fresh
			patch := fmt.Sprintf(`{"tags":{"location":{"region":%q},"floor":%d}}`, []string{"US", "EU"}[i%4/2], i%10)
			if _, err := store.Update(ctx, id, "", []byte(patch), "*"); err != nil {
				b.Fatal(err)
			}
		}
	}
	// For comparison: one bulk read (a watch) of every stored twin document, without the
	// per-identity reads the store's Scan makes.
	b.Run("bulk-read-of-twins-bucket", func(b *testing.B) {
		bucket, err := eng.DeviceKV(ctx, engine.BucketConfig{Name: "twins", Description: "device and module twins"}, twin.Kind)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			seen := 0
			if err := bucket.Scan(ctx, engine.DeviceKeyFilters(twin.Kind, false), func(engine.Entry) bool { seen++; return true }); err != nil {
				b.Fatal(err)
			}
			if seen != n/2 {
				b.Fatalf("read %d twins, want %d", seen, n/2)
			}
		}
		b.ReportMetric(float64(n/2)*float64(b.N)/b.Elapsed().Seconds(), "twins/s")
	})
	for _, c := range []struct{ name, query string }{
		{"star/page100", "SELECT * FROM devices"},
		{"tag-equals/page100", "SELECT * FROM devices WHERE tags.location.region = 'US'"},
		{"count", "SELECT COUNT() AS n FROM devices"},
	} {
		b.Run(c.name, func(b *testing.B) {
			q, err := query.Parse(c.query)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := q.Page(ctx, store.Scan, 100, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "twins/s")
		})
	}
}

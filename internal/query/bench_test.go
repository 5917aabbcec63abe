package query_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/roost-iot/roost/internal/query"
)

// benchTwins is the size of the hub the benchmarks query: the 100k twins the issue asks about.
const benchTwins = 100_000

var (
	benchOnce sync.Once
	benchDocs []map[string]any
)

// twinsForBench builds 100k device twins shaped as the twin store returns them: identity
// fields, nested tags, desired and reported properties with $version.
func twinsForBench() []map[string]any {
	benchOnce.Do(func() {
		regions := []string{"US", "EU", "APAC", "LATAM", "MEA"}
		states := []string{"Success", "Pending", "Error"}
		benchDocs = make([]map[string]any, 0, benchTwins)
		for i := range benchTwins {
			j := (i * 7919) % benchTwins // the source's order is not the result order
			benchDocs = append(benchDocs, map[string]any{
				"deviceId": fmt.Sprintf("device-%06d", j), "etag": "AAAAAAAAAAE=", "deviceEtag": "MTIzNDU2",
				"version": float64(4), "status": "enabled", "statusUpdateTime": "0001-01-01T00:00:00",
				"connectionState": "Disconnected", "lastActivityTime": "2026-01-01T00:00:00.0000000Z",
				"cloudToDeviceMessageCount": float64(0), "authenticationType": "sas",
				"x509Thumbprint": map[string]any{"primaryThumbprint": nil, "secondaryThumbprint": nil},
				"capabilities":   map[string]any{"iotEdge": false},
				"tags": map[string]any{
					"location": map[string]any{"region": regions[j%len(regions)], "plant": fmt.Sprintf("plant-%d", j%40)},
					"floor":    float64(j % 10),
				},
				"properties": map[string]any{
					"desired": map[string]any{"telemetryConfig": map[string]any{"sendFrequencyInSecs": float64(300)}, "$version": float64(2)},
					"reported": map[string]any{
						"fw": fmt.Sprintf("1.%d.0", j%7), "temp": float64(j%50) + 0.5,
						"telemetryConfig": map[string]any{"status": states[j%len(states)]},
						"$version":        float64(3),
					},
				},
			})
		}
	})
	return benchDocs
}

// BenchmarkQuery measures a query page over 100k twins held in memory: the engine's work per
// request (scan, filter, keep the page in a bounded heap, project), without the cost of reading
// the twins from the store. Each page scans every twin, so a page costs about the same whatever
// its position; reading all 100k at 1000 a page is 100 scans.
//
//	go test -run '^$' -bench Query -benchtime 20x ./internal/query/
func BenchmarkQuery(b *testing.B) {
	docs := twinsForBench()
	src := memSource(docs)
	var ids strings.Builder
	ids.WriteString("SELECT * FROM devices WHERE deviceId IN [")
	for i := 0; i < 500; i++ {
		if i > 0 {
			ids.WriteString(",")
		}
		fmt.Fprintf(&ids, "'device-%06d'", i*97)
	}
	ids.WriteString("]")
	cases := []struct {
		name, query string
		pageSize    int
	}{
		{"star/page100", "SELECT * FROM devices", 100},
		{"star/page1000", "SELECT * FROM devices", 1000},
		{"tag-equals/page100", "SELECT * FROM devices WHERE tags.location.region = 'US'", 100},
		{"and-in-range/page1000", "SELECT * FROM devices WHERE properties.reported.temp > 30 AND tags.floor IN [1, 2, 3]", 1000},
		{"in-500-ids/page1000", ids.String(), 1000},
		{"startswith-projection/page100", "SELECT deviceId, properties.reported.fw FROM devices WHERE STARTSWITH(properties.reported.fw, '1.3')", 100},
		{"count", "SELECT COUNT() AS n FROM devices", 100},
		{"group-by", "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.telemetryConfig.status", 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			q, err := query.Parse(c.query)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := q.Page(context.Background(), src, c.pageSize, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(docs))*float64(b.N)/b.Elapsed().Seconds(), "twins/s")
		})
	}
	// A later page costs what the first does: the token only moves the lower bound.
	b.Run("star/page100-at-50000", func(b *testing.B) {
		q, _ := query.Parse("SELECT * FROM devices")
		tok := ""
		for range 2 {
			p, err := q.Page(context.Background(), src, 25000, tok)
			if err != nil {
				b.Fatal(err)
			}
			tok = p.Continuation
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := q.Page(context.Background(), src, 100, tok); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(docs))*float64(b.N)/b.Elapsed().Seconds(), "twins/s")
	})
	// Reading every twin, as the SDKs' paging loop does.
	b.Run("all-pages/page1000", func(b *testing.B) {
		q, _ := query.Parse("SELECT deviceId FROM devices")
		b.ReportAllocs()
		pages := 0
		for b.Loop() {
			tok := ""
			for {
				p, err := q.Page(context.Background(), src, 1000, tok)
				if err != nil {
					b.Fatal(err)
				}
				pages++
				if tok = p.Continuation; tok == "" {
					break
				}
			}
		}
		b.ReportMetric(float64(pages)/float64(b.N), "pages/op")
		b.ReportMetric(b.Elapsed().Seconds()*1000/float64(pages), "ms/page")
	})
}

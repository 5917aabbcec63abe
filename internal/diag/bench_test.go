//go:build unix

package diag_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/kql"
)

// The record mix of the benchmarks: what a busy hub logs. 8% of records are Connections
// errors (what the guide's query keeps).
func benchRecord(i int) diag.Record {
	dev := "device-" + strconv.Itoa(i%5000)
	props := map[string]any{"deviceId": dev, "protocol": "Mqtt", "sdkVersion": "azure-iot-device/1.18.2 (node v18.19.0; Linux 5.15.0; x64)",
		"maskedIpAddress": "10.20.30.XXX", "statusCode": nil}
	r := diag.Record{Category: diag.Connections, OperationName: diag.OpDeviceConnect, DurationMs: -1, Properties: props}
	switch i % 25 {
	case 0, 1:
		r.OperationName = diag.OpDeviceDisconnect
		r.Err = errcode.New(errcode.DeviceConnectionClosedRemotely, "gone")
		props["statusCode"] = "404"
	case 2:
		r.Err = errcode.New(errcode.IotHubUnauthorized, "bad key")
		props["statusCode"] = "401"
	case 3, 4, 5, 6:
		r.Category, r.OperationName = diag.DeviceTelemetry, diag.OpIngress
		r.Err = errcode.New(errcode.ThrottlingException, "slow down")
	case 7, 8, 9, 10, 11, 12:
		r.Category, r.OperationName = diag.DeviceIdentityOperations, diag.OpGet
		r.DurationMs = 3
	case 13, 14, 15, 16, 17, 18:
		r.OperationName = diag.OpDeviceDisconnect
	}
	return r
}

// BenchmarkDiagIngest measures records stored per second through the Writer.
func BenchmarkDiagIngest(b *testing.B) {
	eng := enginetest.Start(b)
	ctx := context.Background()
	w, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("s", "rg", "hub"), Buffer: 8192})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		w.Write(ctx, benchRecord(i))
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// cpuTime is the process's user and system CPU time: the engine runs in-process, so it covers
// both sides of a query, and does not depend on how busy the machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGuideQuery1M stores DIAG_BENCH_RECORDS records (default 1,000,000) and measures the
// troubleshooting guide's query over all of them (a full retention scan) and over the newest
// 1/168 of them (the share one hour holds in a 7-day retention filled evenly), found through
// the engine's time index.
func BenchmarkGuideQuery1M(b *testing.B) {
	n := 1000000
	if s := os.Getenv("DIAG_BENCH_RECORDS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	eng, err := engine.Open(context.Background(), engine.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	w, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("s", "rg", "hub"), Buffer: 8192, MaxBytes: 8 << 30})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var hourStart time.Time
	for i := 0; i < n; i++ {
		if i == n-n/168 {
			_ = w.Flush(ctx)
			hourStart = time.Now()
		}
		w.Write(ctx, benchRecord(i))
	}
	_ = w.Flush(ctx)
	ingest := time.Since(start)
	w.Close()
	b.ReportMetric(float64(n)/ingest.Seconds(), "stored-records/s")
	guide := `search *
| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")
| where ( Category == "Connections" and Level == "Error")`
	for _, c := range []struct {
		name string
		opts kql.Options
		q    string
	}{
		{"guide-all", kql.Options{MaxRows: 1 << 30}, guide},
		{"guide-all-first-30000", kql.Options{}, guide},
		{"guide-last-hour", kql.Options{MaxRows: 1 << 30, From: hourStart}, guide},
		{"error-summary-all", kql.Options{}, diag.SummaryQuery},
		{"count-all", kql.Options{}, "AzureDiagnostics | count"},
	} {
		b.Run(c.name, func(b *testing.B) {
			// The records were written within seconds, not over 7 days: narrow the stored-time
			// slack (5 minutes in production) so the time index is what selects the hour.
			tbl := diag.NewTable(eng)
			tbl.Slack = 10 * time.Millisecond
			c.opts.Explain = diag.Explain
			var rows int
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				res, err := kql.Run(ctx, kql.Catalog{tbl}, c.q, c.opts)
				if err != nil {
					b.Fatal(err)
				}
				rows = len(res.Rows)
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/query")
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/query")
		})
	}
}

package telemetry_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/telemetry"
)

// BenchmarkSendAsync measures durable ingest as the MQTT edge drives it: 100 devices, each
// sending 256-byte messages with a window of in-flight messages and a second goroutine that
// waits for each to be stored in order (where PUBACK would be written). The embedded engine runs
// in the same process, so its work (and its allocations) are included.
//
//	go test -run '^$' -bench SendAsync -benchtime 500000x ./internal/telemetry/
func BenchmarkSendAsync(b *testing.B) {
	const senders, window = 100, 64
	p, err := telemetry.Open(context.Background(), enginetest.Start(b), telemetry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	body := make([]byte, 256)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := fmt.Sprintf("bench-device-%03d", s)
			inflight := make(chan *telemetry.Pending, window)
			acked := make(chan struct{})
			go func() {
				defer close(acked)
				for pd := range inflight {
					if _, err := pd.Wait(ctx); err != nil {
						failed.Add(1)
					}
				}
			}()
			for next.Add(1) <= int64(b.N) {
				pd, err := p.SendAsync(&telemetry.Message{DeviceID: dev, Body: body, Protocol: "Mqtt"})
				if err != nil {
					failed.Add(1)
					continue
				}
				inflight <- pd
			}
			close(inflight)
			<-acked
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d messages failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

//go:build unix

package mqtt_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

var (
	c2dBenchDevices = flag.Int("c2d.devices", 1000, "connected devices in the C2D benchmarks")
	c2dBenchRate    = flag.Int("c2d.rate", 2000, "sends per second in BenchmarkC2DSendToDevice")
)

// benchDevice is a connected device that acknowledges every message at once and notes how
// long after its send each one arrived (the payload carries the send time).
type benchDevice struct {
	c *tls.Conn
}

func (h *hub) benchDevice(b *testing.B, d registry.Device, got func(sent time.Time)) *benchDevice {
	b.Helper()
	c, err := tls.Dial("tcp", h.addr, h.tlsConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	tok := deviceTokenB(b, d)
	_, _ = c.Write(connectPacket(d.DeviceID, hubHost+"/"+d.DeviceID+"/?api-version=2021-04-12", tok, 600, 4))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		b.Fatalf("CONNACK %x %v", ack, err)
	}
	filter := "devices/" + d.DeviceID + "/messages/devicebound/#"
	_, _ = c.Write(append([]byte{0x82, byte(2 + 2 + len(filter) + 1), 0, 1, 0, byte(len(filter))}, append([]byte(filter), 1)...))
	suback := make([]byte, 5)
	if _, err := io.ReadFull(c, suback); err != nil || suback[0] != 0x90 {
		b.Fatalf("SUBACK %x %v", suback, err)
	}
	go func() {
		hdr := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			n, mult := 0, 1
			for {
				var lb [1]byte
				if _, err := io.ReadFull(c, lb[:]); err != nil {
					return
				}
				n += int(lb[0]&127) * mult
				mult *= 128
				if lb[0]&128 == 0 {
					break
				}
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(c, body); err != nil {
				return
			}
			if hdr[0]>>4 != 3 {
				continue
			}
			tl := int(body[0])<<8 | int(body[1])
			id := body[2+tl : 4+tl]
			payload := body[4+tl:]
			_, _ = c.Write([]byte{0x40, 2, id[0], id[1]})
			if len(payload) == 8 {
				got(time.Unix(0, int64(binary.BigEndian.Uint64(payload))))
			}
		}
	}()
	return &benchDevice{c: c}
}

func deviceTokenB(b *testing.B, d registry.Device) string {
	b.Helper()
	tok, err := sas.Sign(sas.DeviceResource(hubHost, d.DeviceID, ""), d.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// c2dBench starts a node and connects n devices to it.
func c2dBench(b *testing.B, n int, got func(sent time.Time)) (*c2dHub, []string) {
	b.Helper()
	h := startC2DHub(b, enginetest.Start(b), "bench", c2d.Config{})
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		d, err := h.reg.CreateDevice(context.Background(), registry.Device{DeviceID: ids[i]})
		if err != nil {
			b.Fatal(err)
		}
		h.benchDevice(b, d, got)
	}
	return h, ids
}

// BenchmarkC2DSendToDevice sends at a fixed rate (-c2d.rate, default 2,000/s) to connected
// devices (-c2d.devices, default 1,000) in turn and measures each message from the moment it was
// due to be sent to its arrival at the device: p50_ms and p99_ms. A hub that falls behind the
// rate shows it in the latency, not by sending slower.
//
//	go test -run '^$' -bench C2DSendToDevice -benchtime 20000x ./internal/mqtt/
func BenchmarkC2DSendToDevice(b *testing.B) {
	var (
		mu   sync.Mutex
		lats []time.Duration
		done atomic.Int64
	)
	h, ids := c2dBench(b, *c2dBenchDevices, func(sent time.Time) {
		l := time.Since(sent)
		mu.Lock()
		lats = append(lats, l)
		mu.Unlock()
		done.Add(1)
	})
	rate := *c2dBenchRate
	interval := time.Second / time.Duration(rate)
	const senders = 64
	next := make(chan int, senders)
	var wg sync.WaitGroup
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				var p [8]byte
				binary.BigEndian.PutUint64(p[:], uint64(due.UnixNano()))
				if _, err := h.c2d.Send(context.Background(), ids[i%len(ids)], c2d.Message{Body: p[:]}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	sendTime := time.Since(start)
	deadline := time.Now().Add(60 * time.Second)
	for done.Load()+failed.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lats)
	if len(lats) == 0 {
		b.Fatal("nothing arrived")
	}
	pct := func(p float64) float64 {
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.90), "p90_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(0.999), "p99.9_ms")
	b.ReportMetric(float64(b.N)/sendTime.Seconds(), "sends/s")
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(float64(b.N-len(lats)-int(failed.Load())), "lost")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkC2DSustained sends as fast as 64 senders can to connected devices and reports the
// rate at which messages were sent and delivered (each acknowledged, so each completed), and the
// process's CPU time per message (cpu_us/msg: hub, engine and the devices' TLS and MQTT, which
// share the process), which depends less on what else the machine is doing than the rates.
//
//	go test -run '^$' -bench C2DSustained -benchtime 50000x ./internal/mqtt/
func BenchmarkC2DSustained(b *testing.B) {
	var done atomic.Int64
	h, ids := c2dBench(b, *c2dBenchDevices, func(time.Time) { done.Add(1) })
	const senders = 64
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p [8]byte
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(p[:], uint64(time.Now().UnixNano()))
				if _, err := h.c2d.Send(context.Background(), ids[int(i)%len(ids)], c2d.Message{Body: p[:]}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	sent := time.Since(start)
	deadline := time.Now().Add(120 * time.Second)
	for done.Load()+failed.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	all, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu_us/msg")
	b.ReportMetric(float64(int64(b.N)-failed.Load())/sent.Seconds(), "sends/s")
	b.ReportMetric(float64(done.Load())/all.Seconds(), "deliveries/s")
	b.ReportMetric(float64(failed.Load()), "failed")
}

package mqtt_test

import (
	"flag"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/throttle"
)

var floodBench = flag.Bool("throttle.flood", false, "run TestQuietDeviceLatencyUnderFlood (a measurement, not a check)")

// TestQuietDeviceLatencyUnderFlood measures the telemetry latency (PUBLISH to PUBACK, QoS 1) of
// a device sending one message at a time, alone and while another device floods the same node
// as fast as it can, the flooder capped by --device-max-sends 100. It reports p50 and p99 of
// both runs; docs/BENCHMARKS.md has the numbers.
//
//	go test -run QuietDeviceLatencyUnderFlood -v ./internal/mqtt/ -args -throttle.flood
func TestQuietDeviceLatencyUnderFlood(t *testing.T) {
	if !*floodBench {
		t.Skip("a measurement; run with -throttle.flood")
	}
	dl, err := throttle.NewDeviceLimits(throttle.DeviceLimitsConfig{Default: throttle.DeviceLimit{Sends: 100},
		Burst: time.Second, Backlog: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	h := startHub(t, enginetest.Start(t), mqtt.Config{DeviceLimits: dl})
	quiet, err := h.client(t, "quiet", deviceToken(t, h.device(t, "quiet"), time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	measure := func(n int) (p50, p99 time.Duration) {
		lat := make([]time.Duration, n)
		for i := range lat {
			start := time.Now()
			tok := quiet.Publish("devices/quiet/messages/events/", 1, false, `{"t":21.5}`)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("quiet publish %d: %v", i, tok.Error())
			}
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		return lat[n/2], lat[n*99/100]
	}
	measure(200) // warm up
	a50, a99 := measure(3000)

	d := h.device(t, "noisy")
	c := h.raw(t)
	_, _ = c.Write(connectPacket("noisy", hubHost+"/noisy/?api-version=2021-04-12", deviceToken(t, d, time.Hour), 600, 4))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	var sent, acked atomic.Int64
	stop := make(chan struct{})
	go func() { // drain PUBACKs
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			acked.Add(int64(n / 4))
		}
	}()
	go func() {
		topic := "devices/noisy/messages/events/"
		payload := []byte(`{"flood":true}`)
		for id := uint16(1); ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			if id == 0 {
				id = 1
			}
			rl := 2 + len(topic) + 2 + len(payload)
			pkt := append([]byte{0x32, byte(rl), 0, byte(len(topic))}, topic...)
			pkt = append(pkt, byte(id>>8), byte(id))
			pkt = append(pkt, payload...)
			if _, err := c.Write(pkt); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	time.Sleep(2 * time.Second) // let the flooder spend its burst and fill its socket buffers
	start := time.Now()
	b50, b99 := measure(3000)
	elapsed := time.Since(start)
	close(stop)
	t.Logf("quiet device alone:        p50 %v  p99 %v", a50, a99)
	t.Logf("while another device floods: p50 %v  p99 %v  (p99 +%v)", b50, b99, b99-a99)
	t.Logf("flooder: %d written, %d acknowledged in %v (capped at 100/s after a 1 s burst)", sent.Load(), acked.Load(), elapsed+2*time.Second)
}

package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/throttle"
)

// stoppedClock never moves; its Sleep records the traffic shaping's waits and returns at once,
// so the backlog fills deterministically whatever the machine's load.
type stoppedClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (c *stoppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stoppedClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return nil
}

func (c *stoppedClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

func newThrottle(t *testing.T, sku string, burst, backlog time.Duration, clk *stoppedClock) *throttle.Throttler {
	t.Helper()
	th, err := throttle.New(throttle.Config{SKU: sku, Burst: burst, Backlog: backlog, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	return th
}

// TestMQTTTelemetryShaping: S1 takes 100 sends/s. With a 50 ms burst and a 100 ms backlog a
// device's first 5 messages are acknowledged at once, the next 10 wait 10, 20, ... 100 ms
// before their PUBACK, and the 16th closes the connection with a DeviceTelemetry 429001 record
// and a count in d2c.telemetry.ingress.sendThrottle. Every acknowledged message is stored.
func TestMQTTTelemetryShaping(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	var throttled sync.WaitGroup
	throttled.Add(1)
	h := startHub(t, enginetest.Start(t), mqtt.Config{
		Throttle:    newThrottle(t, "S1", 50*time.Millisecond, 100*time.Millisecond, clk),
		OnThrottled: throttled.Done,
	})
	d := h.device(t, "flood")
	lost := make(chan error, 1)
	c, err := h.client(t, "flood", deviceToken(t, d, time.Hour), func(err error) { lost <- err })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 15 {
		tok := c.Publish("devices/flood/messages/events/", 1, false, fmt.Sprintf(`{"n":%d}`, i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	waits := clk.Waits()
	if len(waits) != 10 {
		t.Fatalf("%d messages waited, want 10: %v", len(waits), waits)
	}
	for i, w := range waits {
		if want := time.Duration(i+1) * 10 * time.Millisecond; w != want {
			t.Fatalf("wait %d = %v, want %v", i, w, want)
		}
	}
	c.Publish("devices/flood/messages/events/", 1, false, `{"n":15}`)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after 429001")
	}
	throttled.Wait()
	h.waitRecord(t, diag.DeviceTelemetry, errorRecord("ingress", "flood", "429001"))
	if msgs := readAll(t, h, "flood", 15); string(msgs[14].Body) != `{"n":14}` {
		t.Fatalf("last stored message %s", msgs[14].Body)
	}
}

// TestMQTTConnectThrottled: over the new-connection rate a CONNECT waits, then is refused with
// CONNACK 3 (server unavailable: the SDKs retry) and a Connections 429001 record.
func TestMQTTConnectThrottled(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	h := startHub(t, enginetest.Start(t), mqtt.Config{Throttle: newThrottle(t, "S1", 10*time.Millisecond, 10*time.Millisecond, clk)})
	for i := range 2 {
		id := fmt.Sprintf("c%d", i)
		if _, err := h.client(t, id, deviceToken(t, h.device(t, id), time.Hour), nil); err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
	}
	if w := clk.Waits(); len(w) != 1 || w[0] != 10*time.Millisecond {
		t.Fatalf("connect waits %v", w)
	}
	_, err := h.client(t, "c2", deviceToken(t, h.device(t, "c2"), time.Hour), nil)
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
		t.Fatalf("third connect: %v, want CONNACK 3 (server unavailable)", err)
	}
	h.waitRecord(t, diag.Connections, errorRecord("deviceConnect", "c2", "429001"))
}

// TestMQTTDailyQuota: F1's quota is 8,000 messages of 0.5 KB. Messages of 200,000 bytes count
// 391 each, so 20 fit and the 21st is refused with 403002: a DeviceTelemetry record and the
// connection closes. A new day (00:00 UTC) brings the quota back.
func TestMQTTDailyQuota(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 23, 30, 0, 0, time.UTC)}
	th := newThrottle(t, "F1", time.Minute, time.Second, clk)
	if err := th.Join(context.Background(), eng, throttle.JoinConfig{Node: "n1", Interval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(th.Close)
	h := startHub(t, eng, mqtt.Config{Throttle: th})
	d := h.device(t, "big")
	body := strings.Repeat("x", 200_000)
	lost := make(chan error, 1)
	c, err := h.client(t, "big", deviceToken(t, d, time.Hour), func(err error) { lost <- err })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		tok := c.Publish("devices/big/messages/events/", 1, false, body)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	if used, limit := th.QuotaUsed(); used != 20*391 || limit != 8000 {
		t.Fatalf("quota used %d of %d", used, limit)
	}
	c.Publish("devices/big/messages/events/", 1, false, body)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after 403002")
	}
	h.waitRecord(t, diag.DeviceTelemetry, errorRecord("ingress", "big", "403002"))
	clk.mu.Lock()
	clk.now = clk.now.Add(30 * time.Minute) // 00:00 UTC
	clk.mu.Unlock()
	c2, err := h.client(t, "big", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c2.Publish("devices/big/messages/events/", 1, false, body); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("after midnight: %v", errors.Join(tok.Error()))
	}
}

// TestMQTTDeviceLimit: with --device-max-sends a flooding device is slowed and then cut off
// with 429001 by its own limit, on an unlimited hub, while another device keeps sending at once.
func TestMQTTDeviceLimit(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	dl, err := throttle.NewDeviceLimits(throttle.DeviceLimitsConfig{Default: throttle.DeviceLimit{Sends: 10},
		Burst: 500 * time.Millisecond, Backlog: 500 * time.Millisecond, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	h := startHub(t, enginetest.Start(t), mqtt.Config{DeviceLimits: dl})
	lost := make(chan error, 1)
	noisy, err := h.client(t, "noisy", deviceToken(t, h.device(t, "noisy"), time.Hour), func(err error) { lost <- err })
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := h.client(t, "quiet", deviceToken(t, h.device(t, "quiet"), time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 { // 5 in the burst, 5 queued
		if tok := noisy.Publish("devices/noisy/messages/events/", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("noisy %d: %v", i, tok.Error())
		}
	}
	if n := len(clk.Waits()); n != 5 {
		t.Fatalf("%d noisy messages waited, want 5", n)
	}
	noisy.Publish("devices/noisy/messages/events/", 1, false, "x")
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the noisy device stayed connected")
	}
	h.waitRecord(t, diag.DeviceTelemetry, errorRecord("ingress", "noisy", "429001"))
	for i := range 5 {
		if tok := quiet.Publish("devices/quiet/messages/events/", 1, false, "y"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("quiet %d: %v", i, tok.Error())
		}
	}
	if n := len(clk.Waits()); n != 5 {
		t.Fatalf("the quiet device waited: %d waits", n)
	}
}

// TestMQTTTwinThrottled: over S1's twin update rate (50/s) with a 20 ms burst and a 20 ms backlog,
// the first reported PATCH is answered at once, the second waits, and the third is answered
// with status 429 and a 429001 body in the response topic; the connection stays and a GET
// (its own class) still works.
func TestMQTTTwinThrottled(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	th := newThrottle(t, "S1", 20*time.Millisecond, 20*time.Millisecond, clk)
	eng := enginetest.Start(t)
	h := startTwinHub(t, func(cfg mqtt.Config) *hub { cfg.Throttle = th; return startHub(t, eng, cfg) }, "a")
	d := h.device(t, "tw")
	c, ch := twinDevice(t, h, "tw", deviceToken(t, d, time.Hour))
	for i, want := range []string{"$iothub/twin/res/204/?$rid=1", "$iothub/twin/res/204/?$rid=2", "$iothub/twin/res/429/?$rid=3"} {
		publish(t, c, fmt.Sprintf("$iothub/twin/PATCH/properties/reported/?$rid=%d", i+1), 0, `{"n":1}`)
		m := receive(t, ch)
		if !strings.HasPrefix(m.topic, want) {
			t.Fatalf("answer %d: %s %s, want %s", i, m.topic, m.payload, want)
		}
		if i == 2 && !strings.Contains(m.payload, "429001") {
			t.Fatalf("429 body %s", m.payload)
		}
	}
	publish(t, c, "$iothub/twin/GET/?$rid=4", 0, "")
	if m := receive(t, ch); !strings.HasPrefix(m.topic, "$iothub/twin/res/200/?$rid=4") {
		t.Fatalf("GET: %s", m.topic)
	}
}

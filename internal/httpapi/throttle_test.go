package httpapi_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/throttle"
)

// stoppedClock is a clock that never moves, and a Sleep that records the traffic shaping's
// waits and returns at once: with it the backlog fills deterministically.
type stoppedClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func (c *stoppedClock) Now() time.Time { return c.now }

func (c *stoppedClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	c.waits = append(c.waits, d)
	c.mu.Unlock()
	return nil
}

func newThrottledFixture(t *testing.T, sku string, clk *stoppedClock) (*fixture, *metrics.Metrics) {
	t.Helper()
	th, err := throttle.New(throttle.Config{SKU: sku, Burst: time.Second, Backlog: time.Second, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	f := newHub(t, hubOptions{metrics: true, twins: true, api: httpapi.Config{Throttle: th},
		wire: func(f *fixture, api *httpapi.Config) {
			ms, err := methods.New(methods.Config{Engine: f.eng, Registry: f.reg})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ms.Close)
			api.Methods = ms
		}})
	return f, f.m
}

// TestHTTPRegistryThrottling: on S1 identity registry operations run at 100/min (one per
// 0.6 s). With a 1 s burst and a 1 s backlog the first operation passes at once, the second and
// third wait 0.2 s and 0.8 s (requests are slowed, not refused), the fourth gets 429001 with IoT Hub's body and header and a
// DeviceIdentityOperations record, and changes nothing.
func TestHTTPRegistryThrottling(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f, m := newThrottledFixture(t, "S1", clk)
	owner := f.token(t, "iothubowner", time.Hour)
	start := time.Now().Add(-time.Second)
	for i, id := range []string{"a", "b", "b2"} {
		if a := f.do(t, "PUT", "/devices/"+id+v, owner, nil, `{"deviceId":"`+id+`"}`); a.status != 200 {
			t.Fatalf("create %d: %d %s", i, a.status, a.body)
		}
	}
	if len(clk.waits) != 2 || clk.waits[0] != 200*time.Millisecond || clk.waits[1] != 800*time.Millisecond {
		t.Fatalf("shaping waits %v, want [200ms 800ms]", clk.waits)
	}
	a := f.do(t, "PUT", "/devices/c"+v, owner, nil, `{"deviceId":"c"}`)
	if a.status != 429 || a.errorName() != "ThrottlingException" || a.header.Get("iothub-errorcode") != "ThrottlingException" || !errorBodyShape.Match(a.body) {
		t.Fatalf("third create: %d %s %v", a.status, a.body, a.header)
	}
	if a := f.do(t, "GET", "/devices/c"+v, owner, nil, ""); a.status != 429 {
		t.Fatalf("get while throttled: %d", a.status)
	}
	// Recovery once the backlog has drained.
	clk.now = clk.now.Add(3 * time.Second)
	if a := f.do(t, "GET", "/devices/c"+v, owner, nil, ""); a.status != 404 {
		t.Fatalf("the refused create changed something, or no recovery: %d %s", a.status, a.body)
	}
	f.dw.Close()
	var found bool
	err := diag.Read(context.Background(), f.eng, diag.DeviceIdentityOperations, start, func(w diag.Wire) bool {
		if w.OperationName == "create" && w.ResultType == "429001" && w.ResultDescription == "ThrottlingException" && w.Level == "Error" {
			found = true
		}
		return true
	})
	if err != nil || !found {
		t.Fatalf("no 429001 create record (%v)", err)
	}
	if got := testCounter(t, m, "roost_throttling_errors_total", "registry"); got != 2 {
		t.Fatalf("throttling errors for registry: %v", got)
	}
}

// TestHTTPBasicTierRefusesStandardFeatures: a B1 hub has no direct methods or twins (nor C2D).
func TestHTTPBasicTierRefusesStandardFeatures(t *testing.T) {
	t.Parallel()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	f, _ := newThrottledFixture(t, "B1", clk)
	owner := f.token(t, "iothubowner", time.Hour)
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/twins/d/methods", `{"methodName":"m","payload":null,"responseTimeoutInSeconds":5}`},
		{"GET", "/twins/d", ""},
	} {
		a := f.do(t, r.method, r.path+v, owner, nil, r.body)
		if a.status != 404 || a.errorName() != "FeatureNotSupported" {
			t.Errorf("%s %s: %d %s", r.method, r.path, a.status, a.body)
		}
	}
	if a := f.do(t, "PUT", "/devices/d"+v, owner, nil, `{"deviceId":"d"}`); a.status != 200 {
		t.Fatalf("registry on B1: %d %s", a.status, a.body)
	}
}

func testCounter(t *testing.T, m *metrics.Metrics, name, label string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetValue() == label {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestHTTPDeviceTelemetryCaps: a device capped at 1 send/s (1 s burst, 1 s backlog) over
// HTTPS gets its first message through at once, its second after a wait, and 429001 for the
// third, with a DeviceTelemetry record; another device has its own cap, untouched by the first.
func TestHTTPDeviceTelemetryCaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := &stoppedClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	dl, err := throttle.NewDeviceLimits(throttle.DeviceLimitsConfig{Default: throttle.DeviceLimit{Sends: 1},
		Burst: time.Second, Backlog: time.Second, Now: clk.Now, Sleep: clk.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	f := &telemetryFixture{newHub(t, hubOptions{telemetry: true, api: httpapi.Config{DeviceLimits: dl}})}
	noisy, quiet := f.deviceToken(t, "noisy", ""), f.deviceToken(t, "quiet", "")
	start := time.Now().Add(-time.Second)
	for i, want := range []int{204, 204, 429} {
		if a := f.do(t, "POST", "/devices/noisy/messages/events"+v, noisy, nil, "x"); a.status != want {
			t.Fatalf("noisy %d: %d %s", i, a.status, a.body)
		} else if want == 429 && a.errorName() != "ThrottlingException" {
			t.Fatalf("noisy %d: %s", i, a.body)
		}
	}
	if len(clk.waits) != 1 || clk.waits[0] != time.Second {
		t.Fatalf("waits %v", clk.waits)
	}
	for i := range 2 {
		if a := f.do(t, "POST", "/devices/quiet/messages/events"+v, quiet, nil, "y"); a.status != 204 {
			t.Fatalf("quiet %d: %d %s", i, a.status, a.body)
		}
	}
	f.dw.Close()
	var found bool
	_ = diag.Read(ctx, f.eng, diag.DeviceTelemetry, start, func(w diag.Wire) bool {
		found = found || w.ResultType == "429001" && strings.Contains(w.Properties, `"deviceId":"noisy"`)
		return true
	})
	if !found {
		t.Fatal("no DeviceTelemetry 429001 record for the noisy device")
	}
	if len(clk.waits) != 2 {
		t.Fatalf("the quiet device waited on the noisy one's cap: %v", clk.waits)
	}
	if msgs := f.readAll(t, 4); len(msgs) != 4 {
		t.Fatalf("%d messages stored", len(msgs))
	}
}

package events_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/events"
	"github.com/roost-iot/roost/internal/registry"
)

// producerHub is an engine, a diagnostic writer and an events manager running on them.
type producerHub struct {
	eng   *engine.Engine
	dw    *diag.Writer
	state *engine.Bucket
}

func newProducerHub(t *testing.T) *producerHub {
	t.Helper()
	eng := enginetest.Start(t)
	ctx := context.Background()
	dw, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("s", "rg", "hub")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dw.Close)
	state, err := eng.KV(ctx, engine.BucketConfig{Name: "event-state"})
	if err != nil {
		t.Fatal(err)
	}
	return &producerHub{eng: eng, dw: dw, state: state}
}

// open opens a manager (as a node taking over would).
func (h *producerHub) open(t *testing.T) *events.Manager {
	t.Helper()
	mgr, err := events.Open(context.Background(), h.eng, events.Config{HubName: "hub", ResourceID: h.dw.ResourceID(),
		RetryBase: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond, Poll: 50 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// run runs mgr until the returned stop is called (or the test ends); stop waits for it.
func run(t *testing.T, mgr *events.Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

// connect writes a DeviceConnect record of a device.
func (h *producerHub) connect(dev string) {
	h.dw.Write(context.Background(), diag.Record{Category: diag.Connections, OperationName: diag.OpDeviceConnect, DurationMs: -1,
		Properties: map[string]any{"deviceId": dev, "protocol": "Mqtt"}})
}

// lastRecord flushes the writer and returns the last diagnostic record's sequence.
func (h *producerHub) lastRecord(t *testing.T) uint64 {
	t.Helper()
	ctx := context.Background()
	if err := h.dw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return h.lastSeq(t, diag.StreamName)
}

func (h *producerHub) lastSeq(t *testing.T, stream string) uint64 {
	t.Helper()
	ctx := context.Background()
	st, err := h.eng.OpenStream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s.LastSeq
}

// saved returns a saved position (0 if none).
func (h *producerHub) saved(key string) uint64 {
	ent, err := h.state.Get(context.Background(), key)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(ent.Value), 10, 64)
	return n
}

// waitProducing writes connects of a warm-up device until the connections producer has saved
// a position: from then on it reads every record written.
func (h *producerHub) waitProducing(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for h.saved("src.connections") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connections producer saved no position")
		}
		h.connect("warmup")
		_ = h.dw.Flush(context.Background())
		time.Sleep(100 * time.Millisecond)
	}
}

// countWrites counts the writes to the event-state bucket from now on, by key.
func (h *producerHub) countWrites(t *testing.T) func() map[string]int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	counts := map[string]int{}
	from := h.lastSeq(t, "KV_event-state")
	go func() {
		_ = h.eng.FollowBucket(ctx, "event-state", "", from, func(c engine.Change) bool {
			mu.Lock()
			counts[c.Key]++
			mu.Unlock()
			return true
		})
	}()
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
}

// connected returns how many DeviceConnected events of each device the sink got.
func connected(t *testing.T, s *sink) map[string]int {
	out := map[string]int{}
	for _, e := range s.events(t) {
		if e["eventType"] == events.DeviceConnected {
			out[e["data"].(map[string]any)["deviceId"].(string)]++
		}
	}
	return out
}

func TestNoEventsWithoutSubscription(t *testing.T) {
	t.Parallel()
	h := newProducerHub(t)
	mgr := h.open(t)
	run(t, mgr)
	h.waitProducing(t)

	for i := range 20 {
		h.connect(fmt.Sprintf("quiet-%d", i))
	}
	last := h.lastRecord(t)
	waitFor(t, "the connections producer to pass the records", func() bool { return h.saved("src.connections") >= last })
	if n := h.lastSeq(t, events.Stream); n != 0 {
		t.Fatalf("%d events stored while no subscription exists, want none", n)
	}

	// A subscription makes the next connect an event, delivered.
	s := newSink(t, 200, 0)
	if _, err := mgr.Put(context.Background(), events.Subscription{Name: "ops", Endpoint: s.srv.URL}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for connected(t, s)["after"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no DeviceConnected delivered after the subscription was created")
		}
		h.connect("after")
		_ = h.dw.Flush(context.Background())
		time.Sleep(50 * time.Millisecond)
	}
	for dev := range connected(t, s) {
		if dev != "after" && dev != "warmup" {
			t.Errorf("event of %s, connected before any subscription existed, was delivered", dev)
		}
	}
}

func TestPositionsAreSavedSparingly(t *testing.T) {
	t.Parallel()
	h := newProducerHub(t)
	mgr := h.open(t)
	ctx := context.Background()
	reg, err := registry.New(ctx, h.eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, 200, 0)
	if _, err := mgr.Put(ctx, events.Subscription{Name: "ops", Endpoint: s.srv.URL, SubjectBeginsWith: "devices/r-"}); err != nil {
		t.Fatal(err)
	}
	run(t, mgr)
	h.waitProducing(t)
	waitFor(t, "the registry producer to start", func() bool { return h.saved("src.registry") > 0 || h.lastSeq(t, "KV_registry") == 0 })
	writes := h.countWrites(t)

	const n = 200
	for i := range n {
		h.connect(fmt.Sprintf("r-%d", i))
	}
	last := h.lastRecord(t)
	// Registry changes that make no event (updates) and one that does.
	if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "r-dev"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		status := []string{"disabled", "enabled"}[i%2]
		if _, err := reg.UpdateDevice(ctx, registry.Device{DeviceID: "r-dev", Status: status}, "*"); err != nil {
			t.Fatal(err)
		}
	}
	lastReg := h.lastSeq(t, "KV_registry")

	waitFor(t, "every event", func() bool { return len(connected(t, s)) == n })
	waitFor(t, "the connections position", func() bool { return h.saved("src.connections") >= last })
	waitFor(t, "the registry position", func() bool { return h.saved("src.registry") >= lastReg })
	waitFor(t, "the subscription's position", func() bool { return h.saved("sub.ops") >= h.lastSeq(t, events.Stream) })
	got := writes()
	t.Logf("position writes for %d connects and 51 registry changes: %v", n, got)
	for _, key := range []string{"src.connections", "sub.ops", "src.registry"} {
		if got[key] == 0 || got[key] > 12 {
			t.Errorf("%s written %d times, want a handful", key, got[key])
		}
	}
}

func TestProducerResumesAfterRestart(t *testing.T) {
	t.Parallel()
	h := newProducerHub(t)
	mgr := h.open(t)
	s := newSink(t, 200, 0)
	if _, err := mgr.Put(context.Background(), events.Subscription{Name: "ops", Endpoint: s.srv.URL, SubjectBeginsWith: "devices/r-"}); err != nil {
		t.Fatal(err)
	}
	stop := run(t, mgr)
	h.waitProducing(t)

	const n = 100
	for i := range n / 2 {
		h.connect(fmt.Sprintf("r-%d", i))
	}
	h.lastRecord(t)
	waitFor(t, "some events", func() bool { return len(connected(t, s)) >= 10 })
	stop()
	// Connects while no node produces events, then another takes over.
	for i := n / 2; i < n; i++ {
		h.connect(fmt.Sprintf("r-%d", i))
	}
	h.lastRecord(t)
	run(t, h.open(t))
	waitFor(t, "every device's event", func() bool { return len(connected(t, s)) == n })
	for i := range n {
		if dev := fmt.Sprintf("r-%d", i); connected(t, s)[dev] == 0 {
			t.Errorf("no DeviceConnected of %s", dev)
		}
	}
}

package c2d_test

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) c2d.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

// Advance moves the clock and runs the timers that are due, in time order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due, keep []*fakeTimer
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
}

// node is one hub node's c2d service and what it needs.
type node struct {
	eng   *engine.Engine
	reg   *registry.Registry
	dw    *diag.Writer
	m     *metrics.Metrics
	svc   *c2d.Service
	clock *fakeClock
	start time.Time
}

func startNode(t *testing.T, eng *engine.Engine, clock *fakeClock, cfg c2d.Config) *node {
	t.Helper()
	ctx := context.Background()
	n := &node{eng: eng, clock: clock, m: metrics.New(), start: time.Now().Add(-time.Second)}
	var err error
	if n.reg, err = registry.New(ctx, eng, registry.Config{}); err != nil {
		t.Fatal(err)
	}
	if n.dw, err = diag.NewWriter(ctx, eng, diag.Config{ResourceID: "/SUBSCRIPTIONS/X"}); err != nil {
		t.Fatal(err)
	}
	cfg.Registry, cfg.Diag, cfg.Metrics = n.reg, n.dw, n.m
	if clock != nil {
		cfg.Clock = clock
		cfg.NoExpiryTimers = true // the engine's timers run on real time; tests call Sweep
	}
	if n.svc, err = c2d.Open(ctx, eng, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.svc.Close()
		n.dw.Close()
	})
	return n
}

func newNode(t *testing.T, cfg c2d.Config) *node {
	t.Helper()
	return startNode(t, enginetest.Start(t), newFakeClock(), cfg)
}

func (n *node) device(t *testing.T, id string) registry.Device {
	t.Helper()
	d, err := n.reg.CreateDevice(context.Background(), registry.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (n *node) send(t *testing.T, dev string, m c2d.Message) c2d.Message {
	t.Helper()
	out, err := n.svc.Send(context.Background(), dev, m)
	if err != nil {
		t.Fatalf("send to %s: %v", dev, err)
	}
	return out
}

func (n *node) depth(t *testing.T, dev string) int {
	t.Helper()
	d, err := n.svc.Depth(context.Background(), dev)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// feedback reads and completes every feedback record waiting.
func (n *node) feedback(t *testing.T) []c2d.FeedbackRecord {
	t.Helper()
	var out []c2d.FeedbackRecord
	for {
		b, err := n.svc.ReceiveFeedback(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			return out
		}
		out = append(out, b.Records...)
		if err := n.svc.CompleteFeedback(context.Background(), b.LockToken); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFeedback waits until want records have arrived.
func (n *node) waitFeedback(t *testing.T, want int) []c2d.FeedbackRecord {
	t.Helper()
	var out []c2d.FeedbackRecord
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want {
		out = append(out, n.feedback(t)...)
		if time.Now().After(deadline) {
			t.Fatalf("got %d feedback records, want %d: %+v", len(out), want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out
}

// waitRecord waits for a C2DCommands record that matches.
func (n *node) waitRecord(t *testing.T, match func(diag.Wire, map[string]any) bool) diag.Wire {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found *diag.Wire
		_ = diag.Read(context.Background(), n.eng, diag.C2DCommands, n.start, func(w diag.Wire) bool {
			var p map[string]any
			_ = json.Unmarshal([]byte(w.Properties), &p)
			if match(w, p) {
				found = &w
				return false
			}
			return true
		})
		if found != nil {
			return *found
		}
		if time.Now().After(deadline) {
			t.Fatal("no matching C2DCommands record")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// open opens a session and passes it the engine's announcements for its device, as the MQTT
// server's dispatcher does.
func (n *node) open(t *testing.T, cfg c2d.SessionConfig) *c2d.Session {
	t.Helper()
	mb := n.eng.NewMailbox(64)
	sub, err := mb.Subscribe(engine.DeviceSubject(cfg.DeviceID, "", c2d.NotifyKind))
	if err != nil {
		t.Fatal(err)
	}
	ss := n.svc.OpenSession(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			in, err := mb.Next(ctx)
			if err != nil {
				return
			}
			ss.Notify(engine.AnnouncedSeq(in))
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		sub.Unsubscribe()
		ss.Close()
	})
	return ss
}

// collector is a session's connection: it keeps what was delivered.
type collector struct {
	mu   sync.Mutex
	got  []*c2d.Delivery
	full bool
	ch   chan *c2d.Delivery
}

func newCollector() *collector { return &collector{ch: make(chan *c2d.Delivery, 1000)} }

func (c *collector) deliver(d *c2d.Delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return false
	}
	c.got = append(c.got, d)
	c.ch <- d
	return true
}

func (c *collector) next(t *testing.T) *c2d.Delivery {
	t.Helper()
	select {
	case d := <-c.ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
		return nil
	}
}

func (c *collector) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case d := <-c.ch:
		t.Fatalf("unexpected delivery of %d (%s), count %d", d.SequenceNumber, d.MessageID, d.DeliveryCount)
	case <-time.After(within):
	}
}

// Package methodstest helps test code that invokes direct methods: a [Clock] whose timeouts fire
// when the test says so, instead of after 5 to 300 real seconds.
//
//	clk := methodstest.NewClock()
//	svc, _ := methods.New(methods.Config{Engine: eng, Registry: reg, Clock: clk})
//	go func() { _, err := svc.Invoke(ctx, call); errs <- err }()
//	clk.WaitTimers(t, 1)    // the call is waiting for its answer
//	clk.Advance(30 * time.Second) // its response timeout fires now
package methodstest

import (
	"sort"
	"sync"
	"testing"
	"time"
)

// Clock is a manual clock for methods.Config.Clock.
type Clock struct {
	mu     sync.Mutex
	now    time.Duration
	timers []*timer
}

type timer struct {
	at time.Duration
	f  func()
}

// NewClock returns a clock at time zero.
func NewClock() *Clock { return &Clock{} }

// AfterFunc schedules f for d after the clock's current time.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now + d, f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Advance moves the clock forward and runs, each in its own goroutine, the functions of the
// timers that came due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	var due, left []*timer
	for _, t := range c.timers {
		if t.at <= c.now {
			due = append(due, t)
		} else {
			left = append(left, t)
		}
	}
	c.timers = left
	c.mu.Unlock()
	sort.Slice(due, func(i, j int) bool { return due[i].at < due[j].at })
	for _, t := range due {
		go t.f()
	}
}

// Timers returns the due times, relative to now, of the timers not yet fired or stopped.
func (c *Clock) Timers() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Duration, 0, len(c.timers))
	for _, t := range c.timers {
		out = append(out, t.at-c.now)
	}
	return out
}

// WaitTimers waits until at least n timers are pending, so that a test advances the clock only
// once the code under test has scheduled its timeouts.
func (c *Clock) WaitTimers(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.Timers()) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("waited 10s for %d pending timers; have %v", n, c.Timers())
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitTimer waits until a pending timer is due exactly d from now.
func (c *Clock) WaitTimer(tb testing.TB, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, x := range c.Timers() {
			if x == d {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("waited 10s for a timer due in %s; have %v", d, c.Timers())
		}
		time.Sleep(time.Millisecond)
	}
}

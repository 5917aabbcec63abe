package throttle

import (
	"sync"
	"time"
)

// limiter shapes one class's traffic with the generic cell rate algorithm: tat is the time at
// which the class would be idle again if every admitted operation ran at the rate. An
// operation is admitted at once while tat stays within burst of now (the burst IoT Hub first
// accepts), queued while it stays within burst+backlog (it waits until tat-burst, so queued
// operations leave at the rate, in order), and refused beyond that: the backlog is full.
//
// The rate may change (a node's share of the hub's rate, see [Throttler.Join]) without
// losing the state.
type limiter struct {
	mu       sync.Mutex
	interval float64 // nanoseconds per unit at this node's share of the rate; 0 = no limit
	burst    int64   // nanoseconds of rate admitted at once
	backlog  int64   // nanoseconds of rate that may wait
	tat      int64   // theoretical arrival time, unix nanoseconds
	demand   float64 // units asked for since the last takeDemand
}

func newLimiter(rate float64, burst, backlog time.Duration) *limiter {
	l := &limiter{burst: int64(burst), backlog: int64(backlog)}
	l.setRate(rate)
	return l
}

// setRate changes the rate (units per second).
func (l *limiter) setRate(rate float64) {
	l.mu.Lock()
	if rate > 0 {
		l.interval = float64(time.Second) / rate
	} else {
		l.interval = 0
	}
	l.mu.Unlock()
}

// reserve admits n units at now. It returns how long the caller must wait before going on, or
// ok false when the backlog is full (nothing is reserved then).
func (l *limiter) reserve(now int64, n int) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.demand += float64(n)
	if l.interval == 0 {
		return 0, true
	}
	tat := max(l.tat, now)
	cost := int64(l.interval * float64(n))
	next := tat + cost
	over := next - now - l.burst
	if over > l.backlog {
		// An operation worth more than the burst and the backlog together (a bulk registry call
		// of 100 devices on a node with a small share of a small rate) could never fit: it is
		// admitted when the class is idle, waits the whole backlog, and its cost still moves
		// tat, so the operations after it pay for it and the long-run rate holds.
		if cost <= l.burst+l.backlog || l.tat > now {
			return 0, false
		}
		l.tat = next
		return time.Duration(l.backlog), true
	}
	l.tat = next
	if over <= 0 {
		return 0, true
	}
	return time.Duration(over), true
}

// takeDemand returns the units asked for since the last call and starts counting again.
func (l *limiter) takeDemand() float64 {
	l.mu.Lock()
	d := l.demand
	l.demand = 0
	l.mu.Unlock()
	return d
}

// release gives back n units reserved by the last reserve, when an operation that needs
// several limiters is refused by a later one.
func (l *limiter) release(n int) {
	l.mu.Lock()
	if l.interval > 0 {
		l.tat -= int64(l.interval * float64(n))
	}
	l.mu.Unlock()
}

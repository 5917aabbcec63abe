package mqtt

import (
	"context"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

// writeQueue holds what a connection has to send. Its memory follows its contents: an idle
// connection holds no queue buffer and no write goroutine, which is most of what an idle
// connection would otherwise cost (a 256-item channel is 10 KiB, a parked goroutine's stack 2-8).
// A writer goroutine is started by the first item queued after the queue ran empty and ends
// when the queue has stayed empty for writerLinger, so a busy connection keeps its writer.
type writeQueue struct {
	mu      sync.Mutex
	items   []outItem
	running bool          // a writer goroutine owns the socket's write side
	wake    chan struct{} // the lingering writer waits on it; nil when no writer lingers
	space   chan struct{} // closed when the writer takes items; nil when nobody waits for room
	err     error         // why the writer stopped; once set, nothing more is written
}

// enqueue hands an item to the writer, waiting while the queue holds WriteQueue items
// (back-pressure on the device's reads), until the connection ends.
func (c *conn) enqueue(it outItem) error {
	q := &c.wq
	for {
		q.mu.Lock()
		if q.err != nil {
			err := q.err
			q.mu.Unlock()
			return err
		}
		if len(q.items) < c.s.cfg.WriteQueue {
			c.pushLocked(it)
			q.mu.Unlock()
			return nil
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-c.ctx.Done():
			q.mu.Lock()
			err := q.err
			q.mu.Unlock()
			if err == nil {
				err = context.Canceled
			}
			return err
		}
	}
}

// tryEnqueue queues an item unless the queue is full or the connection has failed; it never
// waits. Deliveries from the cloud (C2D, methods, desired properties) use it, so a device that
// does not read cannot hold up the code that serves others.
func (c *conn) tryEnqueue(it outItem) bool {
	q := &c.wq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil || len(q.items) >= c.s.cfg.WriteQueue {
		return false
	}
	c.pushLocked(it)
	return true
}

// writerLinger is how long a writer waits for more once it has written everything. Starting a
// goroutine for every burst would cost a busy connection more than the wait does, while an
// idle one still ends up with no writer.
const writerLinger = time.Second

// pushLocked appends an item and starts a writer if none runs, or wakes a lingering one. c.wq.mu
// is held.
func (c *conn) pushLocked(it outItem) {
	q := &c.wq
	q.items = append(q.items, it)
	switch {
	case !q.running:
		q.running = true
		go c.writeLoop()
	case q.wake != nil:
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// failWrites stops the writer for good with err, and ends the connection.
func (c *conn) failWrites(err error) {
	q := &c.wq
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.items = nil
	q.mu.Unlock()
	c.cancel()
	_ = c.nc.Close()
}

// lingered waits up to writerLinger for more items, with c.wq.mu held on entry and released
// while waiting. It returns with the lock held: true when the wait ran out (the writer should
// end if the queue is still empty), false when it was woken or the connection is ending,
// with the lock released (the caller looks again).
func (c *conn) lingered(linger **time.Timer) bool {
	q := &c.wq
	if q.wake == nil {
		q.wake = make(chan struct{}, 1)
	}
	wake := q.wake
	q.mu.Unlock()
	if *linger == nil {
		*linger = time.NewTimer(writerLinger)
	} else {
		(*linger).Reset(writerLinger)
	}
	select {
	case <-wake:
		(*linger).Stop()
		return false
	case <-c.ctx.Done():
		(*linger).Stop()
		return false
	case <-(*linger).C:
		q.mu.Lock()
		return true
	}
}

// writeLoop writes queued packets in order until the queue is empty; a telemetry
// acknowledgement waits until its message is stored, so PUBACKs go out in the order the
// PUBLISHes came in [MQTT-4.6.0-2]. Everything taken in one turn is written with one call.
func (c *conn) writeLoop() {
	q := &c.wq
	var batch []outItem
	var buf []byte
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for {
		q.mu.Lock()
		if len(q.items) == 0 && q.err == nil && c.ctx.Err() == nil && !c.lingered(&linger) {
			continue // woken with work, or spuriously: look again
		}
		if len(q.items) == 0 || q.err != nil || c.ctx.Err() != nil {
			// Leave nothing behind on an idle connection: the next item starts a new writer.
			q.running = false
			q.wake = nil
			q.mu.Unlock()
			return
		}
		batch, q.items = q.items, batch[:0]
		if q.space != nil {
			close(q.space)
			q.space = nil
		}
		q.mu.Unlock()
		for i := range batch {
			it := &batch[i]
			if it.pending != nil {
				if _, err := it.pending.Wait(c.ctx); err != nil {
					if c.ctx.Err() != nil {
						q.mu.Lock()
						q.running = false
						q.mu.Unlock()
						return
					}
					e := errcode.As(err)
					c.recordTelemetryError(&telemetry.Message{DeviceID: c.id.DeviceID, ModuleID: c.id.ModuleID}, int(it.size), e)
					c.failWrites(e)
					return
				}
				c.s.cfg.Metrics.TelemetrySuccess.Inc()
				if it.ackID != 0 {
					buf = appendAck(buf, typePuback, it.ackID)
				}
			} else {
				buf = append(buf, it.data...)
			}
			*it = outItem{}
		}
		if len(buf) == 0 {
			continue
		}
		// Write when nothing else is waiting, so a burst of acknowledgements shares one write.
		q.mu.Lock()
		more := len(q.items) > 0
		q.mu.Unlock()
		if more && len(buf) < 16<<10 {
			continue
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.nc.Write(buf); err != nil {
			c.failWrites(errcode.New(errcode.DeviceConnectionClosedRemotely, "write failed: %v", err))
			return
		}
		if cap(buf) > 16<<10 {
			buf = nil // do not keep a big buffer between bursts
		} else {
			buf = buf[:0]
		}
		if cap(batch) > 64 {
			batch = nil
		}
	}
}

package c2d

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// A Session delivers a connected device's queue over its connection (MQTT; AMQP later): the
// oldest messages first, up to the window unsettled at a time, each under the one-minute lock.
// The device's acknowledgement completes a message; a lock that runs out delivers it again (one
// more delivery) until the delivery count is used up, then dead-letters it.
//
// A session costs its node a few hundred bytes plus a little per unsettled message, and no
// goroutine: the node's workers run sessions that have something to do, one at a time each.
// Wake-ups come from the engine's announcement of a new message (Notify), from the device
// (Complete), and from timers (locks, retries, a slow resync in case an announcement was lost).
//
// Lock order: Session.mu, then runQueue.mu. No lock is held during engine I/O or while calling
// Deliver.

// SessionConfig describes one device connection.
type SessionConfig struct {
	// DeviceID is the connected device.
	DeviceID string
	// ConnID names the connection uniquely (it owns the locks the session takes).
	ConnID string
	// Protocol names the transport in diagnostic records ("Mqtt", "MqttWs").
	Protocol string
	// Deliver hands a locked message to the connection without blocking. It returns false when
	// the connection has no room now; the session tries again shortly. A message delivered
	// again after its lock ran out has the same SequenceNumber.
	Deliver func(*Delivery) bool
}

// Session is one connection's delivery of its device's queue.
type Session struct {
	svc   *Service
	cfg   SessionConfig
	owner string
	steal func(string) bool

	mu        sync.Mutex
	closed    bool
	scheduled bool // in the run queue or running
	dirty     bool // something happened since the run began
	cursor    uint64
	scanned   bool     // a scan reached the end of the queue: news now comes by announcement
	known     []uint64 // announced sequence numbers not looked at yet
	lastSeen  uint64   // the highest sequence number announced or scanned
	revisit   uint64   // lowest sequence skipped because another owner held it; 0 for none
	inflight  map[uint64]*flight
	settles   []uint64 // acknowledged by the device
	expired   []uint64 // locks that ran out
	wake      Timer    // revisit skipped messages
	wakeAt    time.Time
	retry     Timer // engine error or no room on the connection
	resync    Timer
}

// flight is a message delivered (or about to be) and not yet settled.
type flight struct {
	l     lease
	m     *Message  // without its body once sent
	d     *Delivery // set while not yet handed to the connection
	timer Timer     // lock expiry
}

// OpenSession starts delivering deviceID's queue to a connection. Close it when the connection
// ends.
func (s *Service) OpenSession(cfg SessionConfig) *Session {
	owner := connOwnerPrefix + cfg.ConnID
	ss := &Session{svc: s, cfg: cfg, owner: owner, steal: stealConn(owner), inflight: map[uint64]*flight{}}
	ss.mu.Lock()
	ss.armResync()
	ss.mu.Unlock()
	ss.kick()
	return ss
}

// maxKnown bounds the announced sequence numbers a session keeps; beyond it, it scans instead.
const maxKnown = 256

// Notify tells the session that message seq was queued for its device, after message prev (the
// one before it in the device's queue, 0 if none). seq 0 means some change without a sequence
// number. Either that, or a prev the session never heard of (an announcement was lost), makes the
// session read its queue again.
func (ss *Session) Notify(seq, prev uint64) {
	ss.mu.Lock()
	if seq == 0 || prev > ss.lastSeen || len(ss.known) >= maxKnown {
		ss.scanned, ss.known = false, nil
	} else {
		ss.known = append(ss.known, seq)
	}
	ss.lastSeen = max(ss.lastSeen, seq)
	ss.mu.Unlock()
	ss.kick()
}

// Complete records the device's acknowledgement of the message with sequence seq.
func (ss *Session) Complete(seq uint64) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.settles = append(ss.settles, seq)
	ss.mu.Unlock()
	ss.kick()
}

// Close stops the session. Acknowledgements already received are still completed; messages
// still locked go back to the queue (keeping their delivery counts).
func (ss *Session) Close() {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	for _, t := range []Timer{ss.wake, ss.retry, ss.resync} {
		if t != nil {
			t.Stop()
		}
	}
	// Whoever runs the session next (a worker, if it is queued or running) cleans up; if nobody
	// does, a background task does, so that cleaning up never overlaps a run.
	idle := !ss.scheduled
	ss.scheduled = true
	ss.mu.Unlock()
	if idle {
		ss.svc.background(ss.cleanup)
	}
}

// cleanup completes what the device acknowledged and returns the other locks to the queue. It
// runs once, after the session closed, never alongside run.
func (ss *Session) cleanup(ctx context.Context) {
	ss.mu.Lock()
	settles, flights := ss.settles, ss.inflight
	ss.settles, ss.inflight, ss.expired = nil, map[uint64]*flight{}, nil
	for _, f := range flights {
		if f.timer != nil {
			f.timer.Stop()
		}
	}
	ss.mu.Unlock()
	for _, seq := range settles {
		if f := flights[seq]; f != nil {
			delete(flights, seq)
			ss.finish(ctx, seq, f)
		}
	}
	for _, f := range flights {
		_ = ss.svc.unlock(ctx, ss.cfg.DeviceID, f.l)
	}
}

func (ss *Session) kick() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return
	}
	ss.dirty = true
	if !ss.scheduled {
		ss.scheduled = true
		ss.svc.runq.push(ss)
	}
}

// run does the session's pending work; a worker calls it, never two at once for one session.
func (ss *Session) run(ctx context.Context) {
	for {
		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ss.cleanup(cctx)
			cancel()
			return
		}
		settles, expired := ss.settles, ss.expired
		ss.settles, ss.expired = nil, nil
		ss.dirty = false
		ss.mu.Unlock()

		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		for _, seq := range settles {
			ss.settle(cctx, seq)
		}
		for _, seq := range expired {
			ss.renew(cctx, seq)
		}
		ss.resend()
		ss.fill(cctx)
		cancel()

		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			continue // clean up
		}
		if !ss.dirty && len(ss.settles) == 0 && len(ss.expired) == 0 {
			ss.scheduled = false
			ss.mu.Unlock()
			return
		}
		ss.mu.Unlock()
	}
}

// settle completes an acknowledged message.
func (ss *Session) settle(ctx context.Context, seq uint64) {
	ss.mu.Lock()
	f := ss.inflight[seq]
	delete(ss.inflight, seq)
	if f != nil {
		f.timer.Stop()
	}
	ss.mu.Unlock()
	if f == nil {
		// Acknowledged after the message was dead-lettered or expired.
		ss.svc.record("complete", &Message{DeviceID: ss.cfg.DeviceID, SequenceNumber: seq}, 0, ss.cfg.Protocol, lockLost(seq), "", "412")
		return
	}
	ss.finish(ctx, seq, f)
}

func (ss *Session) finish(ctx context.Context, seq uint64, f *flight) {
	err := ss.svc.finish(ctx, ss.cfg.DeviceID, seq, f.l.deliveries, f.m, StatusSuccess, ss.cfg.Protocol)
	if err == nil {
		return
	}
	if errcode.Is(err, errcode.DeviceMessageLockLost) {
		ss.svc.record("complete", f.m, f.l.deliveries, ss.cfg.Protocol, err, "", "412")
		return
	}
	ss.svc.log.Warn("could not complete a message", "device", ss.cfg.DeviceID, "seq", seq, "err", err)
}

// renew handles a lock that ran out without an acknowledgement: deliver again, or dead-letter.
func (ss *Session) renew(ctx context.Context, seq uint64) {
	ss.mu.Lock()
	f := ss.inflight[seq]
	ss.mu.Unlock()
	if f == nil {
		return
	}
	drop := func() {
		ss.mu.Lock()
		delete(ss.inflight, seq)
		ss.mu.Unlock()
	}
	if f.l.deliveries >= ss.svc.cfg.MaxDeliveryCount {
		drop()
		_ = ss.svc.finish(ctx, ss.cfg.DeviceID, seq, f.l.deliveries, f.m, StatusDeliveryCountExceeded, ss.cfg.Protocol)
		return
	}
	nl, ok, err := ss.svc.relock(ctx, ss.cfg.DeviceID, f.l, ss.owner)
	if err != nil {
		ss.mu.Lock()
		ss.expired = append(ss.expired, seq)
		ss.armRetry(time.Second)
		ss.mu.Unlock()
		return
	}
	if !ok {
		drop() // someone else settled or took it
		return
	}
	qm, err := ss.svc.queue.Get(ctx, ss.cfg.DeviceID, seq)
	if err != nil {
		drop() // expired or purged meanwhile; the state entry goes with the expiry
		return
	}
	m, err := decode(ss.cfg.DeviceID, seq, qm.Data)
	if err != nil {
		drop()
		return
	}
	d := &Delivery{Message: m, LockToken: nl.token(), DeliveryCount: nl.deliveries}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		_ = ss.svc.unlock(ctx, ss.cfg.DeviceID, nl)
		return
	}
	f.l, f.d = nl, d
	f.timer = ss.svc.clock.AfterFunc(ss.svc.cfg.LockDuration, func() { ss.lockRanOut(seq) })
	ss.mu.Unlock()
	ss.send(seq, f)
}

// lockRanOut is the lock timer of a delivered message.
func (ss *Session) lockRanOut(seq uint64) {
	ss.mu.Lock()
	if ss.closed || ss.inflight[seq] == nil {
		ss.mu.Unlock()
		return
	}
	ss.expired = append(ss.expired, seq)
	ss.mu.Unlock()
	ss.kick()
}

// send hands a flight's delivery to the connection, or arranges to try again shortly.
func (ss *Session) send(seq uint64, f *flight) {
	ss.mu.Lock()
	d := f.d
	ss.mu.Unlock()
	if d == nil {
		return
	}
	ok := ss.cfg.Deliver(d)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ok {
		if f.d == d {
			f.d = nil
		}
		return
	}
	ss.armRetry(20 * time.Millisecond)
}

// resend retries deliveries the connection had no room for.
func (ss *Session) resend() {
	ss.mu.Lock()
	var todo []uint64
	for seq, f := range ss.inflight {
		if f.d != nil {
			todo = append(todo, seq)
		}
	}
	ss.mu.Unlock()
	sortSeqs(todo)
	for _, seq := range todo {
		ss.mu.Lock()
		f := ss.inflight[seq]
		ss.mu.Unlock()
		if f != nil {
			ss.send(seq, f)
		}
	}
}

// fill delivers new messages while the window has room. Until a scan has read the queue to its
// end (after the session opens, a resync, or a lost announcement), it scans from the cursor;
// after that it reads only the announced messages, each by its sequence number, which costs the
// engine one lookup instead of a search through the stream.
func (ss *Session) fill(ctx context.Context) {
	ss.mu.Lock()
	free := ss.svc.cfg.Window - len(ss.inflight)
	scanned := ss.scanned
	ss.mu.Unlock()
	if !scanned {
		ss.scan(ctx, &free)
		return
	}
	ss.mu.Lock()
	known := ss.known
	ss.known = nil
	ss.mu.Unlock()
	sortSeqs(known)
	for i, seq := range known {
		if i > 0 && seq == known[i-1] {
			continue
		}
		if free <= 0 || ctx.Err() != nil {
			ss.mu.Lock()
			ss.known = append(ss.known, known[i:]...)
			ss.mu.Unlock()
			return
		}
		ss.mu.Lock()
		_, mine := ss.inflight[seq]
		ss.mu.Unlock()
		if mine {
			continue
		}
		l, outcome, until, err := ss.svc.takeLock(ctx, ss.cfg.DeviceID, seq, ss.owner, ss.steal)
		if err != nil {
			ss.svc.log.Warn("locking a message", "device", ss.cfg.DeviceID, "seq", seq, "err", err)
			ss.mu.Lock()
			ss.known = append(ss.known, known[i:]...)
			ss.armRetry(time.Second)
			ss.mu.Unlock()
			return
		}
		if outcome == busy {
			ss.skipBusy(seq, until)
			continue
		}
		qm, err := ss.svc.queue.Get(ctx, ss.cfg.DeviceID, seq)
		if err != nil {
			if outcome == locked {
				_ = ss.svc.state.Delete(ctx, stateKey(ss.cfg.DeviceID, seq), l.rev)
			}
			continue // settled, expired or purged already
		}
		m, err := decode(ss.cfg.DeviceID, seq, qm.Data)
		if err != nil {
			continue
		}
		if ss.take(ctx, l, outcome, m) {
			free--
		}
	}
}

// scan reads the queue from the cursor and delivers what it finds, until the window is full or
// the queue ends.
func (ss *Session) scan(ctx context.Context, free *int) {
	ss.mu.Lock()
	from := ss.cursor
	ss.mu.Unlock()
	for *free > 0 {
		qm, err := ss.svc.queue.Next(ctx, ss.cfg.DeviceID, from)
		if errors.Is(err, engine.ErrNotFound) {
			ss.mu.Lock()
			ss.scanned = true // announcements that came meanwhile are in known
			ss.mu.Unlock()
			return
		}
		if err != nil {
			ss.svc.log.Warn("reading a device queue", "device", ss.cfg.DeviceID, "err", err)
			ss.mu.Lock()
			ss.armRetry(time.Second)
			ss.mu.Unlock()
			return
		}
		seq := qm.Seq
		from = seq + 1
		ss.setCursor(from)
		ss.mu.Lock()
		_, mine := ss.inflight[seq]
		ss.lastSeen = max(ss.lastSeen, seq)
		ss.mu.Unlock()
		if mine {
			continue
		}
		m, err := decode(ss.cfg.DeviceID, seq, qm.Data)
		if err != nil {
			continue
		}
		if !m.Expiry.After(ss.svc.clock.Now()) {
			ss.svc.expire(ctx, m)
			continue
		}
		l, outcome, until, err := ss.svc.lock(ctx, ss.cfg.DeviceID, seq, ss.owner, ss.steal)
		if err != nil {
			ss.svc.log.Warn("locking a message", "device", ss.cfg.DeviceID, "seq", seq, "err", err)
			ss.mu.Lock()
			ss.cursor = seq
			ss.armRetry(time.Second)
			ss.mu.Unlock()
			return
		}
		switch outcome {
		case busy:
			ss.skipBusy(seq, until)
			continue
		case gone:
			continue
		}
		if ss.take(ctx, l, outcome, m) {
			*free--
		}
	}
}

// skipBusy remembers a message another owner holds, to look at it again when that lock runs out.
func (ss *Session) skipBusy(seq uint64, until time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.revisit == 0 || seq < ss.revisit {
		ss.revisit = seq
	}
	ss.armWake(until)
}

// take delivers a message this session locked (or dead-letters it when its deliveries are used
// up, or expires it). It reports whether the message now takes a place in the window.
func (ss *Session) take(ctx context.Context, l lease, outcome lockOutcome, m *Message) bool {
	if outcome == deadLetter {
		_ = ss.svc.finish(ctx, ss.cfg.DeviceID, l.seq, l.deliveries, m, StatusDeliveryCountExceeded, ss.cfg.Protocol)
		return false
	}
	if !m.Expiry.After(ss.svc.clock.Now()) {
		ss.svc.expire(ctx, m)
		return false
	}
	meta := *m
	meta.Body = nil
	seq := l.seq
	f := &flight{l: l, m: &meta, d: &Delivery{Message: m, LockToken: l.token(), DeliveryCount: l.deliveries}}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		_ = ss.svc.unlock(ctx, ss.cfg.DeviceID, l)
		return false
	}
	f.timer = ss.svc.clock.AfterFunc(l.until.Sub(ss.svc.clock.Now()), func() { ss.lockRanOut(seq) })
	ss.inflight[seq] = f
	ss.mu.Unlock()
	ss.send(seq, f)
	return true
}

func (ss *Session) setCursor(to uint64) {
	ss.mu.Lock()
	if to > ss.cursor {
		ss.cursor = to
	}
	ss.mu.Unlock()
}

// armRetry kicks the session after d. Callers hold ss.mu.
func (ss *Session) armRetry(d time.Duration) {
	if ss.closed || ss.retry != nil {
		return
	}
	ss.retry = ss.svc.clock.AfterFunc(d, func() {
		ss.mu.Lock()
		ss.retry = nil
		ss.mu.Unlock()
		ss.kick()
	})
}

// armWake revisits skipped messages once the lock that held them runs out. Callers hold ss.mu.
func (ss *Session) armWake(at time.Time) {
	if ss.closed || ss.wake != nil && !at.Before(ss.wakeAt) {
		return
	}
	if ss.wake != nil {
		ss.wake.Stop()
	}
	ss.wakeAt = at
	ss.wake = ss.svc.clock.AfterFunc(at.Sub(ss.svc.clock.Now())+10*time.Millisecond, func() {
		ss.mu.Lock()
		ss.wake = nil
		if ss.revisit != 0 && ss.revisit < ss.cursor {
			ss.cursor = ss.revisit
		}
		ss.revisit = 0
		ss.scanned = false
		ss.mu.Unlock()
		ss.kick()
	})
}

// armResync reads the whole queue again from time to time, in case an announcement was lost.
// Callers hold ss.mu.
func (ss *Session) armResync() {
	ss.resync = ss.svc.clock.AfterFunc(ss.svc.cfg.ResyncInterval, func() {
		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			return
		}
		ss.cursor = 0
		ss.scanned = false
		ss.armResync()
		ss.mu.Unlock()
		ss.kick()
	})
}

func sortSeqs(s []uint64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// runQueue holds the sessions that have work, for the node's workers.
type runQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []*Session
	closed bool
}

func newRunQueue() *runQueue {
	q := &runQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *runQueue) push(ss *Session) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, ss)
		q.cond.Signal()
	}
	q.mu.Unlock()
}

func (q *runQueue) pop() (*Session, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return nil, false
	}
	ss := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	return ss, true
}

func (q *runQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (s *Service) worker() {
	defer s.wg.Done()
	for {
		ss, ok := s.runq.pop()
		if !ok {
			return
		}
		ss.run(s.ctx)
	}
}

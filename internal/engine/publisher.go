package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors a [Publisher] returns.
var (
	// ErrBusy means the in-flight window stayed full for the whole stall time: the engine is not
	// keeping up. Callers should push back on their producers (IoT Hub answers 503 ServerBusy).
	ErrBusy = errors.New("engine busy: too many writes in flight")
	// ErrClosed means the publisher was closed.
	ErrClosed = errors.New("publisher closed")
	// ErrAckTimeout means no acknowledgement came within the ack timeout. The message may or
	// may not be stored.
	ErrAckTimeout = errors.New("no acknowledgement from the engine in time")
	// ErrDisconnected means the connection to the engine dropped while the write was in flight.
	// The message may or may not be stored.
	ErrDisconnected = errors.New("disconnected from the engine while writing")
)

// PublisherConfig shapes a [Publisher]. The zero value is usable.
type PublisherConfig struct {
	// MaxInFlight bounds the writes sent to the engine and not yet acknowledged. Zero means 8192.
	MaxInFlight int
	// StallWait is how long [Publisher.Publish] waits for room when the window is full before it
	// fails with [ErrBusy]. Zero means 2 s.
	StallWait time.Duration
	// AckTimeout fails a write with [ErrAckTimeout] when its acknowledgement has not come after
	// this long. Zero means 30 s.
	AckTimeout time.Duration
}

// Publisher appends to streams without waiting for each write: every [Publisher.Publish] sends
// the message at once and returns a [Pub] that completes when the engine has stored it. Many
// writes share the connection's round trips, so throughput is bounded by the engine rather than
// by latency, while each caller still learns exactly when its own message is durable.
//
// It is a leaner form of nats.go's PublishAsync built for the telemetry hot path: one reply
// subscription for all acknowledgements, a bounded window that pushes back on producers, a
// hand-written acknowledgement parser, and three allocations per write on our side.
//
// Lock order: Publisher.mu is never held while sending to or receiving from window, and never
// during I/O.
type Publisher struct {
	e      *Engine
	cfg    PublisherConfig
	prefix string // reply subject prefix; the write's id follows in base 36
	sub    *nats.Subscription
	window chan struct{} // one token per write in flight
	status chan nats.Status
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[uint64]*Pub
	next    uint64
	closed  bool
	idle    chan struct{} // closed once pending empties after Close began
}

// Pub is one write in flight. Its result is ready once Done is closed.
type Pub struct {
	done chan struct{}
	seq  uint64
	err  error
}

// Done is closed when the write is stored or has failed.
func (p *Pub) Done() <-chan struct{} { return p.done }

// Result returns the stored message's stream sequence or the write's error. It is only valid
// once Done is closed.
func (p *Pub) Result() (uint64, error) { return p.seq, p.err }

// Wait waits until the write is stored and returns its stream sequence, or the error that
// prevented it, or ctx's error (the write itself goes on).
func (p *Pub) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-p.done:
		return p.seq, p.err
	default:
	}
	select {
	case <-p.done:
		return p.seq, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *Pub) resolve(seq uint64, err error) {
	p.seq, p.err = seq, err
	close(p.done)
}

// NewPublisher starts a publisher with its own window on the engine's connection. Close it
// before the engine.
func (e *Engine) NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8192
	}
	if cfg.StallWait <= 0 {
		cfg.StallWait = 2 * time.Second
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	p := &Publisher{
		e:       e,
		cfg:     cfg,
		prefix:  nats.NewInbox() + ".",
		window:  make(chan struct{}, cfg.MaxInFlight),
		stop:    make(chan struct{}),
		pending: make(map[uint64]*Pub, cfg.MaxInFlight),
	}
	sub, err := e.nc.Subscribe(p.prefix+"*", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("engine: publisher: %w", err)
	}
	// Acknowledgements never exceed the window, so the default pending limits are not a
	// concern; lift them anyway so a slow scheduler can never make the client drop one.
	_ = sub.SetPendingLimits(-1, -1)
	p.sub = sub
	p.status = e.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	p.wg.Add(1)
	go p.watch()
	return p, nil
}

// Publish sends data to subject and returns at once with the pending write. When MaxInFlight
// writes are already in flight it waits for room, at most StallWait, then fails with [ErrBusy].
// data must not be modified until the write completes.
func (p *Publisher) Publish(subject string, data []byte) (*Pub, error) {
	pub := new(Pub)
	if err := p.PublishTo(pub, subject, data); err != nil {
		return nil, err
	}
	return pub, nil
}

// PublishTo is [Publisher.Publish] into a [Pub] the caller provides, typically embedded in a
// struct of its own, which saves an allocation per write. pub must be a zero Pub that is not
// in use; it is ready for Done, Wait and Result once PublishTo returns nil.
func (p *Publisher) PublishTo(pub *Pub, subject string, data []byte) error {
	select {
	case p.window <- struct{}{}:
	default:
		t := time.NewTimer(p.cfg.StallWait)
		select {
		case p.window <- struct{}{}:
			t.Stop()
		case <-t.C:
			return ErrBusy
		case <-p.stop:
			t.Stop()
			return ErrClosed
		}
	}
	pub.done = make(chan struct{})
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.window
		return ErrClosed
	}
	p.next++
	id := p.next
	p.pending[id] = pub
	p.mu.Unlock()

	var buf [96]byte
	reply := string(strconv.AppendUint(append(buf[:0], p.prefix...), id, 36))
	if err := p.e.nc.PublishRequest(subject, reply, data); err != nil {
		if p.take(id) == pub {
			pub.resolve(0, err)
		}
		return fmt.Errorf("engine: publish: %w", err)
	}
	return nil
}

// take removes the write id from the pending set and frees its window slot. It returns nil when
// the write was already settled (acknowledged, timed out or failed).
func (p *Publisher) take(id uint64) *Pub {
	p.mu.Lock()
	pub, ok := p.pending[id]
	if ok {
		delete(p.pending, id)
		if p.idle != nil && len(p.pending) == 0 {
			close(p.idle)
			p.idle = nil
		}
	}
	p.mu.Unlock()
	if !ok {
		return nil
	}
	<-p.window
	return pub
}

// onAck settles the write an acknowledgement answers. It runs on the subscription's goroutine.
func (p *Publisher) onAck(m *nats.Msg) {
	if len(m.Subject) <= len(p.prefix) {
		return
	}
	id, err := strconv.ParseUint(m.Subject[len(p.prefix):], 36, 64)
	if err != nil {
		return
	}
	pub := p.take(id)
	if pub == nil {
		return // settled before, e.g. timed out
	}
	seq, err := parseAck(m)
	pub.resolve(seq, err)
}

var (
	ackSeqKey   = []byte(`"seq":`)
	ackErrorKey = []byte(`"error"`)
)

// parseAck reads a JetStream publish acknowledgement: {"stream":"S","seq":12} or
// {"error":{"code":503,"err_code":10077,"description":"..."}}. The success path allocates
// nothing; it is the hot path of every write.
func parseAck(m *nats.Msg) (uint64, error) {
	if len(m.Data) == 0 {
		if m.Header.Get("Status") == "503" {
			return 0, fmt.Errorf("%w: no stream stores subject", ErrNoResponders)
		}
		return 0, errors.New("engine: empty acknowledgement")
	}
	if bytes.Contains(m.Data, ackErrorKey) {
		var resp struct {
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err == nil && resp.Error != nil {
			return 0, fmt.Errorf("engine: write refused: %s (%d/%d)", resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
		}
	}
	i := bytes.Index(m.Data, ackSeqKey)
	if i < 0 {
		return 0, fmt.Errorf("engine: malformed acknowledgement %q", m.Data)
	}
	var seq uint64
	digits := 0
	for _, c := range m.Data[i+len(ackSeqKey):] {
		if c < '0' || c > '9' {
			break
		}
		seq = seq*10 + uint64(c-'0')
		digits++
	}
	if digits == 0 || seq == 0 {
		return 0, fmt.Errorf("engine: malformed acknowledgement %q", m.Data)
	}
	return seq, nil
}

// watch fails writes whose acknowledgement is overdue, and every write in flight when the
// connection drops (their acknowledgements would be lost with it).
func (p *Publisher) watch() {
	defer p.wg.Done()
	tick := p.cfg.AckTimeout / 8
	tick = max(10*time.Millisecond, min(tick, time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	// marks[i] is the last id issued at some tick; the oldest mark is at least AckTimeout old,
	// so every id at or below it that is still pending has waited too long.
	marks := make([]uint64, int(p.cfg.AckTimeout/tick)+1)
	i := 0
	for {
		select {
		case <-p.stop:
			return
		case st, ok := <-p.status:
			if !ok {
				return
			}
			if st == nats.DISCONNECTED || st == nats.RECONNECTING || st == nats.CLOSED {
				p.failWhere(func(uint64) bool { return true }, ErrDisconnected)
			}
		case <-t.C:
			p.mu.Lock()
			cur, n := p.next, len(p.pending)
			p.mu.Unlock()
			old := marks[i]
			marks[i] = cur
			i = (i + 1) % len(marks)
			if n > 0 && old > 0 {
				p.failWhere(func(id uint64) bool { return id <= old }, ErrAckTimeout)
			}
		}
	}
}

// failWhere settles with err every pending write whose id matches.
func (p *Publisher) failWhere(match func(uint64) bool, err error) {
	var failed []*Pub
	p.mu.Lock()
	for id, pub := range p.pending {
		if match(id) {
			delete(p.pending, id)
			failed = append(failed, pub)
		}
	}
	if p.idle != nil && len(p.pending) == 0 {
		close(p.idle)
		p.idle = nil
	}
	p.mu.Unlock()
	for _, pub := range failed {
		<-p.window
		pub.resolve(0, err)
	}
}

// InFlight returns the number of writes sent and not yet settled.
func (p *Publisher) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// Close stops new writes, waits until ctx ends for the writes in flight to be acknowledged,
// fails the rest with [ErrClosed], and releases the subscription. It is safe to call twice.
func (p *Publisher) Close(ctx context.Context) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var idle chan struct{}
	if len(p.pending) > 0 {
		idle = make(chan struct{})
		p.idle = idle
	}
	p.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	close(p.stop)
	p.wg.Wait()
	p.failWhere(func(uint64) bool { return true }, ErrClosed)
	_ = p.sub.Unsubscribe()
	p.e.nc.RemoveStatusListener(p.status)
}

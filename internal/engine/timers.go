package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TimersConfig describes a set of cluster-wide timers, one per key, kept by the engine as
// message schedules (nats-server 2.12+). A timer fires once, on one node: whichever node's
// [Timers.Next] takes it first. Nothing is kept in memory per key on any node.
type TimersConfig struct {
	// Name is the stream that holds the schedules and the fired timers.
	Name string
	// Prefix starts the subjects: Prefix.s.<key> holds a key's schedule, Prefix.f.<key> its
	// fired timers.
	Prefix string
	// AckWait is how long a node may take to handle a fired timer before another node gets it.
	// Zero means 30 s.
	AckWait time.Duration
}

// Timers is a set of one-shot timers keyed by id, shared by every node on the engine.
type Timers struct {
	e      *Engine
	st     jetstream.Stream
	cons   jetstream.Consumer
	prefix string
}

// Timers opens the timer stream and its shared consumer, creating them on first use.
func (e *Engine) Timers(ctx context.Context, cfg TimersConfig) (*Timers, error) {
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	// Schedules cannot share a stream with DiscardNew (the C2D queues), hence a stream of their
	// own. Work-queue retention drops a fired timer once a node has handled it.
	st, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.Name,
		Subjects:          []string{cfg.Prefix + ".s.*", cfg.Prefix + ".f.*"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          e.cfg.Replicas,
		AllowDirect:       true,
		AllowMsgSchedules: true,
		AllowRollup:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: timers %s: %w", cfg.Name, err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "fired",
		FilterSubject: cfg.Prefix + ".f.*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 10000,
		Replicas:      e.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: timers %s consumer: %w", cfg.Name, err)
	}
	return &Timers{e: e, st: st, cons: cons, prefix: cfg.Prefix}, nil
}

const scheduleAtLayout = "2006-01-02T15:04:05.000000000Z"

// Arm makes sure key's timer fires no later than at: if it is already set to fire at or before
// at, nothing changes; otherwise it is moved to at. Concurrent calls from any nodes end with the
// earliest of their times. A time in the past fires at once. It returns when the timer is set to
// fire, which is at or before at.
func (t *Timers) Arm(ctx context.Context, key string, at time.Time) (time.Time, error) {
	subj := t.prefix + ".s." + EncodeToken(key)
	target := t.prefix + ".f." + EncodeToken(key)
	at = at.UTC()
	for attempt := 0; attempt < 20; attempt++ {
		var expect uint64
		last, err := t.st.GetLastMsgForSubject(ctx, subj)
		switch {
		case err == nil:
			if cur, ok := scheduledAt(last.Header.Get("Nats-Schedule")); ok && !cur.After(at) {
				return cur, nil
			}
			expect = last.Sequence
		case errors.Is(err, jetstream.ErrMsgNotFound):
		default:
			return time.Time{}, mapErr(err)
		}
		_, err = t.e.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Header: nats.Header{
			"Nats-Schedule":                       []string{"@at " + at.Format(scheduleAtLayout)},
			"Nats-Schedule-Target":                []string{target},
			"Nats-Expected-Last-Subject-Sequence": []string{strconv.FormatUint(expect, 10)},
		}})
		if err == nil {
			return at, nil
		}
		if !isWrongLastSequence(err) {
			return time.Time{}, mapErr(err)
		}
		// Another node changed the timer in between: look again.
	}
	return time.Time{}, fmt.Errorf("engine: timer %s: too many concurrent changes", key)
}

func scheduledAt(h string) (time.Time, bool) {
	s, ok := strings.CutPrefix(h, "@at ")
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// Fired is a timer that went off. Call [Fired.Done] once it is handled; until then (and for
// AckWait after a crash) no other node gets it.
type Fired struct {
	// Key is the key passed to [Timers.Arm].
	Key string
	msg jetstream.Msg
}

// Done settles the fired timer.
func (f Fired) Done(ctx context.Context) error {
	if f.msg == nil {
		return nil
	}
	return f.msg.DoubleAck(ctx)
}

// Retry hands the fired timer back so that it is tried again later.
func (f Fired) Retry(delay time.Duration) {
	if f.msg != nil {
		_ = f.msg.NakWithDelay(delay)
	}
}

// Feed delivers fired timers to one reader; several nodes may each run one.
type Feed struct {
	it     jetstream.MessagesContext
	prefix string
}

// Feed starts reading fired timers.
func (t *Timers) Feed() (*Feed, error) {
	it, err := t.cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return nil, mapErr(err)
	}
	return &Feed{it: it, prefix: t.prefix + ".f."}, nil
}

// Next waits for the next fired timer until ctx ends; after [Feed.Stop] it returns [ErrClosed].
func (f *Feed) Next(ctx context.Context) (Fired, error) {
	for {
		m, err := f.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return Fired{}, ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return Fired{}, ErrClosed
			}
			return Fired{}, err
		}
		tok, ok := strings.CutPrefix(m.Subject(), f.prefix)
		key, err := DecodeToken(tok)
		if !ok || err != nil {
			_ = m.Term() // not ours; never again
			continue
		}
		return Fired{Key: key, msg: m}, nil
	}
}

// Stop ends the feed; a Next in progress returns [ErrClosed].
func (f *Feed) Stop() { f.it.Stop() }

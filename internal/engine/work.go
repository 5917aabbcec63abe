package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WorkConfig describes a shared, durable reader of a stream that hands out messages under a
// lock: a message taken and not settled within AckWait is handed out again, at most MaxDeliver
// times. Every node reads through the same consumer, so a message goes to one reader at a time.
type WorkConfig struct {
	// Name is the consumer's durable name.
	Name string
	// Filter restricts it to matching subjects (NATS wildcards). Empty means every subject.
	Filter string
	// AckWait is the lock: how long a taken message stays invisible. Zero means 30 s.
	AckWait time.Duration
	// MaxDeliver is how many times a message is handed out before it is given up. Zero means
	// no limit.
	MaxDeliver int
}

// Work is a shared durable reader; see [WorkConfig].
type Work struct {
	e    *Engine
	cons jetstream.Consumer
}

// Work opens the stream's shared reader, creating it on first use and updating its lock and
// delivery limit otherwise.
func (s *Stream) Work(ctx context.Context, cfg WorkConfig) (*Work, error) {
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	maxDeliver := cfg.MaxDeliver
	if maxDeliver <= 0 {
		maxDeliver = -1
	}
	cons, err := s.st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		FilterSubject: cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    maxDeliver,
		MaxAckPending: 100000,
		Replicas:      s.e.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: work %s: %w", cfg.Name, err)
	}
	return &Work{e: s.e, cons: cons}, nil
}

// Taken is a message handed out by [Work.Take].
type Taken struct {
	Msg
	// Token settles the message from any node (see [Engine.Settle]); it is valid until the
	// lock runs out.
	Token string
	// Delivered counts how many times the message has been handed out, this time included.
	Delivered uint64
}

// Take hands out up to max messages that are available now, without waiting for more.
func (w *Work) Take(ctx context.Context, max int) ([]Taken, error) {
	batch, err := w.cons.FetchNoWait(max)
	if err != nil {
		return nil, mapErr(err)
	}
	var out []Taken
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		out = append(out, Taken{
			Msg:       Msg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Data: m.Data()},
			Token:     m.Reply(),
			Delivered: md.NumDelivered,
		})
	}
	if err := batch.Error(); err != nil && len(out) == 0 {
		return nil, mapErr(err)
	}
	return out, nil
}

// Outcome is how a taken message is settled.
type Outcome int

// Outcomes of [Engine.Settle].
const (
	// Done removes the message from the reader for good.
	Done Outcome = iota
	// Release hands the message out again at once (it counts as one more delivery).
	Release
)

// Settle settles a message taken by any node's [Work.Take], by its token.
func (e *Engine) Settle(ctx context.Context, token string, how Outcome) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	switch how {
	case Done:
		// A request, so that the answer says the server has recorded the acknowledgement.
		_, err := e.nc.RequestWithContext(ctx, token, []byte("+ACK"))
		return mapErr(err)
	case Release:
		if err := e.nc.Publish(token, []byte("-NAK")); err != nil {
			return err
		}
		return e.nc.FlushWithContext(ctx)
	}
	return fmt.Errorf("engine: unknown outcome %d", how)
}

// Purge removes every message on subjects matching filter.
func (s *Stream) Purge(ctx context.Context, filter string) error {
	return mapErr(s.st.Purge(ctx, jetstream.WithPurgeSubject(filter)))
}

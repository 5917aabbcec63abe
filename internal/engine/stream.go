package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig describes an append-only stream.
type StreamConfig struct {
	Name     string
	Subjects []string
	// MaxAge drops messages older than this. Zero keeps them.
	MaxAge time.Duration
	// MaxBytes caps the stream's size; the oldest messages go first. Zero means no cap.
	MaxBytes int64
}

// Stream is an append-only stream of messages.
type Stream struct {
	e  *Engine
	st jetstream.Stream
}

// Stream opens the stream, creating it on first use and updating its limits otherwise.
func (e *Engine) Stream(ctx context.Context, cfg StreamConfig) (*Stream, error) {
	maxBytes := cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	st, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Name,
		Subjects:    cfg.Subjects,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    maxBytes,
		Storage:     jetstream.FileStorage,
		Replicas:    e.cfg.Replicas,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: stream %s: %w", cfg.Name, err)
	}
	return &Stream{e: e, st: st}, nil
}

// Msg is a message stored in a stream.
type Msg struct {
	Subject  string
	Sequence uint64
	Time     time.Time
	Header   map[string][]string
	Data     []byte
}

// Publish appends data under subject and returns once the engine has stored it.
func (e *Engine) Publish(ctx context.Context, subject string, data []byte, header map[string][]string) (uint64, error) {
	ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: nats.Header(header)})
	if err != nil {
		return 0, mapErr(err)
	}
	return ack.Sequence, nil
}

// Get returns the message at sequence seq, or [ErrNotFound].
func (s *Stream) Get(ctx context.Context, seq uint64) (Msg, error) {
	m, err := s.st.GetMsg(ctx, seq)
	if err != nil {
		return Msg{}, mapErr(err)
	}
	return Msg{Subject: m.Subject, Sequence: m.Sequence, Time: m.Time, Header: m.Header, Data: m.Data}, nil
}

// Read calls fn for every message on the subjects matching filter, starting at the first message
// stored at or after since, until fn returns false or the stream's end (as of the call) is reached.
func (s *Stream) Read(ctx context.Context, filter string, since time.Time, fn func(Msg) bool) error {
	info, err := s.st.Info(ctx)
	if err != nil {
		return mapErr(err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := s.st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return mapErr(err)
	}
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if !fn(Msg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Data: m.Data()}) {
				return nil
			}
			if md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// OpenStream opens an existing stream without changing its configuration.
func (e *Engine) OpenStream(ctx context.Context, name string) (*Stream, error) {
	st, err := e.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s", ErrNotFound, name)
		}
		return nil, err
	}
	return &Stream{e: e, st: st}, nil
}

// Ack is the engine's pending acknowledgement of an asynchronous publish.
type Ack struct {
	f jetstream.PubAckFuture
}

// Wait returns the stored message's sequence once the engine has stored it, or the error that
// prevented it, or ctx's error.
func (a Ack) Wait(ctx context.Context) (uint64, error) {
	select {
	case ack := <-a.f.Ok():
		return ack.Sequence, nil
	case err := <-a.f.Err():
		return 0, mapErr(err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// PublishAsync appends data under subject without waiting; the returned [Ack] says when it is
// stored. Many publishes in flight at once share round trips, which is how telemetry reaches high
// rates while still acknowledging each message only once it is durable. When too many publishes
// are in flight it waits up to a short stall time, then fails.
func (e *Engine) PublishAsync(subject string, data []byte, header map[string][]string) (Ack, error) {
	f, err := e.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: data, Header: nats.Header(header)})
	if err != nil {
		return Ack{}, mapErr(err)
	}
	return Ack{f: f}, nil
}

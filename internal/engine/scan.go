package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// OutMsg is one message of a [Engine.PublishBatch].
type OutMsg struct {
	Subject string
	// ID, when set, makes the write idempotent: the engine drops a second message with the same
	// id on the same stream within its duplicate window (2 minutes), so a batch can be sent
	// again after a failure without storing anything twice.
	ID   string
	Data []byte
}

// PublishBatch appends the messages without waiting for each in turn and returns once all are
// stored, or with the first error. Give every message an ID and send the whole batch again
// after an error: the ones already stored are dropped as duplicates.
func (e *Engine) PublishBatch(ctx context.Context, msgs []OutMsg) error {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	var first error
	for _, m := range msgs {
		nm := &nats.Msg{Subject: m.Subject, Data: m.Data}
		if m.ID != "" {
			nm.Header = nats.Header{jetstream.MsgIDHeader: []string{m.ID}}
		}
		f, err := e.js.PublishMsgAsync(nm)
		if err != nil {
			first = mapErr(err)
			break
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if first == nil {
				first = mapErr(err)
			}
		case <-ctx.Done():
			if first == nil {
				first = ctx.Err()
			}
			return first
		}
	}
	return first
}

// ScanConfig bounds a [Stream.Scan].
type ScanConfig struct {
	// Filters restrict the scan to subjects matching any of them. Empty means every subject.
	Filters []string
	// Since starts at the first message stored at or after it, found through the engine's
	// time index. Zero means the first message.
	Since time.Time
	// Until ends the scan at the first message stored after it. Zero means the stream's last
	// message as of the call.
	Until time.Time
	// Batch is how many messages are requested at a time. Zero means 4096.
	Batch int
}

// Scan calls fn for the stored messages in the range, oldest first, until fn returns false or
// the range ends. Unlike [Stream.Follow] it never waits for new messages. It pipelines its
// requests, so reading a large range costs about one round trip per batch.
func (s *Stream) Scan(ctx context.Context, cfg ScanConfig, fn func(Msg) bool) error {
	info, err := s.st.Info(ctx)
	if err != nil {
		return mapErr(err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil
	}
	if !cfg.Since.IsZero() && st.LastTime.Before(cfg.Since) {
		return nil
	}
	if !cfg.Until.IsZero() && st.FirstTime.After(cfg.Until) {
		return nil
	}
	last := st.LastSeq
	batch := cfg.Batch
	if batch <= 0 {
		batch = 4096
	}
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: cfg.Filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !cfg.Since.IsZero() && cfg.Since.After(st.FirstTime) {
		t := cfg.Since
		oc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		oc.OptStartTime = &t
	}
	cons, err := s.st.OrderedConsumer(ctx, oc)
	if err != nil {
		return mapErr(err)
	}
	// The consumer tells how many matching messages wait; with none, there is nothing to read
	// and no reason to wait for a first batch.
	ci, err := cons.Info(ctx)
	if err == nil && ci.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batch), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return mapErr(err)
	}
	defer it.Stop()
	pending := uint64(0)
	if ci != nil {
		pending = ci.NumPending
	}
	var seen uint64
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil // nothing more arrived: the range is exhausted
			}
			return fmt.Errorf("engine: scan: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if !cfg.Until.IsZero() && md.Timestamp.After(cfg.Until) {
			return nil
		}
		if !fn(Msg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Data: m.Data()}) {
			return nil
		}
		seen++
		if md.Sequence.Stream >= last || md.NumPending == 0 || pending > 0 && seen >= pending {
			return nil
		}
	}
}

// StreamFirstTime returns when the oldest message still stored was written (zero if none).
func (s *Stream) StreamFirstTime(ctx context.Context) (time.Time, error) {
	info, err := s.st.Info(ctx)
	if err != nil {
		return time.Time{}, mapErr(err)
	}
	if info.State.Msgs == 0 {
		return time.Time{}, nil
	}
	return info.State.FirstTime, nil
}

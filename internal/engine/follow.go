package engine

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FollowConfig says where a [Follower] starts. With none of StartSeq, StartTime and NewOnly set
// it starts at the first stored message.
type FollowConfig struct {
	// Filters restrict the follower to subjects matching any of them (NATS wildcards). Empty
	// means every subject of the stream. The engine filters; unmatched messages never reach us.
	Filters []string
	// StartSeq, when not zero, starts at this stream sequence (or the first stored one after
	// it, if it has expired).
	StartSeq uint64
	// StartTime, when not zero, starts at the first message stored at or after it.
	StartTime time.Time
	// NewOnly starts after the last stored message: only messages stored from now on.
	NewOnly bool
}

// Follower reads a stream in order from a start position and then waits for new messages, for
// as long as its reader wants. It is an ordered consumer: ephemeral, in memory, recreated by
// the client library if a message goes missing, so it costs the engine little and needs no
// cleanup beyond [Follower.Stop]. Use a few per reader, never one per device.
type Follower struct {
	it jetstream.MessagesContext
}

// Follow starts a follower on the stream.
func (s *Stream) Follow(ctx context.Context, cfg FollowConfig) (*Follower, error) {
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: cfg.Filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case cfg.NewOnly:
		oc.DeliverPolicy = jetstream.DeliverNewPolicy
	case cfg.StartSeq > 0:
		oc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		oc.OptStartSeq = cfg.StartSeq
	case !cfg.StartTime.IsZero():
		t := cfg.StartTime
		oc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		oc.OptStartTime = &t
	}
	cons, err := s.st.OrderedConsumer(ctx, oc)
	if err != nil {
		return nil, mapErr(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, mapErr(err)
	}
	return &Follower{it: it}, nil
}

// Next returns the next message, waiting for one to be stored if need be, until ctx ends.
func (f *Follower) Next(ctx context.Context) (Msg, error) {
	m, err := f.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return Msg{}, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return Msg{}, ErrClosed
		}
		return Msg{}, err
	}
	md, err := m.Metadata()
	if err != nil {
		return Msg{}, err
	}
	return Msg{Subject: m.Subject(), Sequence: md.Sequence.Stream, Time: md.Timestamp, Data: m.Data()}, nil
}

// Stop ends the follower; a Next in progress returns [ErrClosed].
func (f *Follower) Stop() { f.it.Stop() }

// StreamState is a stream's extent.
type StreamState struct {
	// Msgs is the number of messages stored.
	Msgs uint64
	// FirstSeq and LastSeq bound the stored sequences (FirstSeq > LastSeq when empty).
	FirstSeq, LastSeq uint64
	// LastTime is when the last message was stored.
	LastTime time.Time
}

// State returns the stream's current extent.
func (s *Stream) State(ctx context.Context) (StreamState, error) {
	info, err := s.st.Info(ctx)
	if err != nil {
		return StreamState{}, mapErr(err)
	}
	st := info.State
	return StreamState{Msgs: st.Msgs, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, LastTime: st.LastTime}, nil
}

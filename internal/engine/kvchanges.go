package engine

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Change is one write to a bucket, as [Engine.FollowBucket] reports it.
type Change struct {
	Key      string
	Value    []byte
	Revision uint64
	Time     time.Time
	// Deleted is set for a delete or purge.
	Deleted bool
	// Created is set for a write that required the key to have no value: a Create on a key that
	// never existed. (A Create after a delete names the delete's revision in ExpectedRevision.)
	Created bool
	// ExpectedRevision is the revision the writer required the key to have (a compare-and-set),
	// or 0 for an unconditional write.
	ExpectedRevision uint64
}

// FollowBucket calls fn with every change of the bucket's keys matching filter (KV wildcards,
// "" for all) after revision from (0: from the oldest still stored), then waits for new ones,
// until ctx ends or fn returns false. Only the latest value of each key is stored, so changes
// overwritten before they are read are missed.
func (e *Engine) FollowBucket(ctx context.Context, bucket, filter string, from uint64, fn func(Change) bool) error {
	st, err := e.js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return mapErr(err)
	}
	prefix := "$KV." + bucket + "."
	subj := prefix + ">"
	if filter != "" {
		subj = prefix + filter
	}
	oc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		oc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		oc.OptStartSeq = from + 1
	}
	cons, err := st.OrderedConsumer(ctx, oc)
	if err != nil {
		return mapErr(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return mapErr(err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		h := m.Headers()
		c := Change{Key: strings.TrimPrefix(m.Subject(), prefix), Value: m.Data(), Revision: md.Sequence.Stream, Time: md.Timestamp}
		switch h.Get("KV-Operation") {
		case "DEL", "PURGE":
			c.Deleted = true
		}
		if v := h.Get(jetstream.ExpectedLastSubjSeqHeader); v != "" {
			n, _ := strconv.ParseUint(v, 10, 64)
			c.ExpectedRevision = n
			c.Created = n == 0
		}
		if !fn(c) {
			return nil
		}
	}
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// QueueConfig describes a stream of many small queues, one per key (a device), each capped at
// MaxPerKey messages. There is no consumer per key: a reader walks a key's messages by direct
// get and removes each one it has settled with [Queue.Delete] (spec/engine-notes.md §3, §6).
type QueueConfig struct {
	// Name is the stream's name.
	Name string
	// Prefix starts every subject: a key's messages are stored under Prefix.<EncodeToken(key)>.
	Prefix string
	// MaxPerKey is how many messages one key may hold; one more is refused with [ErrLimit] and
	// changes nothing. Zero means no cap.
	MaxPerKey int
	// MaxAge drops any message older than this, whatever its own time to live.
	MaxAge time.Duration
	// MaxMsgSize refuses bigger messages (bytes, headers included). Zero means the server's limit.
	MaxMsgSize int
	// NotifyKind, when set, makes the engine announce every stored message (headers only) on
	// [DeviceSubject](key, "", NotifyKind), so the node that holds the key's connection learns
	// about it wherever the message was sent from; [AnnouncedSeq] reads its sequence.
	// Announcements are core messages: a node that is not listening misses them, so readers
	// must also look at the queue itself when they start.
	NotifyKind string
}

// Queue is a stream of per-key queues.
type Queue struct {
	e      *Engine
	st     jetstream.Stream
	name   string
	prefix string
}

// Queue opens the queue stream, creating it on first use and updating its limits otherwise.
func (e *Engine) Queue(ctx context.Context, cfg QueueConfig) (*Queue, error) {
	sc := jetstream.StreamConfig{
		Name:        cfg.Name,
		Subjects:    []string{cfg.Prefix + ".*"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    e.cfg.Replicas,
		AllowDirect: true,
		AllowMsgTTL: true,
		Discard:     jetstream.DiscardOld,
	}
	if cfg.MaxPerKey > 0 {
		sc.MaxMsgsPerSubject = int64(cfg.MaxPerKey)
		sc.Discard = jetstream.DiscardNew
		sc.DiscardNewPerSubject = true
	}
	if cfg.MaxMsgSize > 0 {
		sc.MaxMsgSize = int32(cfg.MaxMsgSize)
	}
	if cfg.NotifyKind != "" {
		sc.RePublish = &jetstream.RePublish{
			Source:      cfg.Prefix + ".*",
			Destination: "roost.dev.{{wildcard(1)}}." + cfg.NotifyKind, // DeviceSubject(key, "", kind)
			HeadersOnly: true,
		}
	}
	st, err := e.js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("engine: queue %s: %w", cfg.Name, err)
	}
	return &Queue{e: e, st: st, name: cfg.Name, prefix: cfg.Prefix + "."}, nil
}

func (q *Queue) subject(key string) string { return q.prefix + EncodeToken(key) }

// QueuedMsg is one message of a key's queue.
type QueuedMsg struct {
	// Seq is the message's sequence in the stream: unique, never reused, rising in send order.
	Seq uint64
	// Time is when the engine stored it.
	Time time.Time
	Data []byte
}

// Append adds data to key's queue and returns its sequence once stored. ttl, when positive, makes
// the engine drop the message by itself that long after storing it (whole seconds, rounded up).
// A full queue fails with [ErrLimit].
func (q *Queue) Append(ctx context.Context, key string, data []byte, ttl time.Duration) (uint64, error) {
	m := &nats.Msg{Subject: q.subject(key), Data: data}
	if ttl > 0 {
		secs := int64((ttl + time.Second - 1) / time.Second)
		m.Header = nats.Header{"Nats-TTL": []string{strconv.FormatInt(secs, 10) + "s"}}
	}
	ack, err := q.e.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, mapQueueErr(err)
	}
	return ack.Sequence, nil
}

// Next returns key's first message with a sequence at or after from, or [ErrNotFound].
func (q *Queue) Next(ctx context.Context, key string, from uint64) (QueuedMsg, error) {
	if from == 0 {
		from = 1
	}
	m, err := q.st.GetMsg(ctx, from, jetstream.WithGetMsgSubject(q.subject(key)))
	if err != nil {
		return QueuedMsg{}, mapQueueErr(err)
	}
	return QueuedMsg{Seq: m.Sequence, Time: m.Time, Data: m.Data}, nil
}

// List returns up to max of key's messages from sequence from on, oldest first.
func (q *Queue) List(ctx context.Context, key string, from uint64, max int) ([]QueuedMsg, error) {
	var out []QueuedMsg
	for len(out) < max {
		m, err := q.Next(ctx, key, from)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
		from = m.Seq + 1
	}
	return out, nil
}

// Get returns the message at seq if it is still in key's queue, else [ErrNotFound]. It reads
// the one message directly, without scanning the queue.
func (q *Queue) Get(ctx context.Context, key string, seq uint64) (QueuedMsg, error) {
	m, err := q.st.GetMsg(ctx, seq)
	if err != nil {
		return QueuedMsg{}, mapQueueErr(err)
	}
	if m.Subject != q.subject(key) {
		return QueuedMsg{}, fmt.Errorf("%w: sequence %d is not in this queue", ErrNotFound, seq)
	}
	return QueuedMsg{Seq: m.Sequence, Time: m.Time, Data: m.Data}, nil
}

// Delete removes the message at seq. Exactly one caller succeeds for a message; the others
// (and any caller for a message that expired or never existed) get [ErrNotFound].
func (q *Queue) Delete(ctx context.Context, seq uint64) error {
	// The client library folds the server's error code into text, so ask the API directly.
	req, _ := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NoErase bool   `json:"no_erase"`
	}{seq, true})
	m, err := q.e.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.DELETE."+q.name, req)
	if err != nil {
		return mapErr(err)
	}
	var resp struct {
		Success bool                `json:"success"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("engine: delete answer: %w", err)
	}
	if resp.Error != nil {
		return mapQueueErr(resp.Error)
	}
	if !resp.Success {
		return errors.New("engine: delete refused")
	}
	return nil
}

// Len returns how many messages key's queue holds.
func (q *Queue) Len(ctx context.Context, key string) (int, error) {
	subj := q.subject(key)
	info, err := q.st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return 0, mapQueueErr(err)
	}
	return int(info.State.Subjects[subj]), nil
}

// Total returns how many messages all queues hold together.
func (q *Queue) Total(ctx context.Context) (uint64, error) {
	info, err := q.st.Info(ctx)
	if err != nil {
		return 0, mapQueueErr(err)
	}
	return info.State.Msgs, nil
}

// Purge removes every message of key's queue at once.
func (q *Queue) Purge(ctx context.Context, key string) error {
	return mapQueueErr(q.st.Purge(ctx, jetstream.WithPurgeSubject(q.subject(key))))
}

// mapQueueErr maps JetStream's answers for queues onto the engine's sentinels: a full subject is
// [ErrLimit], a sequence that is gone is [ErrNotFound].
func mapQueueErr(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10077: // maximum messages per subject exceeded
			return fmt.Errorf("%w: %v", ErrLimit, err)
		case jetstream.JSErrCodeMessageNotFound, 10043, 10057: // not found, sequence not found, beyond the end
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
	}
	return mapErr(err)
}

// AnnouncedSeq returns the sequence of the message a queue's announcement is about and of the
// message before it in the same key's queue (0 if there was none then), or 0, 0 when in carries
// none (an announcement published by hand, meaning "look at the queue"). A reader that never saw
// prev announced has missed an announcement.
func AnnouncedSeq(in Inbound) (seq, prev uint64) {
	if in.msg == nil || in.msg.Header == nil {
		return 0, 0
	}
	seq, err := strconv.ParseUint(in.msg.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return 0, 0
	}
	prev, _ = strconv.ParseUint(in.msg.Header.Get("Nats-Last-Sequence"), 10, 64)
	return seq, prev
}

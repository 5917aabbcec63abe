package telemetry

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// StartPosition says where a [Reader] starts in each partition.
type StartPosition int

// Start positions.
const (
	// FromStart reads every message still retained.
	FromStart StartPosition = iota
	// FromEnd reads only messages stored after the reader is created.
	FromEnd
	// FromTime reads messages enqueued at or after ReadOptions.Time.
	FromTime
	// FromCheckpoint resumes after the consumer group's checkpoint in each partition, and reads
	// partitions without a checkpoint from the start (so nothing is skipped).
	FromCheckpoint
)

// ReadOptions says what a [Reader] reads.
type ReadOptions struct {
	// ConsumerGroup is the group the reader checkpoints for. Empty means $Default. It must exist.
	ConsumerGroup string
	// Partitions restricts the reader to these partitions. Empty means all.
	Partitions []int
	// From is where the reader starts; Time goes with FromTime.
	From StartPosition
	Time time.Time
	// DeviceID and ModuleID, when set, keep only that device's (or module's) messages. With a
	// DeviceID only the device's own partition is read. A DeviceID alone includes the messages
	// of the device's modules.
	DeviceID, ModuleID string
}

// Reader reads messages from one or all partitions, oldest first within each partition, and
// then follows new ones until it is closed. Messages of different partitions interleave in no
// particular order. It costs the engine one ordered consumer per partition read, whatever
// filter it uses. Next and Checkpoint may be called from one goroutine at a time; Close from any.
type Reader struct {
	p      *Pipeline
	group  string
	parts  []int
	ch     chan readItem
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	done   chan struct{}
}

type readItem struct {
	m   *Message
	err error
}

// NewReader starts a reader. Once it returns, a FromEnd reader sees every message stored later.
func (p *Pipeline) NewReader(ctx context.Context, opts ReadOptions) (*Reader, error) {
	group := opts.ConsumerGroup
	if group == "" {
		group = DefaultConsumerGroup
	}
	g, err := p.ConsumerGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	parts := opts.Partitions
	if len(parts) == 0 {
		parts = make([]int, p.cfg.Partitions)
		for i := range parts {
			parts[i] = i
		}
	} else {
		parts = slices.Clone(parts)
		slices.Sort(parts)
		parts = slices.Compact(parts)
		for _, i := range parts {
			if i < 0 || i >= p.cfg.Partitions {
				return nil, errcode.New(errcode.ArgumentInvalid, "partition %d does not exist (the hub has %d: 0 to %d)", i, p.cfg.Partitions, p.cfg.Partitions-1)
			}
		}
	}
	if opts.DeviceID != "" {
		own := PartitionOf(opts.DeviceID, p.cfg.Partitions)
		if slices.Contains(parts, own) {
			parts = []int{own}
		} else {
			parts = nil
		}
	}
	var filters []string
	switch dev, mod := opts.DeviceID, opts.ModuleID; {
	case dev != "" && mod != "":
		filters = []string{engine.EncodeToken(dev) + "." + engine.EncodeToken(mod)}
	case dev != "":
		filters = []string{engine.EncodeToken(dev) + ".*"}
	case mod != "":
		filters = []string{"*." + engine.EncodeToken(mod)}
	}
	var checkpoints map[int]Checkpoint
	if opts.From == FromCheckpoint {
		if checkpoints, err = p.Checkpoints(ctx, g.Name); err != nil {
			return nil, err
		}
	}
	if opts.From == FromTime && opts.Time.IsZero() {
		return nil, errcode.New(errcode.ArgumentInvalid, "reading from a time needs the time")
	}

	rctx, cancel := context.WithCancel(context.Background())
	r := &Reader{p: p, group: g.Name, parts: parts, ch: make(chan readItem, 256), cancel: cancel, done: make(chan struct{})}
	followers := make([]*engine.Follower, 0, len(parts))
	stopAll := func() {
		for _, f := range followers {
			f.Stop()
		}
		cancel()
	}
	for _, part := range parts {
		fc := engine.FollowConfig{}
		for _, f := range filters {
			fc.Filters = append(fc.Filters, p.prefixes[part]+f)
		}
		switch opts.From {
		case FromEnd:
			fc.NewOnly = true
		case FromTime:
			fc.StartTime = opts.Time
		case FromCheckpoint:
			if cp, ok := checkpoints[part]; ok {
				fc.StartSeq = cp.SequenceNumber + 1
			}
		}
		f, err := p.streams[part].Follow(ctx, fc)
		if err != nil {
			stopAll()
			return nil, storeErr(err, "start reading partition "+strconv.Itoa(part))
		}
		followers = append(followers, f)
	}

	p.mu.Lock()
	if p.closed || p.readersClosed {
		p.mu.Unlock()
		stopAll()
		return nil, errcode.Wrap(errcode.ServiceUnavailable, ErrClosed, "the hub is shutting down")
	}
	p.readers[r] = struct{}{}
	p.mu.Unlock()

	for i, f := range followers {
		r.wg.Add(1)
		go r.follow(rctx, parts[i], f)
	}
	return r, nil
}

// follow feeds one partition's messages to the reader's channel.
func (r *Reader) follow(ctx context.Context, part int, f *engine.Follower) {
	defer r.wg.Done()
	defer f.Stop()
	for {
		msg, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			select {
			case r.ch <- readItem{err: storeErr(err, "read partition "+strconv.Itoa(part))}:
			case <-ctx.Done():
			}
			return
		}
		m := new(Message)
		if err := Decode(msg.Data, m); err != nil {
			r.p.log.Warn("skipping a stored message that does not decode", "partition", part, "sequence", msg.Sequence, "err", err)
			continue
		}
		m.Partition, m.SequenceNumber = part, msg.Sequence
		select {
		case r.ch <- readItem{m: m}:
		case <-ctx.Done():
			return
		}
	}
}

// Partitions returns the partitions the reader reads (none when its device filter belongs to a
// partition it was not given).
func (r *Reader) Partitions() []int { return slices.Clone(r.parts) }

// ConsumerGroup returns the name of the reader's consumer group.
func (r *Reader) ConsumerGroup() string { return r.group }

// Next returns the next message, waiting for one until ctx ends. After Close it returns
// [ErrClosed]; when the engine fails it returns that error, and the reader is done.
func (r *Reader) Next(ctx context.Context) (*Message, error) {
	select {
	case <-r.done:
		return nil, ErrClosed
	default:
	}
	select {
	case it := <-r.ch:
		return it.m, it.err
	case <-r.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Checkpoint records m as processed for the reader's consumer group: a reader started
// FromCheckpoint resumes after it.
func (r *Reader) Checkpoint(ctx context.Context, m *Message) error {
	if m == nil {
		return errors.New("telemetry: checkpoint of no message")
	}
	return r.p.SetCheckpoint(ctx, r.group, m.Partition, m.SequenceNumber)
}

// Close stops the reader and waits for its goroutines. It is safe to call more than once.
func (r *Reader) Close() {
	r.once.Do(func() {
		close(r.done)
		r.cancel()
		r.wg.Wait()
		r.p.mu.Lock()
		delete(r.p.readers, r)
		r.p.mu.Unlock()
	})
}

package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Config shapes a [Pipeline]. The zero value is IoT Hub's default built-in endpoint.
type Config struct {
	// Partitions is the number of partitions, 1 to 32. Zero means 4. It is fixed when the hub's
	// telemetry streams are first created; see [ErrPartitionsChanged].
	Partitions int
	// Retention is how long messages are kept. Zero means 24 h. It is applied on every Open.
	Retention time.Duration
	// MaxInFlight bounds the messages sent to the engine and not yet stored; SendAsync waits
	// (briefly) for room beyond it. Zero means 8192.
	MaxInFlight int
	// Logger receives the pipeline's own log lines. Nil discards them.
	Logger *slog.Logger
}

// MaxPartitions is IoT Hub's largest partition count.
const MaxPartitions = 32

// ErrPartitionsChanged means the configured partition count differs from the one the hub's
// telemetry was created with. Messages are spread over partitions by device; changing the count
// would move devices between partitions and break their order, so Open refuses.
var ErrPartitionsChanged = errors.New("telemetry: the partition count cannot change")

// ErrClosed means the pipeline or reader was closed.
var ErrClosed = errors.New("telemetry: closed")

// Engine names. They never change: they are where existing hubs keep their data.
const (
	bucketName   = "telemetry"
	layoutKey    = "layout"
	streamPrefix = "D2C-"
	subjectRoot  = "d2c."
)

// layout is what the engine records about the telemetry streams when it first creates them.
type layout struct {
	Partitions int       `json:"partitions"`
	Created    time.Time `json:"created"`
}

// Pipeline stores device-to-cloud messages and reads them back. It is safe for concurrent use.
type Pipeline struct {
	eng      *engine.Engine
	cfg      Config
	log      *slog.Logger
	pub      *engine.Publisher
	kv       *engine.Bucket
	streams  []*engine.Stream
	prefixes []string // per partition: "d2c.<n>."

	mu            sync.Mutex
	closed        bool
	readersClosed bool // CloseReaders was called: no new readers
	readers       map[*Reader]struct{}
}

// Open creates the telemetry streams on first use, or checks and opens them, and makes sure the
// $Default consumer group exists.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Pipeline, error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = 4
	}
	if cfg.Partitions < 1 || cfg.Partitions > MaxPartitions {
		return nil, fmt.Errorf("telemetry: %d partitions: must be 1 to %d", cfg.Partitions, MaxPartitions)
	}
	if cfg.Retention == 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("telemetry: negative retention %s", cfg.Retention)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := eng.KV(ctx, engine.BucketConfig{Name: bucketName, Description: "telemetry layout, consumer groups and checkpoints"})
	if err != nil {
		return nil, err
	}
	if err := checkLayout(ctx, kv, cfg.Partitions); err != nil {
		return nil, err
	}
	p := &Pipeline{eng: eng, cfg: cfg, log: log.With("component", "telemetry"), kv: kv, readers: map[*Reader]struct{}{}}
	for i := 0; i < cfg.Partitions; i++ {
		prefix := subjectRoot + strconv.Itoa(i) + "."
		st, err := eng.Stream(ctx, engine.StreamConfig{
			Name:     streamPrefix + strconv.Itoa(i),
			Subjects: []string{prefix + ">"},
			MaxAge:   cfg.Retention,
		})
		if err != nil {
			return nil, err
		}
		p.streams = append(p.streams, st)
		p.prefixes = append(p.prefixes, prefix)
	}
	if err := p.ensureDefaultGroup(ctx); err != nil {
		return nil, err
	}
	if p.pub, err = eng.NewPublisher(engine.PublisherConfig{MaxInFlight: cfg.MaxInFlight}); err != nil {
		return nil, err
	}
	return p, nil
}

// checkLayout records the partition count on first use and refuses another one later.
func checkLayout(ctx context.Context, kv *engine.Bucket, partitions int) error {
	want, _ := json.Marshal(layout{Partitions: partitions, Created: time.Now().UTC()})
	_, err := kv.Create(ctx, layoutKey, want)
	if err == nil {
		return nil
	}
	if !errors.Is(err, engine.ErrExists) {
		return fmt.Errorf("telemetry: record the layout: %w", err)
	}
	ent, err := kv.Get(ctx, layoutKey)
	if err != nil {
		return fmt.Errorf("telemetry: read the layout: %w", err)
	}
	var have layout
	if err := json.Unmarshal(ent.Value, &have); err != nil {
		return fmt.Errorf("telemetry: stored layout: %w", err)
	}
	if have.Partitions != partitions {
		return fmt.Errorf("%w: this hub's telemetry was created on %s with %d partitions, and %d are configured; "+
			"start with --partitions %d, or use a new data dir (or NATS account) for a hub with %d partitions",
			ErrPartitionsChanged, have.Created.Format(time.DateOnly), have.Partitions, partitions, have.Partitions, partitions)
	}
	return nil
}

// Partitions returns the number of partitions.
func (p *Pipeline) Partitions() int { return p.cfg.Partitions }

// Retention returns how long messages are kept.
func (p *Pipeline) Retention() time.Duration { return p.cfg.Retention }

// subject is where m is stored: d2c.<partition>.<device>.<module>, "=" for no module.
func (p *Pipeline) subject(part int, deviceID, moduleID string) string {
	mod := noModule // EncodeToken("") without its allocation
	if moduleID != "" {
		mod = engine.EncodeToken(moduleID)
	}
	return p.prefixes[part] + engine.EncodeToken(deviceID) + "." + mod
}

// noModule is the module token of a device's own messages: [engine.EncodeToken] of "".
const noModule = "="

// Receipt says where a stored message is.
type Receipt struct {
	Partition      int
	SequenceNumber uint64
}

// Pending is a message on its way into the engine.
type Pending struct {
	pub       engine.Pub
	partition int
}

// Done is closed once the message is stored or has failed; Wait then returns at once.
func (pd *Pending) Done() <-chan struct{} { return pd.pub.Done() }

// Wait returns once the message is stored, with where it is. When storing failed the error is
// an [*errcode.Error] (503005 ServerBusy when the engine fell behind, 503001 ServiceUnavailable
// otherwise); the message may or may not have been stored, so the device should send it again.
// When ctx ends first, Wait returns ctx's error and the message's fate is unknown.
func (pd *Pending) Wait(ctx context.Context) (Receipt, error) {
	seq, err := pd.pub.Wait(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return Receipt{}, err
		}
		return Receipt{}, storeError(err)
	}
	return Receipt{Partition: pd.partition, SequenceNumber: seq}, nil
}

func storeError(err error) error {
	switch {
	case errors.Is(err, engine.ErrBusy):
		return errcode.Wrap(errcode.ServerBusy, err, "the hub is storing too many messages at once; retry")
	case errors.Is(err, engine.ErrClosed):
		return errcode.Wrap(errcode.ServiceUnavailable, err, "the hub is shutting down; retry")
	}
	return errcode.Wrap(errcode.ServiceUnavailable, err, "the message could not be stored; retry")
}

// SendAsync checks m, stamps EnqueuedTime (if zero) and Partition, and starts appending it to
// its partition. It returns without waiting for the engine, except while MaxInFlight messages
// are already in flight (then at most 2 s, after which it fails with 503005 ServerBusy). A
// message over [MaxMessageSize] fails with 413001 MessageTooLarge. m must not be modified until
// the returned Pending is done.
func (p *Pipeline) SendAsync(m *Message) (*Pending, error) {
	if m == nil || m.DeviceID == "" {
		return nil, errcode.New(errcode.ArgumentInvalid, "a telemetry message needs a device id")
	}
	if size := Size(m); size > MaxMessageSize {
		return nil, errcode.New(errcode.MessageTooLarge,
			"the message is %d bytes (body, system property values, application property names and values); the limit is %d",
			size, MaxMessageSize)
	}
	if m.EnqueuedTime.IsZero() {
		m.EnqueuedTime = time.Now().UTC()
	}
	part := PartitionOf(m.DeviceID, p.cfg.Partitions)
	m.Partition = part
	pd := &Pending{partition: part}
	if err := p.pub.PublishTo(&pd.pub, p.subject(part, m.DeviceID, m.ModuleID), Encode(m)); err != nil {
		return nil, storeError(err)
	}
	return pd, nil
}

// Send is SendAsync followed by Wait.
func (p *Pipeline) Send(ctx context.Context, m *Message) (Receipt, error) {
	pd, err := p.SendAsync(m)
	if err != nil {
		return Receipt{}, err
	}
	return pd.Wait(ctx)
}

// Readers returns the number of open readers.
func (p *Pipeline) Readers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.readers)
}

// CloseReaders ends every open [Reader] (their Next returns [ErrClosed]) and refuses new ones,
// while messages are still accepted. A node calls it first when it shuts down, so that
// long-lived event streams end before the listeners wait for their requests to finish.
func (p *Pipeline) CloseReaders() {
	p.mu.Lock()
	p.readersClosed = true
	readers := make([]*Reader, 0, len(p.readers))
	for r := range p.readers {
		readers = append(readers, r)
	}
	p.mu.Unlock()
	for _, r := range readers {
		r.Close()
	}
}

// Close ends every open [Reader], waits (up to 10 s) for the messages in flight to be stored,
// and refuses new ones. It does not close the engine.
func (p *Pipeline) Close() {
	p.CloseReaders()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.pub.Close(ctx)
}

package c2d

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
)

// Engine names. The queue stream holds one subject per device; the timer stream one schedule per
// device with messages waiting; the feedback stream one subject per device.
const (
	queueStream    = "C2D"
	queuePrefix    = "c2d.q"
	timerStream    = "C2D-TIMERS"
	timerPrefix    = "c2d.t"
	feedbackStream = "C2D-FEEDBACK"
	feedbackPrefix = "c2d.fb."
	stateBucket    = "c2d-state"
	fbLockBucket   = "c2d-feedback-locks"
	// NotifyKind is the kind of [engine.DeviceSubject] on which the engine announces each
	// message stored for a device, for the node that holds the device's connection.
	NotifyKind = "c2d"
)

// ttlGrace is how long after its expiry a message is kept by the engine as a backstop, in case
// the expiry timer never ran (it normally removes the message at its expiry).
const ttlGrace = 10 * time.Minute

// Config configures a [Service]. The zero value plus a Registry gives IoT Hub's defaults.
type Config struct {
	// Registry says whether a device exists and is enabled, and gives its generationId.
	Registry *registry.Registry
	// Diag receives C2DCommands records for failures. Nil writes none.
	Diag *diag.Writer
	// Metrics counts completions, rejections, abandons, expiries and dead letters. Nil keeps
	// private metrics.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Clock tells the time. Nil means the real clock.
	Clock Clock

	// DefaultTTL is the time to live of a message without its own expiry (IoT Hub's
	// defaultTtlAsIso8601): 1 minute to 2 days. Zero means 1 hour.
	DefaultTTL time.Duration
	// MaxDeliveryCount is how many times a message is delivered before it is dead-lettered
	// (IoT Hub's maxDeliveryCount): 1 to 100. Zero means 10.
	MaxDeliveryCount int
	// FeedbackTTL is how long feedback waits to be read (feedback.ttlAsIso8601): 1 minute to
	// 2 days. Zero means 1 hour.
	FeedbackTTL time.Duration
	// FeedbackLock is how long a batch of feedback stays locked once read
	// (feedback.lockDurationAsIso8601): 5 to 300 s. Zero means 60 s.
	FeedbackLock time.Duration
	// FeedbackMaxDeliveryCount is how many times a feedback batch is handed out before it is
	// dropped (feedback.maxDeliveryCount): 1 to 100. Zero means 10.
	FeedbackMaxDeliveryCount int

	// LockDuration overrides the one-minute lock, for tests only. Zero means [LockDuration].
	LockDuration time.Duration
	// Workers is how many goroutines of this node deliver to connected devices. Zero means 32.
	Workers int
	// Window is how many unsettled messages a connected device may hold. Zero means 16.
	Window int
	// ResyncInterval is how often a connected device's queue is read again even without news,
	// in case an announcement was lost. Zero means 5 minutes.
	ResyncInterval time.Duration
	// NoExpiryTimers disables this node's handling of fired expiry timers (tests drive
	// [Service.Sweep] themselves). Messages still carry the engine's backstop time to live.
	NoExpiryTimers bool
}

// Validate reports settings outside IoT Hub's ranges.
func (c Config) Validate() error {
	var errs []error
	if c.DefaultTTL != 0 && (c.DefaultTTL < MinDefaultTTL || c.DefaultTTL > MaxTTL) {
		errs = append(errs, fmt.Errorf("default TTL %s is not between 1m and 48h", c.DefaultTTL))
	}
	if c.MaxDeliveryCount != 0 && (c.MaxDeliveryCount < 1 || c.MaxDeliveryCount > 100) {
		errs = append(errs, fmt.Errorf("max delivery count %d is not between 1 and 100", c.MaxDeliveryCount))
	}
	if c.FeedbackTTL != 0 && (c.FeedbackTTL < time.Minute || c.FeedbackTTL > MaxTTL) {
		errs = append(errs, fmt.Errorf("feedback TTL %s is not between 1m and 48h", c.FeedbackTTL))
	}
	if c.FeedbackLock != 0 && (c.FeedbackLock < 5*time.Second || c.FeedbackLock > 300*time.Second) {
		errs = append(errs, fmt.Errorf("feedback lock %s is not between 5s and 300s", c.FeedbackLock))
	}
	if c.FeedbackMaxDeliveryCount != 0 && (c.FeedbackMaxDeliveryCount < 1 || c.FeedbackMaxDeliveryCount > 100) {
		errs = append(errs, fmt.Errorf("feedback max delivery count %d is not between 1 and 100", c.FeedbackMaxDeliveryCount))
	}
	return errors.Join(errs...)
}

// Service is the hub's cloud-to-device messaging on one node: the sender's side (send, purge,
// feedback), the device's side for HTTPS polling (receive, complete, reject, abandon by lock
// token) and for connected devices ([Session]), and the expiry of messages.
//
// Every fact lives in the engine: messages in the queue stream, delivery counts and locks in the
// state bucket, expiry timers in the timer stream, feedback in the feedback stream. A node keeps
// only the sessions of the connections it holds; see the package documentation.
type Service struct {
	cfg      Config
	eng      *engine.Engine
	reg      *registry.Registry
	log      *slog.Logger
	clock    Clock
	m        *metrics.Metrics
	queue    *engine.Queue
	timers   *engine.Timers
	state    *engine.Bucket
	feedback *engine.Stream
	fbWork   *engine.Work
	fbLocks  *engine.Bucket

	runq *runQueue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	bgMu    sync.Mutex // guards closing against wg.Add in background
	closing bool

	armMu sync.Mutex
	armed map[string]time.Time // device -> when its expiry timer fires, as last seen by this node
}

// maxArmed bounds the armed cache (about 100 bytes an entry): when it is full, entries whose
// timer has fired go, then others at random. It only saves engine reads for busy devices.
const maxArmed = 10_000

// arm makes sure deviceID's expiry timer fires by at. A timer this node saw set to fire at T
// covers every message expiring at or after T, as long as T is still ahead (with a second's
// margin): when it fires, the sweep reads the queue, which by then holds the message, and arms
// the timer for what is left. So most sends skip the engine here: with one default time to live,
// only the first message of each period does not.
func (s *Service) arm(ctx context.Context, deviceID string, at, now time.Time) error {
	s.armMu.Lock()
	t, ok := s.armed[deviceID]
	s.armMu.Unlock()
	if ok && !at.Before(t) && now.Before(t.Add(-time.Second)) {
		return nil
	}
	fires, err := s.timers.Arm(ctx, deviceID, at)
	if err != nil {
		return err
	}
	s.armMu.Lock()
	if len(s.armed) >= maxArmed {
		for k, t := range s.armed {
			if t.Before(now) {
				delete(s.armed, k)
			}
		}
		for k := range s.armed {
			if len(s.armed) < maxArmed*9/10 {
				break
			}
			delete(s.armed, k)
		}
	}
	s.armed[deviceID] = fires
	s.armMu.Unlock()
	return nil
}

// Open opens (or creates) the engine streams and buckets and starts this node's delivery
// workers and expiry handling. Close stops them.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Registry == nil {
		return nil, errors.New("c2d: no registry")
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = time.Hour
	}
	if cfg.MaxDeliveryCount == 0 {
		cfg.MaxDeliveryCount = 10
	}
	if cfg.FeedbackTTL == 0 {
		cfg.FeedbackTTL = time.Hour
	}
	if cfg.FeedbackLock == 0 {
		cfg.FeedbackLock = 60 * time.Second
	}
	if cfg.FeedbackMaxDeliveryCount == 0 {
		cfg.FeedbackMaxDeliveryCount = 10
	}
	if cfg.LockDuration <= 0 {
		cfg.LockDuration = LockDuration
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 32
	}
	if cfg.Window <= 0 {
		cfg.Window = 16
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, eng: eng, reg: cfg.Registry, log: log.With("component", "c2d"), clock: cfg.Clock, m: cfg.Metrics,
		armed: map[string]time.Time{}}
	var err error
	if s.queue, err = eng.Queue(ctx, engine.QueueConfig{
		Name: queueStream, Prefix: queuePrefix, MaxPerKey: MaxQueueDepth,
		MaxAge: MaxTTL + ttlGrace, MaxMsgSize: 4 * MaxMessageSize, NotifyKind: NotifyKind,
	}); err != nil {
		return nil, err
	}
	if s.timers, err = eng.Timers(ctx, engine.TimersConfig{Name: timerStream, Prefix: timerPrefix}); err != nil {
		return nil, err
	}
	if s.state, err = eng.KV(ctx, engine.BucketConfig{
		Name: stateBucket, Description: "delivery counts and locks of cloud-to-device messages", TTL: MaxTTL + 2*ttlGrace,
	}); err != nil {
		return nil, err
	}
	if s.feedback, err = eng.Stream(ctx, engine.StreamConfig{
		Name: feedbackStream, Subjects: []string{feedbackPrefix + "*"}, MaxAge: cfg.FeedbackTTL,
	}); err != nil {
		return nil, err
	}
	if s.fbWork, err = s.feedback.Work(ctx, engine.WorkConfig{
		Name: "service", AckWait: cfg.FeedbackLock, MaxDeliver: cfg.FeedbackMaxDeliveryCount,
	}); err != nil {
		return nil, err
	}
	if s.fbLocks, err = eng.KV(ctx, engine.BucketConfig{
		Name: fbLockBucket, Description: "lock tokens of feedback batches", TTL: 10 * time.Minute,
	}); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.runq = newRunQueue()
	for i := 0; i < cfg.Workers; i++ {
		s.wg.Add(1)
		go s.worker()
	}
	if !cfg.NoExpiryTimers {
		feed, err := s.timers.Feed()
		if err != nil {
			s.Close()
			return nil, err
		}
		s.startExpiry(feed)
	}
	s.wg.Add(1)
	go s.watchDepth()
	return s, nil
}

// Close stops this node's workers and expiry handling and waits for them. Sessions still open
// stop delivering; their locks run out in the engine and another node takes over.
func (s *Service) Close() {
	s.bgMu.Lock()
	s.closing = true
	s.bgMu.Unlock()
	s.cancel()
	s.runq.close()
	s.wg.Wait()
}

// background runs f in a goroutine that Close waits for, with its own time limit (it may
// outlive the request or connection that started it). After Close it does nothing.
func (s *Service) background(f func(ctx context.Context)) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closing {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f(ctx)
	}()
}

// Send queues m for deviceID and returns it as stored (id, enqueued time, expiry, sequence
// number). The device must be registered and enabled (404001 otherwise); a full queue is 403004;
// a message over 64 KB is 413001; bad properties are 400004; an expiry in the past or more
// than two days ahead is 403009. A refused message changes nothing.
func (s *Service) Send(ctx context.Context, deviceID string, m Message) (Message, error) {
	if err := registry.ValidateID("DeviceId", deviceID); err != nil {
		return Message{}, err
	}
	now := s.clock.Now()
	m.ExpirySet = !m.Expiry.IsZero()
	if m.Ack == "" {
		m.Ack = AckNone
	}
	ack, err := ParseAck(string(m.Ack))
	if err != nil {
		return Message{}, err
	}
	m.Ack = ack
	if err := validate(&m, now); err != nil {
		return Message{}, err
	}
	dev, err := s.reg.LookupDevice(ctx, deviceID)
	if err != nil {
		return Message{}, err
	}
	if dev.Status == registry.StatusDisabled {
		return Message{}, errcode.New(errcode.DeviceNotFound, "device %s is disabled; enable it to send it messages", deviceID)
	}
	if m.MessageID == "" {
		m.MessageID = newGUID()
	}
	m.DeviceID, m.To, m.GenerationID = deviceID, toAddress(deviceID), dev.GenerationID
	m.EnqueuedTime = now.UTC()
	if !m.ExpirySet {
		m.Expiry = now.Add(s.cfg.DefaultTTL)
	}
	m.Expiry = m.Expiry.UTC()
	seq, err := s.queue.Append(ctx, deviceID, encode(&m), m.Expiry.Sub(now)+ttlGrace)
	switch {
	case errors.Is(err, engine.ErrLimit):
		return Message{}, errcode.Wrap(errcode.DeviceMaximumQueueDepthExceeded, err,
			"device %s already has %d cloud-to-device messages waiting", deviceID, MaxQueueDepth)
	case err != nil:
		return Message{}, errcode.Wrap(errcode.ServerError, err, "could not store the message")
	}
	m.SequenceNumber = seq
	s.m.C2D.Sent.Inc()
	if err := s.arm(ctx, deviceID, m.Expiry, now); err != nil {
		// The message is stored; without its timer the engine's backstop still removes it,
		// only later and without an Expired feedback.
		s.log.Warn("expiry timer not set", "device", deviceID, "seq", seq, "err", err)
	}
	return m, nil
}

// Depth returns how many messages wait in deviceID's queue (its cloudToDeviceMessageCount).
func (s *Service) Depth(ctx context.Context, deviceID string) (int, error) {
	return s.queue.Len(ctx, deviceID)
}

// Purge removes every message of deviceID's queue and returns how many there were. Senders that
// asked for negative feedback get Purged for each. An unknown device is 404001.
func (s *Service) Purge(ctx context.Context, deviceID string) (int, error) {
	if err := registry.ValidateID("DeviceId", deviceID); err != nil {
		return 0, err
	}
	if _, err := s.reg.LookupDevice(ctx, deviceID); err != nil {
		return 0, err
	}
	n := 0
	var from uint64
	for {
		qm, err := s.queue.Next(ctx, deviceID, from)
		if errors.Is(err, engine.ErrNotFound) {
			return n, nil
		}
		if err != nil {
			return n, errcode.Wrap(errcode.ServerError, err, "could not read the queue")
		}
		from = qm.Seq + 1
		if err := s.queue.Delete(ctx, qm.Seq); err != nil {
			continue // settled or expired meanwhile
		}
		n++
		_ = s.state.Delete(ctx, stateKey(deviceID, qm.Seq), 0)
		if m, err := decode(deviceID, qm.Seq, qm.Data); err == nil && m.Ack.wantsFailure() {
			s.emitFeedback(ctx, m, StatusPurged)
		}
	}
}

// DropDevice forgets a deleted device's queue and its pending feedback, as IoT Hub does.
func (s *Service) DropDevice(ctx context.Context, deviceID string) {
	if err := s.queue.Purge(ctx, deviceID); err != nil {
		s.log.Warn("could not drop the queue of a deleted device", "device", deviceID, "err", err)
	}
	if err := s.feedback.Purge(ctx, feedbackPrefix+engine.EncodeToken(deviceID)); err != nil {
		s.log.Warn("could not drop the feedback of a deleted device", "device", deviceID, "err", err)
	}
}

// watchDepth keeps the queue-depth gauge current.
func (s *Service) watchDepth() {
	defer s.wg.Done()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		if n, err := s.queue.Total(ctx); err == nil {
			s.m.C2D.QueueDepth.Set(float64(n))
		}
		cancel()
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(15 * time.Second):
		}
	}
}

// record writes a C2DCommands record about one message.
func (s *Service) record(op string, m *Message, deliveryCount int, protocol string, err error, resultType string, statusCode any) {
	if m == nil {
		m = &Message{}
	}
	code := resultType
	if err != nil {
		code = errcode.As(err).Code.String()
	}
	s.m.OperationErrors.WithLabelValues(diag.C2DCommands, code).Inc()
	if s.cfg.Diag == nil {
		return
	}
	now := s.clock.Now().UTC()
	props := map[string]any{
		"deviceId":                m.DeviceID,
		"messageId":               m.MessageID,
		"messageSizeInBytes":      strconv.Itoa(Size(m)),
		"protocol":                protocol,
		"deliveryAcknowledgement": m.Ack.LogName(),
		"deliveryCount":           strconv.Itoa(deliveryCount),
		"EventProcessedUtcTime":   now.Format(time.RFC3339Nano),
		"statusCode":              statusCode,
	}
	if !m.EnqueuedTime.IsZero() {
		props["EventEnqueuedUtcTime"] = m.EnqueuedTime.UTC().Format(time.RFC3339Nano)
		props["timeInSystem"] = itoa(now.Sub(m.EnqueuedTime).Milliseconds())
		props["expiryTime"] = m.Expiry.UTC().Format(time.RFC3339Nano)
		props["ttl"] = m.Expiry.Sub(m.EnqueuedTime).Milliseconds()
	}
	rec := diag.Record{Category: diag.C2DCommands, OperationName: op, Err: err, DurationMs: -1, Properties: props}
	if err == nil {
		rec.Level, rec.ResultType, rec.ResultDescription = diag.LevelError, resultType, resultType
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.cfg.Diag.Write(ctx, rec)
}

package methods

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/registry"
)

// Config wires the service to the hub.
type Config struct {
	Engine   *engine.Engine
	Registry *registry.Registry
	// Metrics receives the c2d.methods counters. Nil makes a private set.
	Metrics *metrics.Metrics
	// Clock schedules timeouts. Nil means the real clock.
	Clock Clock
	// RetryInterval is how often a call waiting for its device (connectTimeoutInSeconds) tries
	// again without having heard that the device subscribed. Zero means 1 s.
	RetryInterval time.Duration
	Logger        *slog.Logger
}

// Service invokes direct methods. It is safe for concurrent use.
type Service struct {
	cfg       Config
	log       *slog.Logger
	closing   chan struct{}
	closeOnce sync.Once
}

// New makes the service.
func New(cfg Config) (*Service, error) {
	if cfg.Engine == nil || cfg.Registry == nil {
		return nil, errors.New("methods: Engine and Registry are required")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: log.With("component", "methods"), closing: make(chan struct{})}, nil
}

// Close ends the waits of calls that wait for their device to connect (with 503001, so callers
// retry, likely on another node); calls already delivered still get their device's answer.
// Call it when the node shuts down.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// NotOnline is the cause carried by a 404103 DeviceNotOnline error: how long the call waited for
// the device. IoT Hub reports it in its error body as "info": {"timeout": "00:00:05"}.
type NotOnline struct {
	ConnectTimeout time.Duration
}

func (n *NotOnline) Error() string {
	return "the device was not listening for direct methods within " + n.ConnectTimeout.String()
}

// ErrorInfo returns the "info" object of IoT Hub's error body.
func (n *NotOnline) ErrorInfo() map[string]any {
	return map[string]any{"timeout": timeSpan(n.ConnectTimeout)}
}

// ResponseTimedOut is the cause carried by a 504101 GatewayTimeout error.
type ResponseTimedOut struct {
	ResponseTimeout time.Duration
	// Disconnected means the device's connection ended while the call waited for its answer;
	// IoT Hub answers that with 504101 too.
	Disconnected bool
}

func (r *ResponseTimedOut) Error() string {
	if r.Disconnected {
		return "the device's connection ended before it answered"
	}
	return "the device did not answer within " + r.ResponseTimeout.String()
}

// ErrorInfo returns the "info" object of IoT Hub's error body.
func (r *ResponseTimedOut) ErrorInfo() map[string]any {
	return map[string]any{"timeout": timeSpan(r.ResponseTimeout)}
}

// timeSpan formats a duration as .NET does a TimeSpan: "00:00:30".
func timeSpan(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s%3600/60, s%60)
}

// Invoke calls a direct method and returns the device's answer. Errors are [*errcode.Error]:
// 400004/400005/400006 for a call that breaks IoT Hub's rules, 404001 DeviceNotFound (or 404010
// ModuleNotFound) for an unknown or disabled identity, 404103 DeviceNotOnline when no connection
// of the identity listens for direct methods within the connect timeout, 504101 GatewayTimeout
// when the device does not answer within the response timeout (or disconnects first), and 502000
// when its answer is not JSON or is over [MaxPayload].
func (s *Service) Invoke(ctx context.Context, c Call) (Result, error) {
	res, err := s.invoke(ctx, c)
	m := s.cfg.Metrics
	if err != nil {
		m.MethodFailure.Inc()
		return Result{}, err
	}
	m.MethodSuccess.Inc()
	m.MethodResponseSize.Observe(float64(len(res.Payload)))
	return res, nil
}

// MaxBody is the largest service API body [Service.InvokeJSON] reads, in bytes. Bodies up to it
// get the exact payload-size error (400004) when their payload is over [MaxPayload].
const MaxBody = 1 << 20

// InvokeJSON reads a call from the service API's JSON body (see [DecodeCall]) and invokes it on
// the identity. It also returns the request's payload size, for the caller's records, whether
// or not the call succeeds. A body that cannot be read or decoded counts as a failed call.
func (s *Service) InvokeJSON(ctx context.Context, deviceID, moduleID string, body io.Reader) (Result, int, error) {
	b, err := io.ReadAll(io.LimitReader(body, MaxBody+1))
	switch {
	case err != nil:
		err = errcode.Wrap(errcode.GenericBadRequest, err, "could not read the request body")
	case len(b) > MaxBody:
		err = errcode.New(errcode.GenericRequestEntityTooLarge, "the request body is larger than %d bytes", MaxBody)
	}
	var c Call
	if err == nil {
		c, err = DecodeCall(b)
	}
	if err != nil {
		s.cfg.Metrics.MethodFailure.Inc()
		return Result{}, 0, err
	}
	c.DeviceID, c.ModuleID = deviceID, moduleID
	res, err := s.Invoke(ctx, c)
	return res, len(c.Payload), err
}

func (s *Service) invoke(ctx context.Context, c Call) (Result, error) {
	if err := c.Check(); err != nil {
		return Result{}, err
	}
	s.cfg.Metrics.MethodRequestSize.Observe(float64(len(c.Payload)))
	req := appendRequest(make([]byte, 0, 7+len(c.MethodName)+len(c.Payload)), c.MethodName, c.Payload, c.responseTimeout())
	subj := Subject(c.DeviceID, c.ModuleID)

	// The common case costs one round trip: the identity is checked only when nobody answers
	// (a connected identity exists and is enabled, since disabling or deleting it closes its
	// connections).
	ans, err := s.deliver(ctx, subj, req, c.responseTimeout())
	if errors.Is(err, errOffline) {
		if err := s.checkIdentity(ctx, c.DeviceID, c.ModuleID); err != nil {
			return Result{}, err
		}
		if c.ConnectTimeout > 0 {
			ans, err = s.waitAndDeliver(ctx, c, subj, req)
		}
	}
	if errors.Is(err, errOffline) {
		return Result{}, errcode.Wrap(errcode.DeviceNotOnline, &NotOnline{ConnectTimeout: c.ConnectTimeout},
			"Timed out waiting for device to connect.")
	}
	if err != nil {
		return Result{}, err
	}
	return ans.result()
}

// errOffline means no connection of the identity took the call.
var errOffline = errors.New("no connection listens for direct methods")

// answer is the device's reply as it came from the node holding its connection.
type answer struct {
	status int32
	body   []byte
}

// deliver sends the call once and waits up to timeout for the answer.
func (s *Service) deliver(ctx context.Context, subj string, req []byte, timeout time.Duration) (answer, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timedOut := make(chan struct{})
	stop := s.cfg.Clock.AfterFunc(timeout, func() {
		close(timedOut)
		cancel()
	})
	reply, err := s.cfg.Engine.Request(rctx, subj, req)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, engine.ErrNoResponders):
		return answer{}, errOffline
	case isClosed(timedOut):
		return answer{}, errcode.Wrap(errcode.GatewayTimeout, &ResponseTimedOut{ResponseTimeout: timeout},
			"Timed out waiting for the response from device.")
	case ctx.Err() != nil:
		return answer{}, errcode.Wrap(errcode.ClientClosedRequest, ctx.Err(), "the caller went away before the device answered")
	default:
		return answer{}, errcode.Wrap(errcode.ServiceUnavailable, err, "the engine could not carry the call; try again")
	}
	status, body, err := decodeReply(reply)
	var e *errcode.Error
	switch {
	case err == nil:
		return answer{status: status, body: body}, nil
	case errors.As(err, &e) && e.Code == errcode.DeviceNotOnline:
		return answer{}, errOffline
	case e != nil && e.Code == errcode.GatewayTimeout:
		// The node holding the connection answers so only when the connection ended mid-call.
		return answer{}, errcode.Wrap(e.Code, &ResponseTimedOut{ResponseTimeout: timeout, Disconnected: true},
			"Timed out waiting for the response from device.")
	case e != nil:
		return answer{}, e
	}
	return answer{}, errcode.Wrap(errcode.ServerError, err, "the node holding the device's connection answered in an unknown format")
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitAndDeliver retries the call until a connection of the identity takes it or the connect
// timeout ends. It listens for the identity's announcements so that a device that subscribes gets
// the call at once; a retry every RetryInterval covers an announcement that got lost.
func (s *Service) waitAndDeliver(ctx context.Context, c Call, subj string, req []byte) (answer, error) {
	ready := make(chan struct{}, 1)
	sub, err := s.cfg.Engine.Subscribe(ReadySubject(c.DeviceID, c.ModuleID), func(engine.Inbound) {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return answer{}, errcode.Wrap(errcode.ServiceUnavailable, err, "could not wait for the device")
	}
	defer sub.Unsubscribe()
	expired := make(chan struct{})
	stop := s.cfg.Clock.AfterFunc(c.ConnectTimeout, func() { close(expired) })
	defer stop()
	for {
		// Try once right after subscribing: the device may have subscribed in between.
		ans, err := s.deliver(ctx, subj, req, c.responseTimeout())
		if !errors.Is(err, errOffline) {
			return ans, err
		}
		tick := make(chan struct{})
		stopTick := s.cfg.Clock.AfterFunc(s.cfg.RetryInterval, func() { close(tick) })
		select {
		case <-ready:
		case <-tick:
		case <-expired:
			stopTick()
			return answer{}, errOffline
		case <-ctx.Done():
			stopTick()
			return answer{}, errcode.Wrap(errcode.ClientClosedRequest, ctx.Err(), "the caller went away while waiting for the device")
		case <-s.closing:
			stopTick()
			return answer{}, errcode.New(errcode.ServiceUnavailable, "the hub node is shutting down; try again")
		}
		stopTick()
	}
}

// checkIdentity tells an unknown or disabled identity (404001, 404010) from an offline one.
func (s *Service) checkIdentity(ctx context.Context, deviceID, moduleID string) error {
	if moduleID != "" {
		if _, err := s.cfg.Registry.GetModule(ctx, deviceID, moduleID); err != nil {
			return err
		}
	}
	d, err := s.cfg.Registry.GetDevice(ctx, deviceID)
	if err != nil {
		return err
	}
	if d.Status == registry.StatusDisabled {
		return errcode.New(errcode.DeviceNotFound, "Device %s is disabled", deviceID)
	}
	return nil
}

// result checks the device's answer: its body must be JSON of at most [MaxPayload] bytes; an
// empty body means null.
func (a answer) result() (Result, error) {
	if len(bytes.TrimSpace(a.body)) == 0 {
		return Result{Status: int(a.status), Payload: null}, nil
	}
	if len(a.body) > MaxPayload {
		return Result{}, errcode.New(errcode.GenericBadGateway,
			"the device answered with %d bytes; a direct method response must be at most %d bytes", len(a.body), MaxPayload)
	}
	if !json.Valid(a.body) {
		return Result{}, errcode.New(errcode.GenericBadGateway,
			"the device's answer is not valid JSON (InvalidResponseWhileProxying); a direct method response must be JSON")
	}
	return Result{Status: int(a.status), Payload: a.body}, nil
}

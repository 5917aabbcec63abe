package mqtt

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
)

// Twins is the twin store as the device edge uses it; *twin.Store implements it. gen is always
// the generation id of the connected identity, so a connection left over from a deleted device
// never touches the twin of a new device with the same id.
type Twins interface {
	// DeviceDocument returns the twin as the device reads it:
	// {"desired":{...,"$version":n},"reported":{...,"$version":m}}.
	DeviceDocument(ctx context.Context, deviceID, moduleID, gen string) ([]byte, error)
	// UpdateReported merges a reported-properties patch and returns the new reported $version.
	UpdateReported(ctx context.Context, deviceID, moduleID, gen string, patch []byte) (int64, error)
	// DesiredVersion returns the twin's current desired $version.
	DesiredVersion(ctx context.Context, deviceID, moduleID, gen string) (int64, error)
	// DesiredNotification turns a twin change published on the identity's "twin" subject into
	// a desired-property notification for a device that was last sent version after. It must
	// not block.
	DesiredNotification(change []byte, gen string, after int64) (version int64, body []byte, ok bool)
}

// Topics of the device side of twins (spec/device-protocol.md section 4).
const (
	twinResponseFilter = "$iothub/twin/res/#"
	twinDesiredFilter  = "$iothub/twin/PATCH/properties/desired/#"
	twinDesiredTopic   = "$iothub/twin/PATCH/properties/desired/?$version="
	twinKind           = "twin" // the kind of the identity's subject twins are published on
)

// twinState is a connection's twin state. The read loop turns notifications on and off; the
// dispatcher goroutine sends them.
type twinState struct {
	on atomic.Bool // the device is subscribed to desired-property notifications
	// sent is the last desired $version the device was sent or read when it subscribed; a
	// notification is sent only for a newer one.
	sent atomic.Int64
}

// raise moves sent up to v (never down).
func (t *twinState) raise(v int64) {
	for {
		cur := t.sent.Load()
		if v <= cur || t.sent.CompareAndSwap(cur, v) {
			return
		}
	}
}

// onTwin answers a twin GET ($iothub/twin/GET/?$rid={rid}) with the twin's desired and reported
// properties, or applies a reported-properties PATCH
// ($iothub/twin/PATCH/properties/reported/?$rid={rid}) and answers 204 with the new $version.
// Answers go to $iothub/twin/res/{status}/?$rid={rid}[&$version={n}], rid first, at QoS 0; a
// failure carries {"errorCode":<code>,"message":...} (the Node SDK looks only at the body). A bad
// request fails the request, not the connection. It runs on the read loop, so a device's twin
// requests are handled in the order it sent them.
func (c *conn) onTwin(t parsedTopic, p publish) error {
	start := time.Now()
	op, status := "read", 200
	if t.kind == topicTwinPatchReported {
		op, status = "update", 204
	}
	rid, err := twinRID(t.bag)
	var (
		body    []byte
		version int64
	)
	if err == nil {
		err = c.throttleTwin(op, len(p.payload))
	}
	if err == nil {
		err = c.opFault(diag.D2CTwinOperations, op)
	}
	if err == nil {
		tw := c.s.cfg.Twins
		if tw == nil {
			err = errcode.New(errcode.ServiceUnavailable, "device twins are not available on this hub")
		} else {
			ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
			if op == "read" {
				body, err = tw.DeviceDocument(ctx, c.id.DeviceID, c.id.ModuleID, c.id.GenerationID)
			} else {
				version, err = tw.UpdateReported(ctx, c.id.DeviceID, c.id.ModuleID, c.id.GenerationID, p.payload)
			}
			cancel()
		}
	}
	trackingID := randomID() + randomID()
	topic := "$iothub/twin/res/"
	if err != nil {
		e := errcode.As(err)
		status = e.Code.HTTPStatus()
		body = twinErrorBody(e, trackingID, c.s.cfg.Now())
	}
	topic += strconv.Itoa(status) + "/?$rid=" + rid
	if err == nil && op == "update" {
		topic += "&$version=" + strconv.FormatInt(version, 10)
	}
	size := len(body)
	if op == "update" {
		size = len(p.payload)
	}
	c.twinOutcome(op, size, err, trackingID, time.Since(start))
	if err == nil {
		c.touch()
	}
	if _, ok := c.subs[twinResponseFilter]; ok {
		// The answer goes only to a device subscribed to it, as MQTT delivers by subscription.
		if qerr := c.enqueue(outItem{data: appendPublish(make([]byte, 0, 16+len(topic)+len(body)), topic, 0, 0, body)}); qerr != nil {
			return qerr
		}
	}
	if p.qos == 1 {
		return c.enqueue(outItem{data: appendAck(nil, typePuback, p.packetID)})
	}
	return nil
}

// twinRID returns the request id of a twin topic's query ("?$rid=..."), as the device wrote it:
// it is echoed back unchanged, so that every SDK finds its own request again.
func twinRID(query string) (string, error) {
	_, q, _ := strings.Cut(query, "?")
	for _, pair := range strings.Split(q, "&") {
		if v, ok := strings.CutPrefix(pair, "$rid="); ok && v != "" {
			if strings.ContainsAny(v, "+#/\x00") {
				// [MQTT-3.3.2-2]: the answer's topic could not hold it.
				return "", errcode.New(errcode.ArgumentInvalid, "the request id %q holds a character a topic name cannot carry", cleanRID(v))
			}
			return v, nil
		}
	}
	return "", errcode.New(errcode.ArgumentInvalid, "the twin request topic has no $rid")
}

// cleanRID bounds an untrusted request id for an error message.
func cleanRID(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == ';' {
			return '?'
		}
		return r
	}, s)
}

// twinErrorBody is the JSON body of a failed twin request.
func twinErrorBody(e *errcode.Error, trackingID string, now time.Time) []byte {
	msg := e.Msg
	if msg == "" {
		msg = e.Code.Name()
	}
	b, _ := json.Marshal(struct {
		ErrorCode    int    `json:"errorCode"`
		TrackingID   string `json:"trackingId"`
		Message      string `json:"message"`
		TimestampUTC string `json:"timestampUtc"`
	}{int(e.Code), trackingID, msg, now.UTC().Format("2006-01-02T15:04:05.0000000Z")})
	return b
}

// twinOutcome counts a device twin operation in the d2c.twin metrics and writes its
// D2CTwinOperations record (level Error with the code when it failed).
func (c *conn) twinOutcome(op string, size int, err error, trackingID string, d time.Duration) {
	m := c.s.cfg.Metrics
	switch {
	case op == "read" && err == nil:
		m.Twins.D2CReadSuccess.Inc()
		m.Twins.D2CReadSize.Observe(float64(size))
	case op == "read":
		m.Twins.D2CReadFailure.Inc()
	case op == "update" && err == nil:
		m.Twins.D2CUpdateSuccess.Inc()
		m.Twins.D2CUpdateSize.Observe(float64(size))
	case op == "update":
		m.Twins.D2CUpdateFailure.Inc()
	}
	c.recordTwin(op, err, trackingID, d)
}

// recordTwin writes a D2CTwinOperations record.
func (c *conn) recordTwin(op string, err error, trackingID string, d time.Duration) {
	props := map[string]any{
		"deviceId":           c.id.DeviceID,
		"protocol":           c.protocol,
		"authenticationType": c.id.AuthTypeJSON(),
		"sdkVersion":         c.sdkVersion,
	}
	if c.id.ModuleID != "" {
		props["moduleId"] = c.id.ModuleID
	}
	if err != nil {
		e := errcode.As(err)
		props["statusCode"] = strconv.Itoa(e.Code.HTTPStatus())
		c.s.cfg.Metrics.OperationErrors.WithLabelValues(diag.D2CTwinOperations, e.Code.String()).Inc()
		c.s.log.Debug("twin operation failed", "device", c.id.DeviceID, "module", c.id.ModuleID, "op", op, "err", e)
	}
	if c.s.cfg.Diag == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.s.cfg.Diag.Write(ctx, diag.Record{
		Category: diag.D2CTwinOperations, OperationName: op, Err: err,
		CorrelationID: trackingID, DurationMs: d.Milliseconds(), Properties: props,
	})
}

// startDesired begins pushing desired-property patches to the device: the connection listens on
// its identity's twin subject, where the engine publishes every stored twin, and learns the
// current desired $version, so that only later changes are pushed.
func (c *conn) startDesired() error {
	tw := c.s.cfg.Twins
	if tw == nil || c.tw.on.Load() {
		return nil
	}
	start := time.Now()
	// Listen first, then read: a change stored in between is then either in what we read or
	// on its way to us.
	err := c.listen(twinKind)
	if err == nil {
		c.tw.on.Store(true)
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		v, verr := tw.DesiredVersion(ctx, c.id.DeviceID, c.id.ModuleID, c.id.GenerationID)
		cancel()
		if verr == nil {
			c.tw.raise(v)
		}
	} else {
		err = errcode.Wrap(errcode.ServerError, err, "could not subscribe the connection to desired property changes")
	}
	c.recordTwin("subscribe", err, "", time.Since(start))
	return err
}

// stopDesired ends desired-property notifications after the device unsubscribes.
func (c *conn) stopDesired() {
	c.tw.on.Store(false)
	subj := engine.DeviceSubject(c.id.DeviceID, c.id.ModuleID, twinKind)
	if i := slices.Index(c.listening, subj); i >= 0 {
		c.s.unregister(c, subj)
		c.listening = slices.Delete(c.listening, i, i+1)
	}
}

// onDesired delivers a desired-property change to the device as
// $iothub/twin/PATCH/properties/desired/?$version={n} with the patch and "$version" in the body.
// It runs on the dispatcher goroutine and never waits: when the connection's queue is full the
// notification is dropped, and the next one carries the whole desired section instead of a patch
// so the device catches up.
func (c *conn) onDesired(in engine.Inbound) {
	tw := c.s.cfg.Twins
	if tw == nil || !c.tw.on.Load() {
		return
	}
	after := c.tw.sent.Load()
	v, body, ok := tw.DesiredNotification(in.Data, c.id.GenerationID, after)
	if !ok || !c.tw.sent.CompareAndSwap(after, v) {
		return // not news, or the device read a newer version meanwhile
	}
	topic := twinDesiredTopic + strconv.FormatInt(v, 10)
	pkt := appendPublish(make([]byte, 0, 8+len(topic)+len(body)), topic, 0, 0, body)
	if !c.tryEnqueue(outItem{data: pkt}) {
		// Mark the gap (-1), so the next change is sent as the whole desired section.
		c.tw.sent.CompareAndSwap(v, -1)
		c.s.log.Debug("desired property notification dropped: the connection's queue is full",
			"device", c.id.DeviceID, "module", c.id.ModuleID, "version", v)
	}
}

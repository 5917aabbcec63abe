package mqtt

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
)

// maxPendingMethods bounds the calls one connection holds while its device works on them. A call
// beyond it is refused with 403800 DeviceMaximumInflightMethodExceeded. Calls whose caller has
// stopped waiting are dropped first, so a device that never answers cannot block later calls.
const maxPendingMethods = 100

// methodState is a connection's direct-method state. The dispatcher goroutine adds calls, the
// read loop takes them out when the device answers, and the end of the connection answers the
// rest. mu guards closed, next and pending; it is never held while writing or replying.
type methodState struct {
	on      atomic.Bool // the device is subscribed to $iothub/methods/POST/#
	mu      sync.Mutex
	closed  bool
	next    uint64
	pending map[string]pendingMethod // by request id ($rid)
}

// pendingMethod is a call handed to the device and not yet answered.
type pendingMethod struct {
	in       engine.Inbound // the request to answer
	deadline time.Time      // after this the caller has given up
}

// startMethods makes the connection reachable for direct method calls from any node, and tells
// calls waiting for this device (connectTimeoutInSeconds) to try again.
//
// It runs before the SUBACK is queued and waits (one round trip to the NATS server) until the
// subscription is in place, so a caller that invokes as soon as the device has its SUBACK finds
// the device.
func (c *conn) startMethods() error {
	c.meth.on.Store(true)
	if err := c.listen(methods.Kind); err != nil {
		c.meth.on.Store(false)
		return err
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	_ = c.s.cfg.Engine.Flush(ctx)
	cancel()
	_ = c.s.cfg.Engine.PublishCore(methods.ReadySubject(c.id.DeviceID, c.id.ModuleID), nil)
	return nil
}

// stopMethods ends the connection's interest in direct methods after the device unsubscribes.
// Calls already handed to the device stay open: it may still answer them.
func (c *conn) stopMethods() {
	c.meth.on.Store(false)
	subj := methods.Subject(c.id.DeviceID, c.id.ModuleID)
	if i := slices.Index(c.listening, subj); i >= 0 {
		c.s.unregister(c, subj)
		c.listening = slices.Delete(c.listening, i, i+1)
	}
}

// onMethodRequest forwards a direct method call to the device as
// $iothub/methods/POST/{name}/?$rid={rid} (QoS 0, the payload as the caller wrote it). It runs on
// the dispatcher goroutine, so it never waits: when the call cannot be handed over at once, the
// caller gets an error answer instead.
func (c *conn) onMethodRequest(in engine.Inbound) {
	fail := func(code errcode.Code, msg string) { _ = in.Reply(methods.AppendError(nil, code, msg)) }
	req, err := methods.DecodeRequest(in.Data)
	if err != nil {
		fail(errcode.ServerError, "the call reached the device's node in an unknown format")
		return
	}
	if !c.meth.on.Load() {
		fail(errcode.DeviceNotOnline, "the device is not subscribed to direct methods")
		return
	}
	if strings.ContainsAny(req.Name, "+#") {
		// [MQTT-3.3.2-2]: a PUBLISH topic holds no wildcard characters.
		fail(errcode.ArgumentInvalid, "method names with '+' or '#' cannot be delivered to a device connected over MQTT")
		return
	}
	rid, ok := c.addPendingMethod(in, req.Timeout, fail)
	if !ok {
		return
	}
	topic := "$iothub/methods/POST/" + req.Name + "/?$rid=" + rid
	pkt := appendPublish(make([]byte, 0, 8+len(topic)+len(req.Payload)), topic, 0, 0, req.Payload)
	if !c.tryEnqueue(outItem{data: pkt}) {
		if _, ok := c.takePendingMethod(rid); ok {
			fail(errcode.ServiceUnavailable, "the device's connection is not keeping up with what is sent to it; try again")
		}
	}
}

// addPendingMethod records a call and returns its request id. It fails the call when the
// connection is closing or holds too many.
func (c *conn) addPendingMethod(in engine.Inbound, timeout time.Duration, fail func(errcode.Code, string)) (string, bool) {
	now := c.s.cfg.Now()
	m := &c.meth
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		fail(errcode.DeviceNotOnline, "the device's connection is closing")
		return "", false
	}
	if len(m.pending) >= maxPendingMethods {
		for rid, pm := range m.pending {
			if now.After(pm.deadline) {
				delete(m.pending, rid)
			}
		}
	}
	if len(m.pending) >= maxPendingMethods {
		m.mu.Unlock()
		fail(errcode.DeviceMaximumInflightMethodExceeded, "the device already has "+strconv.Itoa(maxPendingMethods)+" direct method calls in flight")
		return "", false
	}
	if m.pending == nil {
		m.pending = map[string]pendingMethod{}
	}
	m.next++
	rid := strconv.FormatUint(m.next, 16)
	m.pending[rid] = pendingMethod{in: in, deadline: now.Add(timeout)}
	m.mu.Unlock()
	return rid, true
}

func (c *conn) takePendingMethod(rid string) (pendingMethod, bool) {
	m := &c.meth
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pending[rid]
	if ok {
		delete(m.pending, rid)
	}
	return pm, ok
}

// onMethodResponse passes the device's answer, $iothub/methods/res/{status}/?$rid={rid}, back to
// the caller. An answer nobody waits for any more (a late one, or an unknown rid) is dropped, as
// IoT Hub does. The status must be a 32-bit integer; otherwise the caller gets 502000 and the
// connection stays up.
func (c *conn) onMethodResponse(t parsedTopic, p publish) error {
	if pm, ok := c.takePendingMethod(t.rid); ok {
		status, err := strconv.ParseInt(t.status, 10, 32)
		if err != nil {
			_ = pm.in.Reply(methods.AppendError(nil, errcode.GenericBadGateway,
				"the device answered with status '"+printableStatus(t.status)+"', which is not an integer"))
		} else {
			_ = pm.in.Reply(methods.AppendResponse(make([]byte, 0, 6+len(p.payload)), int32(status), p.payload))
		}
		c.touch()
	}
	if p.qos == 1 {
		return c.enqueue(outItem{data: appendAck(nil, typePuback, p.packetID)})
	}
	return nil
}

// printableStatus bounds and cleans a status segment for an error message.
func printableStatus(s string) string {
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\'' || r == ';' {
			return '?'
		}
		return r
	}, s)
}

// closeMethods answers the calls still waiting for this connection's device with 504101, so
// their callers learn at once that no answer will come.
func (c *conn) closeMethods() {
	m := &c.meth
	m.on.Store(false)
	m.mu.Lock()
	m.closed = true
	pending := m.pending
	m.pending = nil
	m.mu.Unlock()
	for _, pm := range pending {
		_ = pm.in.Reply(methods.AppendError(nil, errcode.GatewayTimeout, "the device disconnected before it answered"))
	}
}

package mqtt

import (
	"encoding/json"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

// Fault injection at the MQTT edge: an injected failure is answered and logged exactly as a
// real one (a refused CONNECT, a closed connection), and its record is marked by the rule.

// Drop closes a device's connections on whichever node holds them, as if the network dropped
// them: each is logged as a deviceDisconnect with 404104, marked as injected by rule.
func (s *Server) Drop(deviceID, rule string) error {
	b, _ := json.Marshal(kickMsg{Node: s.cfg.NodeID, Code: int(errcode.DeviceConnectionClosedRemotely),
		Msg: "the connection was dropped (injected fault)", Fault: rule})
	return s.cfg.Engine.PublishCore(engine.DeviceSubject(deviceID, "", "kick"), b)
}

// kickError is the error a kick with a code closes connections with.
func kickError(k kickMsg) *errcode.Error {
	e := errcode.New(errcode.Code(k.Code), "%s", k.Msg)
	if k.Fault != "" {
		e.Err = &diag.InjectedFault{Rule: k.Fault}
	}
	return e
}

// connectFault is the failure to inject into an authenticated CONNECT, if any.
func (c *conn) connectFault(dev string) *errcode.Error {
	if c.s.cfg.Faults == nil {
		return nil
	}
	return c.s.cfg.Faults.Check(c.ctx, diag.Connections, diag.OpDeviceConnect, dev)
}

// telemetryFault injects a failure into a telemetry PUBLISH: the message is refused and logged
// as DeviceTelemetry ingress (IoT Hub then closes an MQTT connection), or, for a drop, the
// connection just closes with 404104.
func (c *conn) telemetryFault(msg *telemetry.Message, size int) error {
	if c.s.cfg.Faults == nil {
		return nil
	}
	e := c.s.cfg.Faults.Check(c.ctx, diag.DeviceTelemetry, diag.OpIngress, c.id.DeviceID)
	if e == nil {
		return nil
	}
	if e.Code != errcode.DeviceConnectionClosedRemotely {
		c.recordTelemetryError(msg, size, e)
	}
	if e.Code == errcode.ThrottlingException && c.s.cfg.OnThrottled != nil {
		c.s.cfg.OnThrottled()
	}
	return e
}

// opFault is the failure to inject into a device operation over MQTT (a twin read or update),
// or nil. The caller answers and logs it as it would a real failure of that operation.
func (c *conn) opFault(category, op string) error {
	if c.s.cfg.Faults == nil {
		return nil
	}
	if e := c.s.cfg.Faults.Check(c.ctx, category, op, c.id.DeviceID); e != nil {
		return e
	}
	return nil
}

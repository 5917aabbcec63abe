package mqtt

import (
	"context"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/throttle"
)

// The hub's tier (Config.Throttle) at the MQTT edge. A nil throttler, the default unlimited
// hub, costs one branch per operation.
//
//   - CONNECT over the new-connection rate waits in the backlog (the CONNACK comes late); once
//     the backlog is full the connection is refused with CONNACK 3 (server unavailable, so the
//     SDKs retry) and a Connections deviceConnect record with 429001 (spec/decisions.md 3).
//   - A telemetry PUBLISH over the device-to-cloud rate waits in the backlog on the connection's
//     read loop: its PUBACK comes late and the device's next packets are read late, which is
//     IoT Hub's traffic shaping as a device sees it. Once the backlog is full, or the daily quota
//     is used up, the message is refused: a DeviceTelemetry ingress record with 429001 or 403002
//     and the connection closes (MQTT 3.1.1 has no negative PUBACK), as IoT Hub does.
//   - Twin GET and reported PATCH over their rates wait too; when refused the answer is the
//     error status in the response topic ($iothub/twin/res/429/...), and the connection stays.

// throttleConnect applies the new-connection rate to an authenticated CONNECT and picks the
// device's own limits (Config.DeviceLimits), reading its twin when groups are configured.
func (c *conn) throttleConnect() *errcode.Error {
	if th := c.s.cfg.Throttle; th != nil {
		if err := th.Wait(c.ctx, throttle.Connect, 1); err != nil {
			c.countThrottled(throttle.Connect, err)
			return errcode.As(err)
		}
	}
	if dl := c.s.cfg.DeviceLimits; dl != nil {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		c.devLimit = dl.Lookup(ctx, c.id.DeviceID, c.id.ModuleID)
		cancel()
	}
	return nil
}

// throttleTelemetry applies the device-to-cloud rate and the daily quota to a telemetry
// message of size bytes; a refusal is recorded here and closes the connection.
func (c *conn) throttleTelemetry(msg *telemetry.Message, size int) error {
	if c.devLimit == nil && c.s.cfg.Throttle == nil {
		return nil
	}
	defer c.afterWait(time.Now())
	if c.devLimit != nil {
		if err := c.devLimit.Wait(c.ctx, size); err != nil {
			e := errcode.As(err)
			c.recordTelemetryError(msg, size, e)
			c.s.cfg.Metrics.Throttle.Errors.WithLabelValues("device").Inc()
			return e
		}
	}
	th := c.s.cfg.Throttle
	if th == nil {
		return nil
	}
	err := th.Message(c.ctx, throttle.D2C, 1, size)
	if err == nil {
		return nil
	}
	e := errcode.As(err)
	c.recordTelemetryError(msg, size, e)
	c.countThrottled(throttle.D2C, e)
	return e
}

// throttleTwin applies the twin read or update rate (and the daily quota) to a twin request
// from the device; op is "read" or "update".
func (c *conn) throttleTwin(op string, size int) error {
	th := c.s.cfg.Throttle
	if th == nil {
		return nil
	}
	defer c.afterWait(time.Now())
	class := throttle.TwinRead
	if op == "update" {
		class = throttle.TwinUpdate
	}
	err := th.Message(c.ctx, class, 1, size)
	if err != nil {
		c.countThrottled(class, err)
	}
	return err
}

// countThrottled counts a refusal in the throttle metrics (and 429001 telemetry in
// d2c.telemetry.ingress.sendThrottle).
func (c *conn) countThrottled(class throttle.Class, err error) {
	m := c.s.cfg.Metrics
	switch errcode.As(err).Code {
	case errcode.ThrottlingException:
		m.Throttle.Errors.WithLabelValues(class.String()).Inc()
		if class == throttle.D2C && c.s.cfg.OnThrottled != nil {
			c.s.cfg.OnThrottled()
		}
	case errcode.IotHubQuotaExceeded:
		m.Throttle.QuotaExceeded.WithLabelValues(class.String()).Inc()
	}
}

// afterWait restarts the keep-alive read deadline when a packet waited in a backlog: the wait is
// the hub's doing, and must not count as the device's silence.
func (c *conn) afterWait(start time.Time) {
	if time.Since(start) > time.Millisecond && c.kaWindow > 0 {
		c.armDeadline()
	}
}

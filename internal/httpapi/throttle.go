package httpapi

import (
	"net/http"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/throttle"
	"github.com/roost-iot/roost/internal/upload"
)

// restClass maps a REST operation (its diagnostic category and operation name) to the tier's
// throttle class. quota reports whether the operation is a message that counts against the
// daily quota; ok is false for operations no throttle applies to.
func restClass(category, operation string) (c throttle.Class, quota, ok bool) {
	switch category {
	case diag.DeviceIdentityOperations:
		// A bulk call is charged one operation per device once its body is read (throttleBulk).
		return throttle.Registry, false, operation != "bulk"
	case diag.DeviceTelemetry:
		return throttle.D2C, true, operation == "ingress"
	case diag.C2DCommands:
		switch operation {
		case "send":
			return throttle.C2DSend, true, true
		case "receive":
			return throttle.C2DReceive, false, true
		}
		// Purge, settle and feedback have no rate of their own, but a basic tier has no C2D.
		return throttle.C2DSend, false, true
	case diag.DirectMethods:
		return throttle.Methods, true, true
	case diag.C2DTwinOperations:
		if operation == "read" {
			return throttle.TwinRead, true, true
		}
		return throttle.TwinUpdate, true, true
	case diag.TwinQueries:
		return throttle.Query, false, true
	case diag.FileUploadOperations:
		return throttle.FileUpload, false, operation == upload.OpInit
	}
	return 0, false, false
}

// throttle applies the hub's tier to a REST request that passed authentication: the basic
// tiers' missing features, the class's rate with traffic shaping (the request waits in the
// backlog; 429001 when it is full) and, for messages, the daily quota (403002). The route's
// own record is the request's diagnostic record. With the default unlimited hub it is one
// nil check.
func (a *API) throttle(r *http.Request, category, operation string) error {
	th := a.cfg.Throttle
	if th == nil && a.cfg.DeviceLimits == nil {
		return nil
	}
	c, quota, ok := restClass(category, operation)
	if !ok {
		return nil
	}
	size := int(max(r.ContentLength, 0))
	if c == throttle.D2C && a.cfg.DeviceLimits != nil {
		dl := a.cfg.DeviceLimits.Cached(r.Context(), r.PathValue("id"), r.PathValue("mid"))
		if err := dl.Wait(r.Context(), size); err != nil {
			if a.cfg.Metrics != nil {
				a.cfg.Metrics.Throttle.Errors.WithLabelValues("device").Inc()
			}
			return err
		}
	}
	if th == nil {
		return nil
	}
	n := 1
	if c == throttle.Methods {
		n = throttle.Meters(size, 4096)
	}
	var err error
	switch {
	case category == diag.C2DCommands && operation != "send" && operation != "receive":
		err = th.Feature(c)
	case quota:
		err = th.Message(r.Context(), c, n, size)
	default:
		err = th.Wait(r.Context(), c, n)
	}
	if err != nil {
		a.countThrottled(c, err)
	}
	return err
}

// countThrottled counts a refusal in the throttle metrics.
func (a *API) countThrottled(c throttle.Class, err error) {
	code := errcode.As(err).Code
	if code == errcode.ThrottlingException && c == throttle.D2C && a.cfg.OnTelemetryThrottled != nil {
		a.cfg.OnTelemetryThrottled()
	}
	m := a.cfg.Metrics
	if m == nil {
		return
	}
	switch code {
	case errcode.ThrottlingException:
		m.Throttle.Errors.WithLabelValues(c.String()).Inc()
	case errcode.IotHubQuotaExceeded:
		m.Throttle.QuotaExceeded.WithLabelValues(c.String()).Inc()
	}
}

// throttleBulk charges a bulk registry call of n devices to the identity registry rate, one
// operation per device as IoT Hub counts it: the call waits as long as the last of n single
// operations would, or gets 429001 (and changes nothing) when that one would be refused.
func (a *API) throttleBulk(r *http.Request, n int) error {
	th := a.cfg.Throttle
	if th == nil {
		return nil
	}
	err := th.Wait(r.Context(), throttle.Registry, max(n, 1))
	if err != nil {
		a.countThrottled(throttle.Registry, err)
	}
	return err
}

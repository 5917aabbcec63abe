package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/telemetry"
)

// deviceCall carries what a device request's diagnostic record needs.
type deviceCall struct {
	category  string
	operation string
	deviceID  string
	moduleID  string
	// id is the authenticated identity; its DeviceID is empty until authentication succeeds.
	id auth.Identity
	// size is the request's message size in bytes (telemetry: as telemetry.Size counts it).
	size int
	// batch is set for a batch of telemetry messages.
	batch bool
}

// deviceHandlerFunc is a device REST handler that returns its error instead of writing it.
type deviceHandlerFunc func(w http.ResponseWriter, r *http.Request, c *deviceCall) error

// deviceRoute registers a device-facing endpoint: the request is authenticated as the identity
// its path names ({id}, and {mid} for modules) with the device's SAS token (Authorization
// header) or client certificate, so a token of device A used on device B's path fails with 401.
// Failures answer with IoT Hub's error body and write one diagnostic record of category; device
// operations are logged only when they fail, as IoT Hub's device categories are.
func (a *API) deviceRoute(pattern, category, operation string, h deviceHandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c := &deviceCall{category: category, operation: operation, deviceID: r.PathValue("id"), moduleID: r.PathValue("mid")}
		err := checkAPIVersion(r)
		if err == nil {
			c.id, err = a.authenticateDevice(r, c.deviceID, c.moduleID)
		}
		if err == nil {
			err = a.throttle(r, category, operation)
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			trackingID := newTrackingID()
			a.writeError(w, err, trackingID)
			a.recordDevice(r, c, err, trackingID)
		}
	})
}

// authenticateDevice checks a device request's credentials against the identity in its path.
func (a *API) authenticateDevice(r *http.Request, deviceID, moduleID string) (auth.Identity, error) {
	creds := auth.DeviceCredentials{DeviceID: deviceID, ModuleID: moduleID, Token: strings.TrimSpace(r.Header.Get("Authorization"))}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		sha1hex, sha256hex := certs.Thumbprint(r.TLS.PeerCertificates[0])
		creds.Thumbprints = []string{sha1hex, sha256hex}
	}
	return a.cfg.Policies.AuthenticateDevice(r.Context(), a.cfg.Registry, creds)
}

// recordDevice writes the failed device request's diagnostic record; its correlationId is the
// tracking id the device got.
func (a *API) recordDevice(r *http.Request, c *deviceCall, err error, trackingID string) {
	if a.cfg.Diag == nil {
		return
	}
	authType := ""
	if c.id.DeviceID != "" {
		authType = c.id.AuthTypeJSON()
	}
	var rec diag.Record
	if c.category == diag.DeviceTelemetry {
		rec = telemetry.IngressFailure{
			DeviceID: c.deviceID, ModuleID: c.moduleID, Protocol: "Https", AuthType: authType,
			MaskedIP: diag.MaskIP(r.RemoteAddr), Size: c.size, Batch: c.batch, CorrelationID: trackingID, Err: err,
		}.Record()
		rec.OperationName = c.operation
	} else {
		var at any
		if authType != "" {
			at = authType
		}
		props := map[string]any{
			"deviceId": c.deviceID, "protocol": "Https", "authType": at,
			"maskedIpAddress": diag.MaskIP(r.RemoteAddr), "statusCode": itoa(errcode.As(err).Code.HTTPStatus()),
		}
		if c.moduleID != "" {
			props["moduleId"] = c.moduleID
		}
		rec = diag.Record{Category: c.category, OperationName: c.operation, Err: err, CorrelationID: trackingID,
			DurationMs: -1, Properties: props}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	a.cfg.Diag.Write(ctx, rec)
}

// Package httpapi serves IoT Hub's REST surface over HTTPS: the service API the Azure service
// SDKs call (identity registry first), with IoT Hub's error bodies.
//
// Handlers return errors; [API.ServeHTTP] maps every error to the wire once: the HTTP status from
// the code's first three digits, the classic body
//
//	{"Message":"ErrorCode:DeviceNotFound;...","ExceptionMessage":"Tracking ID:<id>-G:0-TimeStamp:<time>"}
//
// and the iothub-errorcode header. Each request writes one diagnostic record whose correlationId
// is the tracking id, so a user can walk from an error they saw to its log line.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/faults"
	"github.com/roost-iot/roost/internal/jobs"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/regjobs"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/throttle"
	"github.com/roost-iot/roost/internal/twin"
	"github.com/roost-iot/roost/internal/upload"
)

// Config wires the API to the domain.
type Config struct {
	Registry *registry.Registry
	Policies *auth.Store
	Diag     *diag.Writer
	Logger   *slog.Logger
	// MaxBody is the largest request body accepted, in bytes. Zero means 256 KiB.
	MaxBody int64
	// MaxBulkBody is the largest bulk registry body, in bytes. Zero means 2 MiB.
	MaxBulkBody int64
	// Metrics, when set, counts device telemetry sent over HTTPS.
	Metrics *metrics.Metrics
	// WebSocket, when set, serves /$iothub/websocket (MQTT over WebSockets).
	WebSocket http.Handler
	// Faults, when set, injects failures into REST operations (fault injection).
	Faults *faults.Injector
	// Telemetry, when set, serves device HTTPS telemetry and the service's event stream and
	// consumer groups (/messages/events).
	Telemetry *telemetry.Pipeline
	// Methods, when set, serves direct method calls (/twins/{id}/methods).
	Methods *methods.Service
	// Twins, when set, serves device and module twins (/twins/{id}[/modules/{mid}]).
	Twins *twin.Store
	// QuerySource, when set, serves the query language (POST /devices/query) over the twins it
	// reads.
	QuerySource query.Source
	// Uploads, when set, serves file uploads: the device side (/devices/{id}/files), the
	// notification queue (/messages/serviceBound/filenotifications) and the file list (/files).
	Uploads *upload.Service
	// BlobStore, when set, serves the built-in blob endpoint under /{container}/.
	BlobStore *blob.Local
	// RegJobs, when set, serves import/export jobs (POST /jobs/create, GET/DELETE /jobs/{id}).
	RegJobs *regjobs.Service
	// BlobIdleTimeout ends a blob upload whose client sends nothing for this long. Zero means
	// 2 minutes.
	BlobIdleTimeout time.Duration
	// C2D, when set, serves cloud-to-device messaging: the service's send, purge and feedback,
	// and the device's HTTPS receive, complete, reject and abandon.
	C2D *c2d.Service
	// Throttle, when set, enforces the hub's IoT Hub tier (rates, traffic shaping, basic tier
	// features, daily quota). Nil is the unlimited hub.
	Throttle *throttle.Throttler
	// OnTelemetryThrottled, when set, is told of each HTTPS telemetry message refused with
	// 429001 (d2c.telemetry.ingress.sendThrottle).
	OnTelemetryThrottled func()
	// DeviceLimits, when set, caps each device's HTTPS telemetry (beyond IoT Hub).
	DeviceLimits *throttle.DeviceLimits
	// Jobs, when set, serves jobs v2 (/jobs/v2/...): scheduled twin updates and device methods.
	Jobs *jobs.Service
	// JobRows, when set, is what queries FROM devices.jobs read.
	JobRows query.Source
}

// API is the HTTPS request handler.
type API struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// New builds the API's routes.
func New(cfg Config) *API {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 256 << 10
	}
	if cfg.MaxBulkBody <= 0 {
		cfg.MaxBulkBody = 2 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, mux: http.NewServeMux(), log: log.With("component", "httpapi")}
	a.routes()
	return a
}

// call carries what one request's diagnostic record needs.
type call struct {
	category  string
	operation string
	deviceID  string
	moduleID  string
	policy    string
	// noRecord skips the diagnostic record (e.g. health probes).
	noRecord bool
	// props are category-specific record properties; they override the common ones.
	props map[string]any
	// extraErrors are per-entry failures of a bulk request, each logged as its own record.
	extraErrors []entryError
}

type entryError struct {
	operation, deviceID, moduleID string
	err                           error
}

// handlerFunc is a REST handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *call) error

// route registers pattern with the right the caller's policy needs and the diagnostic
// category and operation its record gets.
func (a *API) route(pattern string, need auth.Right, category, operation string, h handlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{category: category, operation: operation, deviceID: r.PathValue("id"), moduleID: r.PathValue("mid")}
		err := checkAPIVersion(r)
		if err == nil {
			var pol auth.Policy
			pol, err = a.cfg.Policies.AuthorizeService(r.Context(), r.Header.Get("Authorization"), need)
			c.policy = pol.KeyName
		}
		if err == nil {
			err = a.injectFault(r, c)
		}
		if err == nil {
			err = a.throttle(r, category, operation)
		}
		if err == nil {
			err = h(w, r, c)
		}
		trackingID := newTrackingID()
		if err != nil {
			a.writeError(w, err, trackingID)
		}
		a.record(r, c, err, trackingID, time.Since(start))
	})
}

// ServeHTTP serves the REST API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.cfg.WebSocket != nil && r.URL.Path == "/$iothub/websocket" {
		a.cfg.WebSocket.ServeHTTP(w, r)
		return
	}
	if a.isBlobPath(r) { // before the mux, which would redirect "..", "." and "//" paths
		a.serveBlob(w, r)
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// The mux answers unknown paths and wrong methods in plain text; IoT Hub answers in its
		// error format.
		code := errcode.GenericNotFound
		if rr := fallbackStatus(h, r); rr == http.StatusMethodNotAllowed {
			code = errcode.GenericMethodNotAllowed
		}
		a.writeError(w, errcode.New(code, "%s %s is not a supported operation", r.Method, r.URL.Path), newTrackingID())
		return
	}
	a.mux.ServeHTTP(w, r) // through the mux, so that PathValue works
}

// fallbackStatus runs the mux's own fallback handler into a throw-away writer to learn whether
// it answers 404 or 405.
func fallbackStatus(h http.Handler, r *http.Request) int {
	sw := &statusWriter{header: http.Header{}}
	h.ServeHTTP(sw, r)
	return sw.status
}

type statusWriter struct {
	header http.Header
	status int
}

func (s *statusWriter) Header() http.Header         { return s.header }
func (s *statusWriter) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusWriter) WriteHeader(code int)        { s.status = code }

// supportedAPIVersions are the service API versions the Azure SDKs and docs use.
var supportedAPIVersions = map[string]bool{
	"2016-02-03": true, "2016-11-14": true, "2017-06-30": true, "2017-11-08-preview": true,
	"2018-01-26": true, "2018-04-01": true, "2018-06-30": true, "2018-08-30-preview": true,
	"2019-03-30": true, "2019-07-01-preview": true, "2019-10-01": true, "2020-03-13": true,
	"2020-05-31-preview": true, "2020-06-30-preview": true, "2020-09-30": true, "2021-04-12": true,
	"2021-06-30-preview": true, "2021-07-01": true, "2021-07-02": true, "2022-04-30-preview": true,
	"2023-06-30": true, "2023-06-30-preview": true,
}

func checkAPIVersion(r *http.Request) error {
	v := r.URL.Query().Get("api-version")
	if v == "" {
		return errcode.New(errcode.InvalidProtocolVersion, "the api-version query parameter is required")
	}
	if !supportedAPIVersions[v] {
		return errcode.New(errcode.InvalidProtocolVersion, "api-version '%s' is not supported", sanitize(v))
	}
	return nil
}

// sanitize makes untrusted text safe inside an error message: no ';' (the SDKs split on it), no
// control characters, bounded length.
func sanitize(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == ';' {
			return '?'
		}
		return r
	}, s)
}

func newTrackingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errorBody is IoT Hub's classic REST error body, the one the Node and C# SDKs both parse.
type errorBody struct {
	Message          string `json:"Message"`
	ExceptionMessage string `json:"ExceptionMessage"`
}

// writeError maps err to the wire: status from the code, classic body, iothub-errorcode header.
func (a *API) writeError(w http.ResponseWriter, err error, trackingID string) {
	e := errcode.As(err)
	if e.Code.HTTPStatus() >= 500 {
		a.log.Error("request failed", "code", int(e.Code), "err", e, "trackingId", trackingID)
	}
	msg := sanitize(e.Msg)
	if msg == "" {
		msg = e.Code.Name()
	}
	var withInfo infoError
	if errors.As(err, &withInfo) {
		writeInfoError(w, e, msg, withInfo.ErrorInfo(), trackingID)
		return
	}
	body := errorBody{
		Message: "ErrorCode:" + e.Code.Name() + ";" + msg,
		ExceptionMessage: "Tracking ID:" + trackingID + "-G:0-TimeStamp:" +
			time.Now().UTC().Format("01/02/2006 15:04:05"),
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("iothub-errorcode", e.Code.Name())
	h.Set("x-ms-request-id", trackingID)
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(body)
}

// writeJSON writes a success body with the content type the SDKs require to parse it.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errcode.Wrap(errcode.ServerError, err, "could not encode the response")
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}

// readJSON decodes a request body of at most limit bytes into v.
func readJSON(r *http.Request, limit int64, v any) error {
	if r.Body == nil {
		return errcode.New(errcode.ArgumentNull, "the request has no body")
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return errcode.Wrap(errcode.GenericBadRequest, err, "could not read the request body")
	}
	if int64(len(b)) > limit {
		return errcode.New(errcode.GenericRequestEntityTooLarge, "the request body is larger than %d bytes", limit)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return errcode.New(errcode.ArgumentNull, "the request has no body")
	}
	if err := json.Unmarshal(b, v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return errcode.Wrap(errcode.ArgumentInvalid, err, "field '%s' has the wrong type: expected %s", ute.Field, ute.Type)
		}
		return errcode.Wrap(errcode.IotHubFormatError, err, "the request body is not valid JSON")
	}
	return nil
}

// record writes the request's diagnostic record(s).
func (a *API) record(r *http.Request, c *call, err error, trackingID string, d time.Duration) {
	if a.cfg.Diag == nil || c.noRecord {
		return
	}
	ip := diag.MaskIP(r.RemoteAddr)
	base := func(op, dev, mod string, err error) diag.Record {
		status := http.StatusOK
		if err != nil {
			status = errcode.As(err).Code.HTTPStatus()
		}
		props := map[string]any{"maskedIpAddress": ip, "deviceId": dev, "statusCode": itoa(status)}
		if mod != "" {
			props["moduleId"] = mod
		}
		if ua := r.UserAgent(); ua != "" {
			props["sdkVersion"] = ua
		}
		if c.policy != "" {
			props["sharedAccessPolicy"] = c.policy
		}
		for k, v := range c.props {
			props[k] = v
		}
		return diag.Record{
			Category: c.category, OperationName: op, Err: err, CorrelationID: trackingID,
			DurationMs: d.Milliseconds(), Properties: props,
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if len(c.extraErrors) == 0 || err != nil {
		a.cfg.Diag.Write(ctx, base(c.operation, c.deviceID, c.moduleID, err))
	}
	for _, ee := range c.extraErrors {
		a.cfg.Diag.Write(ctx, base(ee.operation, ee.deviceID, ee.moduleID, ee.err))
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

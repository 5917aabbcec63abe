package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/metrics"
)

// AdminConfig wires the admin listener's troubleshooting endpoints: diagnostic queries and
// tails, metrics, fault injection, alerts and device event subscriptions.
type AdminConfig struct {
	// Policies authorize service SAS tokens (the service policy's ServiceConnect right reads;
	// changing faults, alerts and subscriptions also needs RegistryWrite).
	Policies *auth.Store
	// Token, when not empty, is an admin bearer token accepted instead of a SAS token.
	Token string
	// Query runs KQL over the hub's tables (AzureDiagnostics, AzureMetrics).
	Query func(ctx context.Context, query string, opts kql.Options) (*kql.Result, error)
	// Tail follows new diagnostic records.
	Tail func(ctx context.Context, cats, levels []string, fn func(diag.Wire) bool) error
	// Metrics gives the node's current metric values.
	Metrics *metrics.Metrics
	// QueryTimeout bounds a query. Zero means 60 s.
	QueryTimeout time.Duration
	// MaxRows bounds a query's rows. Zero means 30,000.
	MaxRows int
	// Extra registers more endpoints (faults, alerts, events) on the admin mux.
	Extra  []func(a *Admin)
	Logger *slog.Logger
}

// Admin serves the troubleshooting endpoints of the admin listener.
type Admin struct {
	cfg AdminConfig
	mux *http.ServeMux
	log *slog.Logger
}

// NewAdmin builds the admin endpoints.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 60 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Admin{cfg: cfg, mux: http.NewServeMux(), log: log.With("component", "admin")}
	a.Handle("POST /diagnostics/query", false, a.query)
	a.Handle("GET /diagnostics/tail", false, a.tail)
	a.Handle("GET /diagnostics/categories", false, a.categories)
	a.Handle("GET /diagnostics/metrics", false, a.metrics)
	for _, f := range cfg.Extra {
		f(a)
	}
	return a
}

// Patterns lists the path prefixes the admin endpoints serve, for mounting on another mux.
func (a *Admin) Patterns() []string {
	return []string{"/diagnostics/", "/faults", "/faults/", "/alerts", "/alerts/", "/events/"}
}

// ServeHTTP serves the admin endpoints.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// AdminError is an admin API failure in the Log Analytics API's error shape.
type AdminError struct {
	Status  int
	Code    string
	Message string
	// Inner holds details, such as a query error's line and position.
	Inner map[string]any
}

func (e *AdminError) Error() string { return e.Message }

// BadRequest returns a 400 admin error.
func BadRequest(format string, args ...any) *AdminError {
	return &AdminError{Status: http.StatusBadRequest, Code: "BadArgumentError", Message: sprintf(format, args...)}
}

// NotFound returns a 404 admin error.
func NotFound(format string, args ...any) *AdminError {
	return &AdminError{Status: http.StatusNotFound, Code: "NotFound", Message: sprintf(format, args...)}
}

// AdminHandler is an admin endpoint that returns its error.
type AdminHandler func(w http.ResponseWriter, r *http.Request) error

// Handle registers an admin endpoint; write endpoints need a policy that may also write the
// registry (iothubowner, registryReadWrite plus service) or the admin token.
func (a *Admin) Handle(pattern string, write bool, h AdminHandler) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		err := a.authorize(r, write)
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			a.writeError(w, err)
		}
	})
}

func (a *Admin) authorize(r *http.Request, write bool) error {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && a.cfg.Token != "" {
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(a.cfg.Token)) == 1 {
			return nil
		}
		return errcode.New(errcode.IotHubUnauthorizedAccess, "the admin token is not valid")
	}
	if a.cfg.Policies == nil {
		return errcode.New(errcode.IotHubUnauthorizedAccess, "no credentials are accepted here")
	}
	if _, err := a.cfg.Policies.AuthorizeService(r.Context(), h, auth.ServiceConnect); err != nil {
		return err
	}
	if write {
		if _, err := a.cfg.Policies.AuthorizeService(r.Context(), h, auth.RegistryWrite); err != nil {
			return err
		}
	}
	return nil
}

func (a *Admin) writeError(w http.ResponseWriter, err error) {
	var ae *AdminError
	body := map[string]any{}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &ae):
		status = ae.Status
		e := map[string]any{"code": ae.Code, "message": ae.Message}
		if ae.Inner != nil {
			e["innererror"] = ae.Inner
		}
		body["error"] = e
	default:
		var ce *errcode.Error
		if errors.As(err, &ce) {
			status = ce.Code.HTTPStatus()
			body["error"] = map[string]any{"code": ce.Code.Name(), "message": ce.Msg, "iothubCode": int(ce.Code)}
		} else {
			a.log.Error("admin request failed", "err", err)
			body["error"] = map[string]any{"code": "InternalServerError", "message": "internal error"}
		}
	}
	WriteAdminJSON(w, status, body)
}

// WriteAdminJSON writes a JSON answer.
func WriteAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// ReadAdminJSON decodes a request body of at most 1 MiB, refusing unknown fields.
func ReadAdminJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return BadRequest("could not read the request body")
	}
	if len(b) > 1<<20 {
		return &AdminError{Status: http.StatusRequestEntityTooLarge, Code: "PayloadTooLarge", Message: "the request body is larger than 1 MiB"}
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("the request body is not valid: %v", err)
	}
	return nil
}

// QueryRequest is the body of POST /diagnostics/query (the Log Analytics query API's, plus
// Roost's explain and maxRows).
type QueryRequest struct {
	Query    string `json:"query"`
	Timespan string `json:"timespan,omitempty"`
	// Explain adds Cause and Resolution columns for the rows' ResultType.
	Explain bool `json:"explain,omitempty"`
	// MaxRows cuts the result; zero means the admin's limit.
	MaxRows int `json:"maxRows,omitempty"`
}

// QueryResponse is the Log Analytics shape plus Roost's warnings and statistics.
type QueryResponse struct {
	kql.LogAnalytics
	Warnings   []string       `json:"warnings,omitempty"`
	Statistics map[string]any `json:"statistics,omitempty"`
}

func (a *Admin) query(w http.ResponseWriter, r *http.Request) error {
	var req QueryRequest
	if err := ReadAdminJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Query) == "" {
		return BadRequest("the request has no query")
	}
	now := time.Now()
	from, to, err := kql.ParseTimespan(req.Timespan, now)
	if err != nil {
		return BadRequest("%v", err)
	}
	opts := kql.Options{Now: now, From: from, To: to, Timeout: a.cfg.QueryTimeout, MaxRows: a.cfg.MaxRows, Explain: diag.Explain}
	if req.MaxRows > 0 && (opts.MaxRows == 0 || req.MaxRows < opts.MaxRows) {
		opts.MaxRows = req.MaxRows
	}
	res, err := a.cfg.Query(r.Context(), req.Query, opts)
	if err != nil {
		return QueryError(err)
	}
	if req.Explain {
		diag.AddExplanations(res)
	}
	out := QueryResponse{LogAnalytics: res.LogAnalytics(), Warnings: res.Warnings,
		Statistics: map[string]any{"executionTimeMs": res.Stats.Duration.Milliseconds(), "rowsScanned": res.Stats.RowsScanned}}
	if res.Truncated {
		out.Warnings = append(out.Warnings, "the result was cut to "+strconv.Itoa(len(res.Rows))+" rows; add take, summarize or a narrower time range")
	}
	WriteAdminJSON(w, http.StatusOK, out)
	return nil
}

// QueryError maps a query failure to the Log Analytics API's error: a syntax or name error
// with its line and position, or a limit.
func QueryError(err error) error {
	var qe *kql.Error
	switch {
	case errors.As(err, &qe):
		inner := map[string]any{"code": "SemanticError", "message": qe.Msg}
		if qe.Pos.Line > 0 {
			inner["code"] = "SyntaxError"
			inner["line"] = qe.Pos.Line
			inner["pos"] = qe.Pos.Col
		}
		return &AdminError{Status: http.StatusBadRequest, Code: "BadArgumentError", Message: err.Error(), Inner: inner}
	case errors.Is(err, kql.ErrTimeout):
		return &AdminError{Status: http.StatusGatewayTimeout, Code: "GatewayTimeout", Message: err.Error()}
	case errors.Is(err, kql.ErrMemory):
		return &AdminError{Status: http.StatusBadRequest, Code: "QueryLimitExceeded", Message: err.Error()}
	}
	return err
}

func (a *Admin) tail(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var cats, levels []string
	for _, c := range q["category"] {
		cat, ok := diag.FindCategory(c)
		if !ok {
			return BadRequest("%q is not a diagnostic category", c)
		}
		cats = append(cats, cat.Name)
	}
	for _, l := range q["level"] {
		switch strings.ToLower(l) {
		case "error":
			levels = append(levels, diag.LevelError)
		case "information", "info":
			levels = append(levels, diag.LevelInformation)
		case "warning":
			levels = append(levels, diag.LevelWarning)
		case "critical":
			levels = append(levels, diag.LevelCritical)
		default:
			return BadRequest("%q is not a level (Information, Warning, Error, Critical)", l)
		}
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err := a.cfg.Tail(r.Context(), cats, levels, func(rec diag.Wire) bool {
		if enc.Encode(rec) != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	})
	if err != nil && r.Context().Err() == nil {
		a.log.Warn("tail ended", "err", err)
	}
	return nil
}

func (a *Admin) categories(w http.ResponseWriter, _ *http.Request) error {
	WriteAdminJSON(w, http.StatusOK, diag.Categories())
	return nil
}

func (a *Admin) metrics(w http.ResponseWriter, _ *http.Request) error {
	if a.cfg.Metrics == nil {
		return NotFound("no metrics on this node")
	}
	WriteAdminJSON(w, http.StatusOK, a.cfg.Metrics.Snapshot())
	return nil
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}

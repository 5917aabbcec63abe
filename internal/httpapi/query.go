package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/query"
)

// queryRoutes serves IoT Hub's query language over the twins: POST /devices/query, for device
// twins (FROM devices) and module twins (FROM devices.modules) alike.
func (a *API) queryRoutes() {
	if a.cfg.QuerySource == nil {
		return
	}
	a.mux.HandleFunc("POST /devices/query", a.serveQuery)
}

// queryCall carries what a query request's TwinQueries record needs.
type queryCall struct {
	text         string
	apiVersion   string
	messageSize  int64
	pageSize     int
	continuation bool
	resultSize   int
}

// serveQuery answers one page of a query. Paging is IoT Hub's: the page size comes in
// x-ms-max-item-count, the previous page's token in x-ms-continuation; the answer is a JSON array
// with x-ms-item-type and, only while more pages follow, x-ms-continuation (the Node SDK's
// Query.hasMoreResults is that header's presence).
//
// Queries are answered for a policy with ServiceConnect or RegistryRead. Each request writes
// one TwinQueries record (operation "query"); failures are level Error with the code.
func (a *API) serveQuery(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &queryCall{apiVersion: r.URL.Query().Get("api-version"), messageSize: max(r.ContentLength, 0), pageSize: query.DefaultPageSize}
	page, body, err := a.runQuery(r, c)
	trackingID := newTrackingID()
	if err != nil {
		a.writeError(w, err, trackingID)
	} else {
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("x-ms-item-type", page.ItemType)
		if page.Continuation != "" {
			h.Set("x-ms-continuation", page.Continuation)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	}
	if m := a.cfg.Metrics; m != nil {
		if err != nil {
			m.TwinQueriesFailure.Inc()
			m.OperationErrors.WithLabelValues(diag.TwinQueries, errcode.As(err).Code.String()).Inc()
		} else {
			m.TwinQueriesSuccess.Inc()
			m.TwinQueriesResultSize.Observe(float64(len(body)))
		}
	}
	a.recordQuery(r, c, err, trackingID, time.Since(start))
}

// runQuery checks the request and runs the query; it returns the page and its encoded items.
func (a *API) runQuery(r *http.Request, c *queryCall) (query.Page, []byte, error) {
	if err := checkAPIVersion(r); err != nil {
		return query.Page{}, nil, err
	}
	if err := a.authorizeQuery(r); err != nil {
		return query.Page{}, nil, err
	}
	if err := a.throttle(r, diag.TwinQueries, "query"); err != nil {
		return query.Page{}, nil, err
	}
	if s := r.Header.Get("x-ms-max-item-count"); s != "" {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return query.Page{}, nil, errcode.New(errcode.ArgumentInvalid, "x-ms-max-item-count '%s' is not a whole number of at least 1", sanitize(s))
		}
		c.pageSize = min(n, query.MaxPageSize)
	}
	token := r.Header.Get("x-ms-continuation")
	c.continuation = token != ""

	cr := &countingReader{r: r.Body}
	if r.Body != nil {
		r.Body = io.NopCloser(cr)
	}
	var req struct {
		Query *string `json:"query"`
	}
	err := readJSON(r, a.cfg.MaxBody, &req)
	if r.Body != nil {
		c.messageSize = cr.n
	}
	if err != nil {
		return query.Page{}, nil, err
	}
	if req.Query == nil || strings.TrimSpace(*req.Query) == "" {
		return query.Page{}, nil, errcode.New(errcode.ArgumentNull, "the request body needs a query property holding the query text")
	}
	c.text = *req.Query
	q, err := query.Parse(c.text)
	if err != nil {
		return query.Page{}, nil, err
	}
	src := a.cfg.QuerySource
	if q.From() == query.Jobs {
		src = a.cfg.JobRows
		if src == nil {
			src = func(context.Context, bool, func(map[string]any) bool) error { return nil }
		}
	}
	page, err := q.Page(r.Context(), src, c.pageSize, token)
	if err != nil {
		return query.Page{}, nil, err
	}
	b, err := json.Marshal(page.Items)
	if err != nil {
		return query.Page{}, nil, errcode.Wrap(errcode.ServerError, err, "could not encode the query results")
	}
	c.resultSize = len(page.Items)
	return page, b, nil
}

// authorizeQuery accepts a policy with ServiceConnect (what IoT Hub documents for queries) or
// RegistryRead (what registry tools hold). When neither is granted the ServiceConnect error is
// the one reported.
func (a *API) authorizeQuery(r *http.Request) error {
	hdr := r.Header.Get("Authorization")
	_, err := a.cfg.Policies.AuthorizeService(r.Context(), hdr, auth.ServiceConnect)
	if err == nil {
		return nil
	}
	if _, err2 := a.cfg.Policies.AuthorizeService(r.Context(), hdr, auth.RegistryRead); err2 == nil {
		return nil
	}
	return err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// recordQuery writes the request's TwinQueries record, with the properties IoT Hub's records
// carry (spec/diagnostics.md 1.5): query, sdkVersion (the api-version), messageSize (request
// body bytes), pageSize, continuation (whether the request continued an earlier page) and
// resultSize (items returned), all as strings.
func (a *API) recordQuery(r *http.Request, c *queryCall, err error, trackingID string, d time.Duration) {
	if a.cfg.Diag == nil {
		return
	}
	text := c.text
	if utf8.RuneCountInString(text) > query.MaxQueryLength {
		text = string([]rune(text)[:query.MaxQueryLength]) + "..."
	}
	props := map[string]any{
		"query":        text,
		"sdkVersion":   c.apiVersion,
		"messageSize":  strconv.FormatInt(c.messageSize, 10),
		"pageSize":     strconv.Itoa(c.pageSize),
		"continuation": strconv.FormatBool(c.continuation),
		"resultSize":   strconv.Itoa(c.resultSize),
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	a.cfg.Diag.Write(ctx, diag.Record{
		Category: diag.TwinQueries, OperationName: "query", Err: err, CorrelationID: trackingID,
		DurationMs: d.Milliseconds(), Properties: props,
	})
}

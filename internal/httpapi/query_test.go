package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/registry"
)

// queryFixture is a hub's HTTPS API answering queries over a fixed set of twins.
type queryFixture struct{ *fixture }

func twinDocs() []map[string]any {
	var docs []map[string]any
	for i := range 5 {
		docs = append(docs, map[string]any{
			"deviceId": fmt.Sprintf("dev-%d", i), "etag": "AAAAAAAAAAE=", "version": 1.0,
			"status": "enabled", "connectionState": "Disconnected",
			"tags":       map[string]any{"line": []string{"A", "B"}[i%2]},
			"properties": map[string]any{"desired": map[string]any{"$version": 1.0}, "reported": map[string]any{"$version": 1.0}},
		})
	}
	docs = append(docs,
		map[string]any{"deviceId": "dev-0", "moduleId": "m1", "tags": map[string]any{}, "properties": map[string]any{"reported": map[string]any{"status": "scanning"}}},
		map[string]any{"deviceId": "dev-1", "moduleId": "m1", "tags": map[string]any{}, "properties": map[string]any{"reported": map[string]any{"status": "idle"}}},
	)
	return docs
}

func sliceSource(docs []map[string]any) query.Source {
	return func(ctx context.Context, modules bool, fn func(map[string]any) bool) error {
		for _, d := range docs {
			if _, m := d["moduleId"]; m == modules && !fn(d) {
				return nil
			}
		}
		return nil
	}
}

func newQueryFixture(t *testing.T, eng *engine.Engine, src query.Source) *queryFixture {
	t.Helper()
	if src == nil {
		src = sliceSource(twinDocs())
	}
	return &queryFixture{newHub(t, hubOptions{eng: eng, metrics: true, api: httpapi.Config{QuerySource: src}})}
}

// post sends a query request the way the Node SDK's Registry.createQuery does.
func (f *queryFixture) post(t *testing.T, token, body string, header map[string]string) answer {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json; charset=utf-8"}
	for k, v := range header {
		h[k] = v
	}
	return f.do(t, "POST", "/devices/query"+v, token, h, body)
}

func queryBody(q string) string {
	b, _ := json.Marshal(map[string]string{"query": q})
	return string(b)
}

func deviceIDs(t *testing.T, a answer) string {
	t.Helper()
	var items []map[string]any
	if err := json.Unmarshal(a.body, &items); err != nil {
		t.Fatalf("body is not a JSON array of objects: %v: %s", err, a.body)
	}
	var out []string
	for _, it := range items {
		id, _ := it["deviceId"].(string)
		if m, ok := it["moduleId"].(string); ok {
			id += "/" + m
		}
		out = append(out, id)
	}
	return strings.Join(out, " ")
}

// TestHTTPQueryPagesLikeIoTHub follows the Node SDK through a paged query: the body is a JSON
// array, x-ms-item-type says twin or raw, and x-ms-continuation is present while more pages
// follow and absent (not empty) on the last page.
func TestHTTPQueryPagesLikeIoTHub(t *testing.T) {
	t.Parallel()
	f := newQueryFixture(t, nil, nil)
	tok := f.token(t, "service", time.Hour)
	var (
		pages        []string
		continuation string
	)
	for range 10 {
		h := map[string]string{"x-ms-max-item-count": "2"}
		if continuation != "" {
			h["x-ms-continuation"] = continuation
		}
		a := f.post(t, tok, queryBody("SELECT * FROM devices"), h)
		if a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Fatalf("Content-Type %q", ct)
		}
		if it := a.header.Get("x-ms-item-type"); it != "twin" {
			t.Fatalf("x-ms-item-type %q, want twin", it)
		}
		pages = append(pages, deviceIDs(t, a))
		vals, present := a.header["X-Ms-Continuation"]
		if !present {
			break
		}
		if len(vals) != 1 || vals[0] == "" {
			t.Fatalf("x-ms-continuation %q: must be absent, not empty, when no page follows", vals)
		}
		continuation = vals[0]
	}
	if got := strings.Join(pages, " | "); got != "dev-0 dev-1 | dev-2 dev-3 | dev-4" {
		t.Fatalf("pages %q", got)
	}

	for _, tc := range []struct{ query, typ, body string }{
		{"SELECT deviceId FROM devices WHERE tags.line = 'B'", "raw", `[{"deviceId":"dev-1"},{"deviceId":"dev-3"}]`},
		{"SELECT tags.line AS line, COUNT() AS n FROM devices GROUP BY tags.line", "raw", `[{"line":"A","n":3},{"line":"B","n":2}]`},
		{"SELECT COUNT() AS totalNumberOfDevices FROM devices", "raw", `[{"totalNumberOfDevices":5}]`},
		{"SELECT * FROM devices WHERE tags.line = 'C'", "twin", `[]`},
		{"SELECT * FROM devices.jobs", "deviceJob", `[]`},
	} {
		a := f.post(t, tok, queryBody(tc.query), nil)
		if a.status != 200 || a.header.Get("x-ms-item-type") != tc.typ || strings.TrimSpace(string(a.body)) != tc.body {
			t.Errorf("%s: %d %s %s, want 200 %s %s", tc.query, a.status, a.header.Get("x-ms-item-type"), a.body, tc.typ, tc.body)
		}
		if _, present := a.header["X-Ms-Continuation"]; present {
			t.Errorf("%s: x-ms-continuation on a single page", tc.query)
		}
	}
	a := f.post(t, tok, queryBody("SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'"), nil)
	if a.status != 200 || a.header.Get("x-ms-item-type") != "twin" || deviceIDs(t, a) != "dev-0/m1" {
		t.Fatalf("module query: %d %s", a.status, a.body)
	}
}

var trackingIDRx = regexp.MustCompile(`Tracking ID:([0-9a-f]{32})`)

// TestHTTPQueryErrors checks that bad requests, hostile queries included, get IoT Hub's exact
// code, a TwinQueries record at level Error carrying the response's tracking id, and a failure
// count, and that the right policies are needed.
func TestHTTPQueryErrors(t *testing.T) {
	t.Parallel()
	f := newQueryFixture(t, nil, nil)
	owner := f.token(t, "iothubowner", time.Hour)
	start := time.Now().Add(-time.Second)
	var inList strings.Builder
	inList.WriteString("SELECT * FROM devices WHERE deviceId IN [")
	for i := 0; inList.Len() < 9000; i++ {
		fmt.Fprintf(&inList, "'d%d',", i)
	}
	inList.WriteString("'x']")
	tests := []struct {
		name, token, body string
		header            map[string]string
		status            int
		code, msg         string
	}{
		{"syntax", owner, queryBody("SELECT * FROM devices WHERE"), nil, 400, "ArgumentInvalid", "The query is invalid: line 1, column 28: expected an expression, found end of query"},
		{"unterminated string", owner, queryBody("SELECT * FROM devices WHERE tags.x = 'abc"), nil, 400, "ArgumentInvalid", "line 1, column 38: string literal not terminated"},
		{"deep nesting", owner, queryBody("SELECT * FROM devices WHERE " + strings.Repeat("(", 5000) + "x"), nil, 400, "ArgumentInvalid", "nested more than 64 levels"},
		{"too long", owner, queryBody("SELECT * FROM devices WHERE tags.x = '" + strings.Repeat("a", 9000) + "'"), nil, 400, "ArgumentInvalid", "more than the 8192 allowed"},
		{"huge IN list", owner, queryBody(inList.String()), nil, 400, "ArgumentInvalid", "more than the 8192 allowed"},
		{"unknown collection", owner, queryBody("SELECT * FROM twins"), nil, 400, "ArgumentInvalid", "expected devices, devices.modules or devices.jobs"},
		{"no body", owner, "", nil, 400, "ArgumentNull", "the request has no body"},
		{"no query", owner, `{}`, nil, 400, "ArgumentNull", "the request body needs a query"},
		{"empty query", owner, `{"query":""}`, nil, 400, "ArgumentNull", "the request body needs a query"},
		{"query not a string", owner, `{"query":42}`, nil, 400, "ArgumentInvalid", "field 'query' has the wrong type"},
		{"not json", owner, `SELECT * FROM devices`, nil, 400, "IotHubFormatError", "not valid JSON"},
		{"bad page size", owner, queryBody("SELECT * FROM devices"), map[string]string{"x-ms-max-item-count": "ten"}, 400, "ArgumentInvalid", "x-ms-max-item-count 'ten'"},
		{"zero page size", owner, queryBody("SELECT * FROM devices"), map[string]string{"x-ms-max-item-count": "0"}, 400, "ArgumentInvalid", "x-ms-max-item-count '0'"},
		{"bad token", owner, queryBody("SELECT * FROM devices"), map[string]string{"x-ms-continuation": "nope"}, 400, "ArgumentInvalid", "The continuation token is not valid"},
		{"device policy", f.token(t, "device", time.Hour), queryBody("SELECT * FROM devices"), nil, 401, "IotHubUnauthorized", "does not allow access for 'ServiceConnect'"},
		{"registryReadWrite policy", f.token(t, "registryReadWrite", time.Hour), queryBody("SELECT * FROM devices"), nil, 200, "", ""},
		{"registryRead policy", f.token(t, "registryRead", time.Hour), queryBody("SELECT * FROM devices"), nil, 200, "", ""},
		{"service policy", f.token(t, "service", time.Hour), queryBody("SELECT * FROM devices"), nil, 200, "", ""},
		{"expired token", f.token(t, "service", -time.Minute), queryBody("SELECT * FROM devices"), nil, 401, "IotHubUnauthorizedAccess", ""},
	}
	failures := 0
	want := map[string]string{} // tracking id -> code
	for _, tc := range tests {
		a := f.post(t, tc.token, tc.body, tc.header)
		if a.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, a.status, tc.status, a.body)
			continue
		}
		if tc.status == 200 {
			continue
		}
		failures++
		if a.errorName() != tc.code || a.header.Get("iothub-errorcode") != tc.code {
			t.Errorf("%s: error %s (header %s), want %s", tc.name, a.errorName(), a.header.Get("iothub-errorcode"), tc.code)
		}
		if !errorBodyShape.Match(a.body) {
			t.Errorf("%s: body is not IoT Hub's error shape: %s", tc.name, a.body)
		}
		var eb struct{ Message, ExceptionMessage string }
		_ = json.Unmarshal(a.body, &eb)
		if !strings.Contains(eb.Message, tc.msg) {
			t.Errorf("%s: message %q does not contain %q", tc.name, eb.Message, tc.msg)
		}
		m := trackingIDRx.FindStringSubmatch(eb.ExceptionMessage)
		if m == nil {
			t.Fatalf("%s: no tracking id", tc.name)
		}
		want[m[1]] = fmt.Sprint(tc.status*1000 + map[string]int{"ArgumentInvalid": 4, "ArgumentNull": 5, "IotHubFormatError": 6, "IotHubUnauthorized": 3, "IotHubUnauthorizedAccess": 2}[tc.code])
	}
	f.dw.Close()
	got := map[string]diag.Wire{}
	infos := 0
	err := diag.Read(context.Background(), f.eng, diag.TwinQueries, start, func(w diag.Wire) bool {
		if w.Level == diag.LevelError {
			got[w.CorrelationID] = w
		} else {
			infos++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, code := range want {
		w, ok := got[id]
		if !ok {
			t.Errorf("no TwinQueries record with correlationId %s (code %s)", id, code)
			continue
		}
		if w.OperationName != "query" || w.ResultType != code || w.Category != "TwinQueries" {
			t.Errorf("record %+v, want operation query, resultType %s", w, code)
		}
	}
	if len(got) != len(want) || infos != 3 {
		t.Errorf("%d Error records (want %d), %d Information records (want 3)", len(got), len(want), infos)
	}
	if n := metricValue(t, f.m.TwinQueriesFailure); int(n) != failures {
		t.Errorf("twinQueries.failure %v, want %d", n, failures)
	}
	if n := metricValue(t, f.m.OperationErrors.WithLabelValues("TwinQueries", "400004")); n < 1 {
		t.Errorf("no 400004 TwinQueries operation errors counted")
	}
}

// TestHTTPQueryRecord checks the Information record of an answered page: IoT Hub's TwinQueries
// properties, as strings.
func TestHTTPQueryRecord(t *testing.T) {
	t.Parallel()
	f := newQueryFixture(t, nil, nil)
	tok := f.token(t, "service", time.Hour)
	start := time.Now().Add(-time.Second)
	const q = "SELECT * FROM devices WHERE tags.line = 'A'"
	body := queryBody(q)
	first := f.post(t, tok, body, map[string]string{"x-ms-max-item-count": "2"})
	next := f.post(t, tok, body, map[string]string{"x-ms-max-item-count": "2", "x-ms-continuation": first.header.Get("x-ms-continuation")})
	if first.status != 200 || next.status != 200 || deviceIDs(t, first) != "dev-0 dev-2" || deviceIDs(t, next) != "dev-4" {
		t.Fatalf("pages: %d %s / %d %s", first.status, first.body, next.status, next.body)
	}
	f.dw.Close()
	var props []map[string]any
	var recs []diag.Wire
	err := diag.Read(context.Background(), f.eng, diag.TwinQueries, start, func(w diag.Wire) bool {
		var p map[string]any
		_ = json.Unmarshal([]byte(w.Properties), &p)
		props = append(props, p)
		recs = append(recs, w)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{
		{"query": q, "sdkVersion": "2021-04-12", "messageSize": fmt.Sprint(len(body)), "pageSize": "2", "continuation": "false", "resultSize": "2"},
		{"query": q, "sdkVersion": "2021-04-12", "messageSize": fmt.Sprint(len(body)), "pageSize": "2", "continuation": "true", "resultSize": "1"},
	}
	if fmt.Sprint(props) != fmt.Sprint(want) {
		t.Fatalf("record properties\n got %v\nwant %v", props, want)
	}
	for _, r := range recs {
		if r.Level != "Information" || r.OperationName != "query" || r.ResultType != "" || r.DurationMs == "" {
			t.Errorf("record %+v", r)
		}
	}
	if n := metricValue(t, f.m.TwinQueriesSuccess); n != 2 {
		t.Errorf("twinQueries.success %v, want 2", n)
	}
	if n := metricValue(t, f.m.TwinQueriesResultSize); n != 2 {
		t.Errorf("result size histogram: %v samples, want 2", n)
	}
}

// metricValue sums a collector's counters, or counts its histogram's samples.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		if d.Counter != nil {
			sum += d.Counter.GetValue()
		}
		if d.Histogram != nil {
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}

// registrySource reads device twins from the registry (identity fields only), as a node does
// from the engine: enough to page across nodes.
func registrySource(reg *registry.Registry) query.Source {
	return func(ctx context.Context, modules bool, fn func(map[string]any) bool) error {
		if modules {
			return nil
		}
		devs, err := reg.ListDevices(ctx, registry.MaxListTop)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if !fn(map[string]any{"deviceId": d.DeviceID, "status": d.Status, "etag": d.ETag}) {
				return nil
			}
		}
		return nil
	}
}

// TestHTTPQueryPagingAcrossNodes pages one query through two hubs sharing a NATS server: a
// continuation token from one node is served by the other.
func TestHTTPQueryPagingAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	engA, engB := ext.Connect(t), ext.Connect(t)
	regA, err := registry.New(context.Background(), engA, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	regB, err := registry.New(context.Background(), engB, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a := newQueryFixture(t, engA, registrySource(regA))
	b := newQueryFixture(t, engB, registrySource(regB))
	for i := range 7 {
		if _, err := regA.CreateDevice(context.Background(), registry.Device{DeviceID: fmt.Sprintf("n-%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	tok := a.token(t, "service", time.Hour)
	var pages []string
	continuation := ""
	for i := 0; i < 10; i++ {
		node := []*queryFixture{a, b}[i%2]
		h := map[string]string{"x-ms-max-item-count": "3"}
		if continuation != "" {
			h["x-ms-continuation"] = continuation
		}
		ans := node.post(t, tok, queryBody("SELECT * FROM devices WHERE status = 'enabled'"), h)
		if ans.status != 200 {
			t.Fatalf("page %d from node %d: %d %s", i, i%2, ans.status, ans.body)
		}
		pages = append(pages, deviceIDs(t, ans))
		continuation = ans.header.Get("x-ms-continuation")
		if continuation == "" {
			break
		}
	}
	if got := strings.Join(pages, " | "); got != "n-00 n-01 n-02 | n-03 n-04 n-05 | n-06" {
		t.Fatalf("pages across nodes: %q", got)
	}
}

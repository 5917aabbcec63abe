package httpapi_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/twin"
)

type twinFixture struct {
	*fixture
	start time.Time
}

func newTwinFixture(t *testing.T) *twinFixture {
	t.Helper()
	var twins *twin.Store
	f := newHub(t, hubOptions{metrics: true, twins: true, registry: registry.Config{OnDelete: func(dev, mod string) {
		_ = twins.Delete(context.Background(), dev, mod)
	}}})
	twins = f.twins
	return &twinFixture{fixture: f, start: time.Now().Add(-time.Second)}
}

func (f *twinFixture) twinRecords(t *testing.T) []diag.Wire {
	t.Helper()
	var out []diag.Wire
	if err := diag.Read(context.Background(), f.eng, diag.C2DTwinOperations, f.start, func(w diag.Wire) bool { out = append(out, w); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitTwinRecord waits for a C2DTwinOperations record that matches.
func (f *twinFixture) waitTwinRecord(t *testing.T, match func(diag.Wire, map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, r := range f.twinRecords(t) {
			var props map[string]any
			_ = json.Unmarshal([]byte(r.Properties), &props)
			if match(r, props) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching C2DTwinOperations record; have %+v", f.twinRecords(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter reads a counter's value from the metrics registry.
func (f *twinFixture) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := f.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func trackingID(a answer) string {
	var eb struct{ ExceptionMessage string }
	_ = json.Unmarshal(a.body, &eb)
	id, _, _ := strings.Cut(strings.TrimPrefix(eb.ExceptionMessage, "Tracking ID:"), "-")
	return id
}

func TestHTTPTwinReadPatchReplace(t *testing.T) {
	t.Parallel()
	f := newTwinFixture(t)
	ctx := context.Background()
	svc := f.token(t, "service", time.Hour)
	if _, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}

	a := f.do(t, "GET", "/twins/d1"+v, svc, nil, "")
	if a.status != 200 || a.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("GET: %d %s %s", a.status, a.header.Get("Content-Type"), a.body)
	}
	tw := decode(t, a.body)
	etag := tw["etag"].(string)
	if a.header.Get("ETag") != `"`+etag+`"` || tw["deviceId"] != "d1" || tw["version"] != 1.0 {
		t.Fatalf("GET: ETag %q, twin %s", a.header.Get("ETag"), a.body)
	}

	// PATCH as the Node SDK's Twin.update sends it: the patch, If-Match with the quoted etag.
	a = f.do(t, "PATCH", "/twins/d1"+v, svc, map[string]string{"If-Match": `"` + etag + `"`},
		`{"tags":{"site":"north"},"properties":{"desired":{"interval":30}}}`)
	if a.status != 200 {
		t.Fatalf("PATCH: %d %s", a.status, a.body)
	}
	tw = decode(t, a.body)
	desired := tw["properties"].(map[string]any)["desired"].(map[string]any)
	if tw["etag"] == etag || desired["interval"] != 30.0 || desired["$version"] != 2.0 || tw["tags"].(map[string]any)["site"] != "north" {
		t.Fatalf("PATCH answer: %s", a.body)
	}

	// The old etag is stale now: 412 and nothing changes.
	a = f.do(t, "PATCH", "/twins/d1"+v, svc, map[string]string{"If-Match": `"` + etag + `"`}, `{"tags":{"site":"south"}}`)
	if a.status != 412 || a.errorName() != "PreconditionFailed" {
		t.Fatalf("stale PATCH: %d %s", a.status, a.body)
	}
	id := trackingID(a)
	f.waitTwinRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "update" && r.Level == "Error" && r.ResultType == "412001" && r.CorrelationID == id && p["deviceId"] == "d1"
	})

	// PUT replaces tags and desired properties.
	a = f.do(t, "PUT", "/twins/d1"+v, svc, map[string]string{"If-Match": "*"}, `{"deviceId":"d1","tags":{"site":"east"},"properties":{"desired":{"mode":"eco"}}}`)
	if a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	tw = decode(t, a.body)
	desired = tw["properties"].(map[string]any)["desired"].(map[string]any)
	if _, ok := desired["interval"]; ok || desired["mode"] != "eco" || tw["tags"].(map[string]any)["site"] != "east" || desired["$version"] != 3.0 {
		t.Fatalf("PUT answer: %s", a.body)
	}

	// Records: one per request, with the api-version as sdkVersion and the request size.
	f.waitTwinRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "read" && r.Level == "Information" && p["deviceId"] == "d1" && p["sdkVersion"] == "2021-04-12" && p["messageSize"] == "0"
	})
	f.waitTwinRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "replace" && r.Level == "Information" && p["messageSize"] == "80"
	})
	if n := f.counter(t, "roost_c2d_twin_read_success_total"); n != 1 {
		t.Fatalf("c2d.twin.read.success = %v, want 1", n)
	}
	if ok, bad := f.counter(t, "roost_c2d_twin_update_success_total"), f.counter(t, "roost_c2d_twin_update_failure_total"); ok != 2 || bad != 1 {
		t.Fatalf("c2d.twin.update success %v failure %v, want 2 and 1", ok, bad)
	}
}

func TestHTTPTwinErrors(t *testing.T) {
	t.Parallel()
	f := newTwinFixture(t)
	ctx := context.Background()
	owner := f.token(t, "iothubowner", time.Hour)
	if _, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	before := f.do(t, "GET", "/twins/d1"+v, owner, nil, "")
	bigTags := `{"tags":{"a":"` + strings.Repeat("x", 4000) + `","b":"` + strings.Repeat("x", 4000) + `","c":"` + strings.Repeat("x", 300) + `"}}`
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"registry policy", "GET", "/twins/d1" + v, f.token(t, "registryReadWrite", time.Hour), "", 401, "IotHubUnauthorized"},
		{"missing device", "GET", "/twins/nope" + v, owner, "", 404, "DeviceNotFound"},
		{"missing module", "GET", "/twins/d1/modules/nope" + v, owner, "", 404, "ModuleNotFound"},
		{"patch missing device", "PATCH", "/twins/nope" + v, owner, `{"tags":{"a":1}}`, 404, "DeviceNotFound"},
		{"malformed JSON", "PATCH", "/twins/d1" + v, owner, `{"tags":`, 400, "IotHubFormatError"},
		{"empty body", "PATCH", "/twins/d1" + v, owner, ``, 400, "IotHubFormatError"},
		{"tags not an object", "PATCH", "/twins/d1" + v, owner, `{"tags":[1]}`, 400, "ArgumentInvalid"},
		{"key with dot", "PATCH", "/twins/d1" + v, owner, `{"properties":{"desired":{"a.b":1}}}`, 400, "ArgumentInvalid"},
		{"key with dollar", "PUT", "/twins/d1" + v, owner, `{"tags":{"$x":1}}`, 400, "ArgumentInvalid"},
		{"too deep", "PATCH", "/twins/d1" + v, owner, `{"tags":` + strings.Repeat(`{"a":`, 12) + "1" + strings.Repeat("}", 13), 400, "ArgumentInvalid"},
		{"tags over 8 KB", "PATCH", "/twins/d1" + v, owner, bigTags, 403, "DeviceModelMaxPropertiesExceeded"},
		{"bad etag", "PATCH", "/twins/d1" + v, owner, `{"tags":{"a":1}}`, 412, "PreconditionFailed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string(nil)
			if tc.name == "bad etag" {
				hdr = map[string]string{"If-Match": `"AAAAAAAAAAk="`}
			}
			a := f.do(t, tc.method, tc.path, tc.token, hdr, tc.body)
			if a.status != tc.status || a.errorName() != tc.code || a.header.Get("iothub-errorcode") != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", a.status, a.errorName(), a.body, tc.status, tc.code)
			}
			if !errorBodyShape.Match(a.body) {
				t.Fatalf("error body %s is not IoT Hub's shape", a.body)
			}
			id := trackingID(a)
			f.waitTwinRecord(t, func(r diag.Wire, _ map[string]any) bool {
				return r.Level == "Error" && r.CorrelationID == id
			})
		})
	}
	after := f.do(t, "GET", "/twins/d1"+v, owner, nil, "")
	if string(before.body) != string(after.body) {
		t.Fatalf("failed requests changed the twin:\n%s\n%s", before.body, after.body)
	}
}

func TestHTTPModuleTwinAndDelete(t *testing.T) {
	t.Parallel()
	f := newTwinFixture(t)
	ctx := context.Background()
	owner := f.token(t, "iothubowner", time.Hour)
	if _, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: "gw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m 1"}); err == nil {
		t.Fatal("a module id with a space was accepted")
	}
	if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m$1"}); err != nil {
		t.Fatal(err)
	}
	a := f.do(t, "PATCH", "/twins/gw/modules/m%241"+v, owner, nil, `{"properties":{"desired":{"x":1}}}`)
	if a.status != 200 {
		t.Fatalf("module PATCH: %d %s", a.status, a.body)
	}
	tw := decode(t, a.body)
	if tw["deviceId"] != "gw" || tw["moduleId"] != "m$1" {
		t.Fatalf("module twin: %s", a.body)
	}
	if _, ok := tw["capabilities"]; ok {
		t.Fatalf("module twin has device-only fields: %s", a.body)
	}
	// Deleting the device deletes its module's twin with it.
	if a := f.do(t, "DELETE", "/devices/gw"+v, owner, nil, ""); a.status != 204 {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	if _, err := f.reg.CreateDevice(ctx, registry.Device{DeviceID: "gw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "m$1"}); err != nil {
		t.Fatal(err)
	}
	a = f.do(t, "GET", "/twins/gw/modules/m$1"+v, owner, nil, "")
	if a.status != 200 || decode(t, a.body)["version"] != 1.0 {
		t.Fatalf("module twin after re-creating: %d %s", a.status, a.body)
	}
}

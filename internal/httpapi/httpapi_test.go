package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

const v = "?api-version=2021-04-12"

var errorBodyShape = regexp.MustCompile(`^\{"Message":"ErrorCode:[A-Za-z]+;[^;"]+","ExceptionMessage":"Tracking ID:[0-9a-f]{32}-G:0-TimeStamp:\d\d/\d\d/\d{4} \d\d:\d\d:\d\d"\}\n?$`)

func TestHTTPErrorsAreIoTHubErrors(t *testing.T) {
	t.Parallel()
	f := newHub(t, hubOptions{})
	owner := f.token(t, "iothubowner", time.Hour)
	if a := f.do(t, "PUT", "/devices/d1"+v, owner, nil, `{"deviceId":"d1"}`); a.status != 200 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	other, _, _ := f.pols.Policy(context.Background(), "service")
	forged, _ := sas.Sign(host, other.PrimaryKey, "iothubowner", time.Now().Add(time.Hour))
	wrongHost, _ := sas.Sign("elsewhere.test", other.PrimaryKey, "service", time.Now().Add(time.Hour))
	tests := []struct {
		name, method, path, token, body string
		header                          map[string]string
		status                          int
		code                            string
	}{
		{"no token", "GET", "/devices/d1" + v, "", "", nil, 401, "IotHubUnauthorizedAccess"},
		{"expired", "GET", "/devices/d1" + v, f.token(t, "iothubowner", -time.Minute), "", nil, 401, "IotHubUnauthorizedAccess"},
		{"forged", "GET", "/devices/d1" + v, forged, "", nil, 401, "IotHubUnauthorized"},
		{"garbage token", "GET", "/devices/d1" + v, "SharedAccessSignature sr=x", "", nil, 401, "IotHubUnauthorized"},
		{"wrong resource", "GET", "/devices/d1" + v, wrongHost, "", nil, 401, "IotHubUnauthorized"},
		{"read-only policy writes", "PUT", "/devices/d2" + v, f.token(t, "registryRead", time.Hour), `{}`, nil, 401, "IotHubUnauthorized"},
		{"service policy reads registry", "GET", "/devices/d1" + v, f.token(t, "service", time.Hour), "", nil, 401, "IotHubUnauthorized"},
		{"no api-version", "GET", "/devices/d1", owner, "", nil, 400, "InvalidProtocolVersion"},
		{"unknown api-version", "GET", "/devices/d1?api-version=2099-01-01", owner, "", nil, 400, "InvalidProtocolVersion"},
		{"missing device", "GET", "/devices/nope" + v, owner, "", nil, 404, "DeviceNotFound"},
		{"duplicate", "PUT", "/devices/d1" + v, owner, `{"deviceId":"d1"}`, nil, 409, "DeviceAlreadyExists"},
		{"malformed json", "PUT", "/devices/d3" + v, owner, `{"deviceId":`, nil, 400, "IotHubFormatError"},
		{"wrong type", "PUT", "/devices/d3" + v, owner, `{"deviceId":42}`, nil, 400, "ArgumentInvalid"},
		{"id mismatch", "PUT", "/devices/d3" + v, owner, `{"deviceId":"d4"}`, nil, 400, "ArgumentInvalid"},
		{"illegal id", "PUT", "/devices/a%20b" + v, owner, `{}`, nil, 400, "ArgumentInvalid"},
		{"too long id", "GET", "/devices/" + strings.Repeat("x", 129) + v, owner, "", nil, 400, "ArgumentInvalid"},
		{"too big", "PUT", "/devices/d3" + v, owner, `{"deviceId":"d3","statusReason":"` + strings.Repeat("x", 300<<10) + `"}`, nil, 413, "GenericRequestEntityTooLarge"},
		{"stale etag", "PUT", "/devices/d1" + v, owner, `{"deviceId":"d1"}`, map[string]string{"If-Match": `"OTk5OQ=="`}, 412, "PreconditionFailed"},
		{"garbage etag", "DELETE", "/devices/d1" + v, owner, "", map[string]string{"If-Match": `"???"`}, 412, "PreconditionFailed"},
		{"unknown path", "GET", "/nothing/here" + v, owner, "", nil, 404, "GenericNotFound"},
		{"wrong method", "PATCH", "/devices/d1" + v, owner, "{}", nil, 405, "GenericMethodNotAllowed"},
		{"bulk too many", "POST", "/devices" + v, owner, "[" + strings.Repeat(`{"id":"x","importMode":"create"},`, 100) + `{"id":"y","importMode":"create"}]`, nil, 413, "TooManyDevices"},
		{"bulk duplicate", "POST", "/devices" + v, owner, `[{"id":"x","importMode":"create"},{"id":"x","importMode":"delete"}]`, nil, 400, "DeviceDefinedMultipleTimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(t, tt.method, tt.path, tt.token, tt.header, tt.body)
			if a.status != tt.status || a.errorName() != tt.code || a.header.Get("iothub-errorcode") != tt.code {
				t.Fatalf("got %d %s (header %q), want %d %s", a.status, a.body, a.header.Get("iothub-errorcode"), tt.status, tt.code)
			}
			if !errorBodyShape.Match(a.body) {
				t.Fatalf("body %s is not IoT Hub's classic error body", a.body)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	// Nothing above changed the device.
	a := f.do(t, "GET", "/devices/d1"+v, owner, nil, "")
	var d registry.Device
	if err := json.Unmarshal(a.body, &d); err != nil || d.Status != "enabled" {
		t.Fatalf("device after bad requests: %s", a.body)
	}
	a = f.do(t, "GET", "/devices"+v, owner, nil, "")
	var all []registry.Device
	if err := json.Unmarshal(a.body, &all); err != nil || len(all) != 1 {
		t.Fatalf("devices after bad requests: %s", a.body)
	}
}

func TestHTTPErrorWritesDiagnosticRecord(t *testing.T) {
	t.Parallel()
	f := newHub(t, hubOptions{})
	owner := f.token(t, "iothubowner", time.Hour)
	start := time.Now().Add(-time.Second)
	f.do(t, "PUT", "/devices/rec"+v, owner, nil, `{"deviceId":"rec"}`)
	a := f.do(t, "PUT", "/devices/rec"+v, owner, nil, `{"deviceId":"rec"}`)
	var eb struct{ ExceptionMessage string }
	_ = json.Unmarshal(a.body, &eb)
	tracking := regexp.MustCompile(`Tracking ID:([0-9a-f]{32})`).FindStringSubmatch(eb.ExceptionMessage)
	if tracking == nil {
		t.Fatalf("no tracking id in %s", a.body)
	}
	f.dw.Close() // flush
	var found *diag.Wire
	var infos int
	err := diag.Read(context.Background(), f.eng, diag.DeviceIdentityOperations, start, func(w diag.Wire) bool {
		if w.CorrelationID == tracking[1] {
			w := w
			found = &w
		}
		if w.Level == "Information" && w.OperationName == "create" {
			infos++
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == nil {
		t.Fatal("no record carries the response's tracking id")
	}
	if found.Level != "Error" || found.ResultType != "409001" || found.ResultDescription != "DeviceAlreadyExists" || found.OperationName != "create" {
		t.Fatalf("record: %+v", *found)
	}
	var props map[string]any
	if err := json.Unmarshal([]byte(found.Properties), &props); err != nil || props["deviceId"] != "rec" || props["statusCode"] != "409" || !strings.HasSuffix(props["maskedIpAddress"].(string), "XXX") {
		t.Fatalf("properties %s", found.Properties)
	}
	if !strings.HasPrefix(found.ResourceID, "/SUBSCRIPTIONS/") {
		t.Fatalf("resourceId %q", found.ResourceID)
	}
	if infos != 1 {
		t.Fatalf("%d Information create records, want 1", infos)
	}
}

func TestHTTPBulkAnswersLikeIoTHub(t *testing.T) {
	t.Parallel()
	f := newHub(t, hubOptions{})
	owner := f.token(t, "iothubowner", time.Hour)
	a := f.do(t, "POST", "/devices"+v, owner, nil, `[{"id":"b1","importMode":"create"},{"id":"b2","importMode":"create"}]`)
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"isSuccessful":true`)) || !bytes.Contains(a.body, []byte(`"errors":[]`)) {
		t.Fatalf("bulk: %d %s", a.status, a.body)
	}
	a = f.do(t, "POST", "/devices"+v, owner, nil, `[{"id":"b1","importMode":"create"}]`)
	if a.status != 400 || !bytes.Contains(a.body, []byte(`"errorCode":"DeviceAlreadyExists"`)) {
		t.Fatalf("bulk conflict: %d %s", a.status, a.body)
	}
	a = f.do(t, "GET", "/statistics/devices"+v, f.token(t, "registryRead", time.Hour), nil, "")
	if a.status != 200 || !bytes.Contains(a.body, []byte(`"totalDeviceCount":2`)) {
		t.Fatalf("statistics: %d %s", a.status, a.body)
	}
}

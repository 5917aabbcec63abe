package httpapi_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/registry"
)

// c2dFixture is a hub's HTTPS API with cloud-to-device messaging wired in.
type c2dFixture struct{ *fixture }

func newC2DFixture(t *testing.T) *c2dFixture {
	t.Helper()
	return &c2dFixture{newHub(t, hubOptions{c2d: true})}
}

// rawGet sends a request over its own TLS connection and returns the response's header lines
// exactly as they came over the wire (Go's client would canonicalize their names).
func (f *c2dFixture) rawGet(t *testing.T, path, token string) (status string, lines []string, body string) {
	t.Helper()
	addr := strings.TrimPrefix(f.srv.URL, "https://")
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test server's own certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nConnection: close\r\n\r\n", path, host, token)
	rd := bufio.NewReader(c)
	status, _ = rd.ReadString('\n')
	for {
		l, err := rd.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
		lines = append(lines, strings.TrimRight(l, "\r\n"))
	}
	rest := new(strings.Builder)
	_, _ = rd.WriteTo(rest)
	return strings.TrimSpace(status), lines, rest.String()
}

func hasLine(lines []string, prefix string) (string, bool) {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimPrefix(l, prefix), true
		}
	}
	return "", false
}

func TestHTTPC2DSendReceiveCompleteWithFeedback(t *testing.T) {
	t.Parallel()
	f := newC2DFixture(t)
	svcTok := f.token(t, "service", time.Hour)
	devTok := f.deviceToken(t, "lamp", "")
	expiry := time.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	a := f.do(t, "POST", "/devices/lamp/messages/deviceBound"+v, svcTok, map[string]string{
		"iothub-messageid": "msg-1", "iothub-correlationid": "corr", "iothub-userid": "ops", "iothub-ack": "full",
		"iothub-expiry": expiry.Format(time.RFC3339), "Content-Type": "application/json", "Content-Encoding": "utf-8",
		"iothub-app-Color": "red",
	}, `{"on":true}`)
	if a.status != 204 || a.header.Get("iothub-messageid") != "msg-1" {
		t.Fatalf("send: %d %s %v", a.status, a.body, a.header)
	}
	if _, ok := a.header["iothub-messageid"]; !ok {
		// The Go client canonicalizes names; the raw check below covers the device side.
		t.Log("iothub-messageid arrives canonicalized through net/http")
	}
	// A second one without an id gets a generated one.
	b := f.do(t, "POST", "/devices/lamp/messages/devicebound"+v, svcTok, nil, "second")
	if b.status != 204 || len(b.header.Get("iothub-messageid")) != 36 {
		t.Fatalf("send without id: %d %v", b.status, b.header)
	}
	// The registry shows the queue depth.
	owner := f.token(t, "iothubowner", time.Hour)
	var dev registry.Device
	if g := f.do(t, "GET", "/devices/lamp"+v, owner, nil, ""); json.Unmarshal(g.body, &dev) != nil || dev.CloudToDeviceMessageCount != 2 {
		t.Fatalf("cloudToDeviceMessageCount: %s", g.body)
	}

	status, lines, body := f.rawGet(t, "/devices/lamp/messages/devicebound"+v, devTok)
	if !strings.Contains(status, "200") || body != `{"on":true}` {
		t.Fatalf("receive: %s %q %v", status, body, lines)
	}
	etag, ok := hasLine(lines, "ETag: ")
	if !ok || !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) != 38 {
		t.Fatalf("ETag header (exact case, quoted GUID) missing: %v", lines)
	}
	for _, want := range []string{"iothub-messageid: msg-1", "iothub-correlationid: corr", "iothub-userid: ops", "iothub-to: /devices/lamp/messages/deviceBound",
		"iothub-app-color: red", "ContentType: application/json", "ContentEncoding: utf-8", "iothub-deliverycount: 1", "iothub-ack: full",
		"iothub-expiry: " + c2d.FormatTime(expiry)} {
		if _, ok := hasLine(lines, want); !ok {
			t.Errorf("missing header line %q in %v", want, lines)
		}
	}
	lock := strings.Trim(etag, `"`)
	// The device's own path only; the service token cannot settle it either.
	if a := f.do(t, "DELETE", "/devices/lamp/messages/devicebound/"+lock+v, svcTok, nil, ""); a.status != 401 {
		t.Fatalf("service token completing a device message: %d", a.status)
	}
	other := f.deviceToken(t, "other", "")
	if a := f.do(t, "DELETE", "/devices/other/messages/devicebound/"+lock+v, other, nil, ""); a.status != 412 || a.errorName() != "DeviceMessageLockLost" {
		t.Fatalf("completing another device's message: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/devices/lamp/messages/devicebound/"+lock+v, devTok, map[string]string{"If-Match": lock}, ""); a.status != 204 {
		t.Fatalf("complete: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/devices/lamp/messages/devicebound/"+lock+v, devTok, nil, ""); a.status != 412 || a.errorName() != "DeviceMessageLockLost" {
		t.Fatalf("second complete: %d %s", a.status, a.body)
	}
	// Reject the second, then nothing is left.
	_, lines, _ = f.rawGet(t, "/devices/lamp/messages/deviceBound"+v, devTok)
	etag, _ = hasLine(lines, "ETag: ")
	if a := f.do(t, "DELETE", "/devices/lamp/messages/deviceBound/"+strings.Trim(etag, `"`)+v+"&reject", devTok, nil, ""); a.status != 204 {
		t.Fatalf("reject: %d %s", a.status, a.body)
	}
	if a := f.do(t, "GET", "/devices/lamp/messages/devicebound"+v, devTok, nil, ""); a.status != 204 {
		t.Fatalf("empty queue: %d", a.status)
	}
	// Feedback: only msg-1 asked for it.
	var fb answer
	deadline := time.Now().Add(5 * time.Second)
	for {
		fb = f.do(t, "GET", "/messages/serviceBound/feedback"+v, svcTok, nil, "")
		if fb.status != 204 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var recs []c2d.FeedbackRecord
	if fb.status != 200 || json.Unmarshal(fb.body, &recs) != nil || len(recs) != 1 || recs[0].OriginalMessageID != "msg-1" ||
		recs[0].StatusCode != "Success" || recs[0].DeviceID != "lamp" || !strings.HasPrefix(fb.header.Get("Content-Type"), "application/vnd.microsoft.iothub.feedback.json") {
		t.Fatalf("feedback: %d %s %v", fb.status, fb.body, fb.header)
	}
	tok := strings.Trim(fb.header.Get("ETag"), `"`)
	if a := f.do(t, "DELETE", "/messages/serviceBound/feedback/"+tok+v, svcTok, nil, ""); a.status != 204 {
		t.Fatalf("complete feedback: %d %s", a.status, a.body)
	}
	if a := f.do(t, "POST", "/messages/servicebound/feedback/"+tok+"/abandon"+v, svcTok, nil, ""); a.status != 412 {
		t.Fatalf("abandon a completed batch: %d %s", a.status, a.body)
	}
	if a := f.do(t, "GET", "/messages/serviceBound/feedback"+v, svcTok, nil, ""); a.status != 204 {
		t.Fatalf("feedback after completion: %d %s", a.status, a.body)
	}
}

func TestHTTPC2DAbandonAndPurge(t *testing.T) {
	t.Parallel()
	f := newC2DFixture(t)
	svcTok := f.token(t, "service", time.Hour)
	devTok := f.deviceToken(t, "box", "")
	for i := 0; i < 3; i++ {
		if a := f.do(t, "POST", "/devices/box/messages/deviceBound"+v, svcTok, map[string]string{"iothub-ack": "negative"}, fmt.Sprint(i)); a.status != 204 {
			t.Fatal(a.status)
		}
	}
	_, lines, body := f.rawGet(t, "/devices/box/messages/deviceBound"+v, devTok)
	etag, _ := hasLine(lines, "ETag: ")
	if a := f.do(t, "POST", "/devices/box/messages/deviceBound/"+strings.Trim(etag, `"`)+"/abandon"+v, devTok, nil, ""); a.status != 204 {
		t.Fatalf("abandon: %d %s", a.status, a.body)
	}
	_, lines, again := f.rawGet(t, "/devices/box/messages/deviceBound"+v, devTok)
	if count, _ := hasLine(lines, "iothub-deliverycount: "); again != body || count != "2" {
		t.Fatalf("after abandon: %q count %s", again, count)
	}
	a := f.do(t, "DELETE", "/devices/box/commands"+v, svcTok, nil, "")
	var res struct {
		TotalMessagesPurged int     `json:"totalMessagesPurged"`
		DeviceID            string  `json:"deviceId"`
		ModuleID            *string `json:"moduleId"`
	}
	if a.status != 200 || json.Unmarshal(a.body, &res) != nil || res.TotalMessagesPurged != 3 || res.DeviceID != "box" || res.ModuleID != nil {
		t.Fatalf("purge: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/devices/nobody/commands"+v, svcTok, nil, ""); a.status != 404 || a.errorName() != "DeviceNotFound" {
		t.Fatalf("purge an unknown device: %d %s", a.status, a.body)
	}
}

func TestHTTPC2DBadInput(t *testing.T) {
	t.Parallel()
	f := newC2DFixture(t)
	svcTok := f.token(t, "service", time.Hour)
	regTok := f.token(t, "registryReadWrite", time.Hour)
	devTok := f.deviceToken(t, "target", "")
	tests := []struct {
		name   string
		path   string
		token  string
		header map[string]string
		body   string
		status int
		code   string
	}{
		{"registry policy cannot send", "/devices/target/messages/deviceBound", regTok, nil, "x", 401, "IotHubUnauthorized"},
		{"device token cannot send", "/devices/target/messages/deviceBound", devTok, nil, "x", 401, "IotHubUnauthorized"},
		{"unknown device", "/devices/ghost/messages/deviceBound", svcTok, nil, "x", 404, "DeviceNotFound"},
		{"too large", "/devices/target/messages/deviceBound", svcTok, nil, strings.Repeat("x", 64*1024+1), 413, "MessageTooLarge"},
		{"bad ack", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-ack": "always"}, "x", 400, "ArgumentInvalid"},
		{"bad expiry", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-expiry": "tomorrow"}, "x", 400, "ArgumentInvalid"},
		{"past expiry", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-expiry": "2001-01-01T00:00:00Z"}, "x", 403, "InvalidMessageExpiryTime"},
		{"expiry beyond two days", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-expiry": time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)}, "x", 403, "InvalidMessageExpiryTime"},
		{"reserved property name", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-app-iothub-x": "1"}, "x", 400, "ArgumentInvalid"},
		{"bad message id", "/devices/target/messages/deviceBound", svcTok, map[string]string{"iothub-messageid": "a b"}, "x", 400, "ArgumentInvalid"},
	}
	for _, tt := range tests {
		a := f.do(t, "POST", tt.path+v, tt.token, tt.header, tt.body)
		if a.status != tt.status || a.errorName() != tt.code {
			t.Errorf("%s: got %d %s, want %d %s", tt.name, a.status, a.body, tt.status, tt.code)
		}
	}
	if n, _ := f.c2d.Depth(context.Background(), "target"); n != 0 {
		t.Fatalf("bad sends changed the queue: %d", n)
	}
	// 50 fit, the 51st is refused with 403004.
	for i := 0; i < 50; i++ {
		if a := f.do(t, "POST", "/devices/target/messages/deviceBound"+v, svcTok, nil, "x"); a.status != 204 {
			t.Fatalf("send %d: %d", i, a.status)
		}
	}
	a := f.do(t, "POST", "/devices/target/messages/deviceBound"+v, svcTok, map[string]string{"iothub-messageid": "the-51st"}, "x")
	if a.status != 403 || a.errorName() != "DeviceMaximumQueueDepthExceeded" {
		t.Fatalf("51st: %d %s", a.status, a.body)
	}
	// Device side: junk and unknown lock tokens.
	if a := f.do(t, "DELETE", "/devices/target/messages/deviceBound/junk"+v, devTok, nil, ""); a.status != 400 || a.errorName() != "ArgumentInvalid" {
		t.Fatalf("junk token: %d %s", a.status, a.body)
	}
	if a := f.do(t, "POST", "/devices/target/messages/deviceBound/00000000-0000-0001-0000-000000000000/abandon"+v, devTok, nil, ""); a.status != 412 {
		t.Fatalf("unknown token: %d %s", a.status, a.body)
	}
	if a := f.do(t, "DELETE", "/messages/serviceBound/feedback/junk"+v, svcTok, nil, ""); a.status != 400 {
		t.Fatalf("junk feedback token: %d %s", a.status, a.body)
	}
	// Every failure wrote a C2DCommands record whose correlationId is the tracking id.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var recs []diag.Wire
		_ = diag.Read(context.Background(), f.eng, diag.C2DCommands, time.Time{}, func(w diag.Wire) bool { recs = append(recs, w); return true })
		var found403, foundLock bool
		for _, r := range recs {
			var p map[string]any
			_ = json.Unmarshal([]byte(r.Properties), &p)
			if r.OperationName == "send" && r.ResultType == "403004" && r.ResultDescription == "DeviceMaximumQueueDepthExceeded" &&
				p["deviceId"] == "target" && p["messageId"] == "the-51st" && p["messageSizeInBytes"] == "9" && r.CorrelationID != "" {
				found403 = true
			}
			if r.OperationName == "abandon" && r.ResultType == "412002" && p["protocol"] == "Https" {
				foundLock = true
			}
		}
		if found403 && foundLock && len(recs) >= len(tests)+4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records: 403004 %v, 412002 %v, %d records", found403, foundLock, len(recs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

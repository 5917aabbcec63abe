package httpapi_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/telemetry"
)

// telemetryFixture is a hub's HTTPS API with the telemetry pipeline wired in. The server asks
// for client certificates, as the hub's listener does.
type telemetryFixture struct{ *fixture }

func newTelemetryFixture(t *testing.T) *telemetryFixture {
	t.Helper()
	return &telemetryFixture{newHub(t, hubOptions{telemetry: true, tls: clientCerts()})}
}

func (f *telemetryFixture) readAll(t *testing.T, n int) []*telemetry.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := f.tel.NewReader(ctx, telemetry.ReadOptions{From: telemetry.FromStart})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*telemetry.Message
	for len(out) < n {
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("read %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if m, err := r.Next(short); err == nil {
		t.Fatalf("unexpected extra message %q from %s", m.Body, m.DeviceID)
	}
	return out
}

func props(m *telemetry.Message) map[string]string {
	out := map[string]string{}
	for _, p := range m.Properties {
		out[p.Name] = p.Value
	}
	return out
}

func TestHTTPDeviceTelemetrySingleAndBatch(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	tok := f.deviceToken(t, "dev$1", "")
	path := "/devices/dev%241/messages/events" + v

	a := f.do(t, "POST", path, tok, map[string]string{
		"iothub-app-Temperature":   "21.5",
		"IoTHub-MessageId":         "mid-1",
		"IoTHub-CorrelationId":     "cid-1",
		"IoTHub-UserId":            "uid-1",
		"iothub-contenttype":       "application/json",
		"iothub-contentencoding":   "utf-8",
		"IoTHub-Expiry":            "2030-01-02T03:04:05.000Z",
		"iothub-creation-time-utc": "2026-01-02T03:04:05Z",
		"Content-Type":             "application/octet-stream",
	}, `{"t":21.5}`)
	if a.status != http.StatusNoContent {
		t.Fatalf("single: %d %s", a.status, a.body)
	}
	batch := fmt.Sprintf(`[{"body":%q,"properties":{"iothub-app-Kind":"b64","iothub-messageid":"mid-2"}},`+
		`{"body":"plain text","base64Encoded":false,"properties":{"iothub-app-Kind":"text"}},`+
		`{"body":%q}]`,
		base64.StdEncoding.EncodeToString([]byte("first")), base64.StdEncoding.EncodeToString([]byte{0xff, 0x00}))
	a = f.do(t, "POST", path, tok, map[string]string{"Content-Type": "application/vnd.microsoft.iothub.json"}, batch)
	if a.status != http.StatusNoContent {
		t.Fatalf("batch: %d %s", a.status, a.body)
	}

	msgs := f.readAll(t, 4)
	dev, err := f.reg.GetDevice(context.Background(), "dev$1")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.DeviceID != "dev$1" || m.ModuleID != "" || m.Protocol != "Https" || m.AuthGenerationID != dev.GenerationID ||
			m.AuthMethod != `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}` {
			t.Fatalf("annotations of %q: %+v", m.Body, m)
		}
	}
	single := msgs[0]
	if string(single.Body) != `{"t":21.5}` || single.MessageID != "mid-1" || single.CorrelationID != "cid-1" ||
		single.UserID != "uid-1" || single.ContentType != "application/json" || single.ContentEncoding != "utf-8" ||
		!single.Expiry.Equal(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		!single.CreationTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		props(single)["temperature"] != "21.5" || len(single.Properties) != 1 {
		t.Fatalf("single message: %+v", single)
	}
	if m := msgs[1]; string(m.Body) != "first" || m.MessageID != "mid-2" || props(m)["Kind"] != "b64" || len(m.Properties) != 1 {
		t.Fatalf("batch message 1: %+v", m)
	}
	if m := msgs[2]; string(m.Body) != "plain text" || props(m)["Kind"] != "text" {
		t.Fatalf("batch message 2: %+v", m)
	}
	if m := msgs[3]; string(m.Body) != "\xff\x00" || len(m.Properties) != 0 {
		t.Fatalf("batch message 3: %+v", m)
	}
}

func TestHTTPModuleTelemetry(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	f.deviceToken(t, "gw", "")
	tok := f.deviceToken(t, "gw", "filter")
	a := f.do(t, "POST", "/devices/gw/modules/filter/messages/events"+v, tok, nil, "from a module")
	if a.status != http.StatusNoContent {
		t.Fatalf("module send: %d %s", a.status, a.body)
	}
	m := f.readAll(t, 1)[0]
	if m.DeviceID != "gw" || m.ModuleID != "filter" || string(m.Body) != "from a module" {
		t.Fatalf("got %+v", m)
	}
	// A module's token does not cover its device, nor another module.
	if a := f.do(t, "POST", "/devices/gw/messages/events"+v, tok, nil, "x"); a.status != 401 {
		t.Fatalf("module token on the device path: %d", a.status)
	}
}

func TestHTTPDeviceTelemetryErrors(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	tokA := f.deviceToken(t, "a", "")
	f.deviceToken(t, "b", "")
	start := time.Now().Add(-time.Second)
	big := strings.Repeat("x", telemetry.MaxMessageSize+1)
	bigBatch := fmt.Sprintf(`[{"body":%q},{"body":%q}]`,
		base64.StdEncoding.EncodeToString(make([]byte, 200<<10)), base64.StdEncoding.EncodeToString(make([]byte, 100<<10)))
	batchCT := map[string]string{"Content-Type": "application/vnd.microsoft.iothub.json"}
	tests := []struct {
		name, path, token, body string
		header                  map[string]string
		status                  int
		code                    string
	}{
		{"token of a for b", "/devices/b/messages/events" + v, tokA, "x", nil, 401, "IotHubUnauthorized"},
		{"no credentials", "/devices/a/messages/events" + v, "", "x", nil, 401, "IotHubUnauthorized"},
		{"unknown device", "/devices/nobody/messages/events" + v, tokA, "x", nil, 401, "IotHubUnauthorizedAccess"},
		{"service token", "/devices/a/messages/events" + v, f.token(t, "service", time.Hour), "x", nil, 401, "IotHubUnauthorized"},
		{"no api-version", "/devices/a/messages/events", tokA, "x", nil, 400, "InvalidProtocolVersion"},
		{"too large", "/devices/a/messages/events" + v, tokA, big, nil, 413, "MessageTooLarge"},
		{"too large with properties", "/devices/a/messages/events" + v, tokA, big[:telemetry.MaxMessageSize-1],
			map[string]string{"iothub-app-k": "v"}, 413, "MessageTooLarge"},
		{"batch too large", "/devices/a/messages/events" + v, tokA, bigBatch, batchCT, 413, "MessageTooLarge"},
		{"batch not json", "/devices/a/messages/events" + v, tokA, `[{"body":`, batchCT, 400, "IotHubFormatError"},
		{"batch not an array", "/devices/a/messages/events" + v, tokA, `{"body":"eA=="}`, batchCT, 400, "ArgumentInvalid"},
		{"batch empty", "/devices/a/messages/events" + v, tokA, `[]`, batchCT, 400, "ArgumentInvalid"},
		{"batch bad base64", "/devices/a/messages/events" + v, tokA, `[{"body":"***"}]`, batchCT, 400, "ArgumentInvalid"},
		{"batch bad property", "/devices/a/messages/events" + v, tokA, `[{"body":"eA==","properties":{"k":1}}]`, batchCT, 400, "ArgumentInvalid"},
		{"bad expiry", "/devices/a/messages/events" + v, tokA, "x", map[string]string{"iothub-expiry": "soon"}, 400, "ArgumentInvalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.do(t, "POST", tt.path, tt.token, tt.header, tt.body)
			if a.status != tt.status || a.errorName() != tt.code || a.header.Get("iothub-errorcode") != tt.code {
				t.Fatalf("got %d %s, want %d %s", a.status, a.body, tt.status, tt.code)
			}
			if !errorBodyShape.Match(a.body) {
				t.Fatalf("body %s is not IoT Hub's error body", a.body)
			}
		})
	}
	// No message got in.
	r, err := f.tel.NewReader(context.Background(), telemetry.ReadOptions{From: telemetry.FromStart})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if m, err := r.Next(ctx); err == nil {
		t.Fatalf("a refused request stored %q", m.Body)
	}
	r.Close()

	// Every failure wrote a DeviceTelemetry ingress record.
	f.dw.Close()
	var recs []diag.Wire
	err = diag.Read(context.Background(), f.eng, diag.DeviceTelemetry, start, func(w diag.Wire) bool {
		recs = append(recs, w)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(tests) {
		t.Fatalf("%d DeviceTelemetry records for %d failures", len(recs), len(tests))
	}
	var tooLarge, wrongDevice map[string]any
	for _, rec := range recs {
		if rec.OperationName != "ingress" || rec.Level != "Error" || rec.CorrelationID == "" {
			t.Fatalf("record %+v", rec)
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(rec.Properties), &p); err != nil {
			t.Fatal(err)
		}
		switch {
		case rec.ResultType == "413001" && tooLarge == nil:
			tooLarge = p
		case rec.ResultType == "401003" && p["deviceId"] == "b" && wrongDevice == nil:
			wrongDevice = p
		}
	}
	if tooLarge == nil || tooLarge["deviceId"] != "a" || tooLarge["protocol"] != "Https" || tooLarge["statusCode"] != "413" ||
		tooLarge["messageSizeInBytes"] != fmt.Sprint(telemetry.MaxMessageSize+1) ||
		tooLarge["authType"] != `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}` {
		t.Fatalf("413001 record properties: %v", tooLarge)
	}
	if wrongDevice == nil || wrongDevice["authType"] != nil || wrongDevice["statusCode"] != "401" {
		t.Fatalf("401003 record properties: %v", wrongDevice)
	}
}

// selfSigned makes a device certificate whose thumbprint can be registered.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

func TestHTTPDeviceTelemetryX509(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	cert := selfSigned(t, "cam")
	_, thumb := certs.Thumbprint(cert.Leaf)
	if _, err := f.reg.CreateDevice(context.Background(), registry.Device{DeviceID: "cam", Authentication: registry.Authentication{
		Type: registry.AuthSelfSigned, X509Thumbprint: &registry.X509Thumbprint{PrimaryThumbprint: &thumb}}}); err != nil {
		t.Fatal(err)
	}
	client := f.srv.Client()
	tr := client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	client = &http.Client{Transport: tr}
	post := func(dev string) int {
		req, _ := http.NewRequest("POST", f.srv.URL+"/devices/"+dev+"/messages/events"+v, strings.NewReader("snapshot"))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("cam"); st != http.StatusNoContent {
		t.Fatalf("x509 send: %d", st)
	}
	f.deviceToken(t, "other", "")
	if st := post("other"); st != http.StatusUnauthorized {
		t.Fatalf("certificate of cam on other's path: %d", st)
	}
	m := f.readAll(t, 1)[0]
	if m.DeviceID != "cam" || !strings.Contains(m.AuthMethod, `"type":"x509"`) {
		t.Fatalf("got %+v", m)
	}
}

// sseEvents reads server-sent events from body and sends each data payload to out.
func sseEvents(body io.Reader, out chan<- []byte) {
	defer close(out)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out <- []byte(data)
		}
	}
}

func (f *telemetryFixture) openStream(t *testing.T, ctx context.Context, query string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/messages/events"+v+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", f.token(t, "service", time.Hour))
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHTTPEventStream(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if _, err := f.tel.Send(ctx, &telemetry.Message{DeviceID: "d1", Body: []byte(fmt.Sprint("before-", i)),
			Properties: []telemetry.Property{{Name: "n", Value: fmt.Sprint(i)}}, MessageID: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}
	sctx, stop := context.WithCancel(ctx)
	resp := f.openStream(t, sctx, "&from=start", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	events := make(chan []byte)
	go sseEvents(resp.Body, events)
	if _, err := f.tel.Send(ctx, &telemetry.Message{DeviceID: "d2", ModuleID: "m", Body: []byte{0xff, 0xfe}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*telemetry.Message{}
	for len(got) < 4 {
		select {
		case data, ok := <-events:
			if !ok {
				t.Fatalf("stream ended after %d events", len(got))
			}
			m, err := telemetry.ParseEventJSON(data)
			if err != nil {
				t.Fatalf("event %s: %v", data, err)
			}
			got[string(m.Body)] = m
		case <-ctx.Done():
			t.Fatalf("only %d events arrived", len(got))
		}
	}
	stop()
	if m := got["before-1"]; m == nil || m.DeviceID != "d1" || m.MessageID != "m1" || props(m)["n"] != "1" || m.SequenceNumber == 0 {
		t.Fatalf("event before-1: %+v", m)
	}
	if m := got["\xff\xfe"]; m == nil || m.DeviceID != "d2" || m.ModuleID != "m" {
		t.Fatalf("binary event from a module: %+v", m)
	}
}

func TestHTTPEventStreamNDJSONFiltersAndCheckpoints(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		for _, dev := range []string{"keep", "skip"} {
			if _, err := f.tel.Send(ctx, &telemetry.Message{DeviceID: dev, Body: []byte(fmt.Sprint(dev, i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := f.do(t, "PUT", "/messages/events/consumergroups/dashboards"+v, f.token(t, "service", time.Hour), nil, "")
	if a.status != 200 || !strings.Contains(string(a.body), `"name":"dashboards"`) {
		t.Fatalf("create group: %d %s", a.status, a.body)
	}
	read := func(query string, n int) []string {
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		resp := f.openStream(t, sctx, query, map[string]string{"Accept": "application/x-ndjson"})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s: %d %s", query, resp.StatusCode, b)
		}
		sc := bufio.NewScanner(resp.Body)
		var out []string
		for len(out) < n && sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			m, err := telemetry.ParseEventJSON(sc.Bytes())
			if err != nil {
				t.Fatalf("line %s: %v", sc.Text(), err)
			}
			out = append(out, string(m.Body))
		}
		return out
	}
	// checkpoint=true stores the position of what was written to the client, when the stream
	// ends at the latest; the next stream from=checkpoint resumes after it.
	first := read("&from=checkpoint&consumerGroup=dashboards&deviceId=keep&checkpoint=true", 4)
	if strings.Join(first, ",") != "keep0,keep1,keep2,keep3" {
		t.Fatalf("first read: %v", first)
	}
	part := telemetry.PartitionOf("keep", 4)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cps, err := f.tel.Checkpoints(ctx, "dashboards")
		if err != nil {
			t.Fatal(err)
		}
		if cp, ok := cps[part]; ok && cp.SequenceNumber > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := f.tel.Send(ctx, &telemetry.Message{DeviceID: "keep", Body: []byte("keep4")}); err != nil {
		t.Fatal(err)
	}
	if rest := read("&from=checkpoint&consumerGroup=dashboards&deviceId=keep", 1); strings.Join(rest, ",") != "keep4" {
		t.Fatalf("resumed read: %v", rest)
	}

	// An explicit checkpoint moves the group back.
	svc := f.token(t, "service", time.Hour)
	r, err := f.tel.NewReader(ctx, telemetry.ReadOptions{DeviceID: "keep", From: telemetry.FromStart})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Next(ctx)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	a = f.do(t, "PUT", fmt.Sprintf("/messages/events/consumergroups/dashboards/checkpoints/%d%s", part, v), svc, nil,
		fmt.Sprintf(`{"sequenceNumber":%d}`, m.SequenceNumber))
	if a.status != 200 || !strings.Contains(string(a.body), fmt.Sprintf(`"sequenceNumber":%d`, m.SequenceNumber)) {
		t.Fatalf("set checkpoint: %d %s", a.status, a.body)
	}
	if again := read("&from=checkpoint&consumerGroup=dashboards&deviceId=keep", 2); strings.Join(again, ",") != "keep1,keep2" {
		t.Fatalf("read after moving the checkpoint: %v", again)
	}
	a = f.do(t, "GET", "/messages/events/consumergroups/dashboards/checkpoints"+v, svc, nil, "")
	if a.status != 200 || !strings.Contains(string(a.body), fmt.Sprintf(`"partition":%d`, part)) {
		t.Fatalf("get checkpoints: %d %s", a.status, a.body)
	}

	a = f.do(t, "GET", "/messages/events/consumergroups"+v, svc, nil, "")
	if a.status != 200 || !strings.Contains(string(a.body), `"$Default"`) || !strings.Contains(string(a.body), `"dashboards"`) {
		t.Fatalf("list groups: %d %s", a.status, a.body)
	}
	errs := []struct {
		name, method, path, token string
		status                    int
		code                      string
	}{
		{"device policy", "GET", "/messages/events" + v, f.token(t, "device", time.Hour), 401, "IotHubUnauthorized"},
		{"unknown group", "GET", "/messages/events" + v + "&consumerGroup=nope", svc, 404, "GenericNotFound"},
		{"bad from", "GET", "/messages/events" + v + "&from=yesterday", svc, 400, "ArgumentInvalid"},
		{"bad partition", "GET", "/messages/events" + v + "&partition=9", svc, 400, "ArgumentInvalid"},
		{"duplicate group", "PUT", "/messages/events/consumergroups/Dashboards" + v, svc, 409, "GenericConflict"},
		{"delete default", "DELETE", "/messages/events/consumergroups/$Default" + v, svc, 400, "InvalidOperation"},
	}
	for _, e := range errs {
		if a := f.do(t, e.method, e.path, e.token, nil, ""); a.status != e.status || a.errorName() != e.code {
			t.Errorf("%s: got %d %s, want %d %s", e.name, a.status, a.body, e.status, e.code)
		}
	}
	if a := f.do(t, "DELETE", "/messages/events/consumergroups/dashboards"+v, svc, nil, ""); a.status != 204 {
		t.Fatalf("delete group: %d %s", a.status, a.body)
	}
}

// TestHTTPEventStreamEndsOnShutdown: closing the pipeline's readers ends open streams, so the
// HTTPS server's graceful shutdown does not wait for them.
func TestHTTPEventStreamEndsOnShutdown(t *testing.T) {
	t.Parallel()
	f := newTelemetryFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := f.openStream(t, ctx, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		ended <- err
	}()
	f.tel.CloseReaders()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-ctx.Done():
		t.Fatal("the stream did not end when the readers were closed")
	}
	if a := f.do(t, "GET", "/messages/events"+v, f.token(t, "service", time.Hour), nil, ""); a.status != 503 {
		t.Fatalf("new stream while shutting down: %d %s", a.status, a.body)
	}
}

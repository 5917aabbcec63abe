package httpapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/methods/methodstest"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
)

// methodNode is one hub node with the REST API and the MQTT device endpoint: a service call
// goes over HTTPS to the API, through the engine to the node holding the device, and over MQTT
// to a real MQTT client.
type methodNode struct {
	*fixture
	mqttAddr string
	caPEM    []byte
	start    time.Time
}

func newMethodNode(t testing.TB, eng *engine.Engine, node string, clk methods.Clock) *methodNode {
	t.Helper()
	n := &methodNode{start: time.Now().Add(-time.Second)}
	mat, err := certs.Load(certs.Options{Dir: filepath.Join(t.TempDir(), "tls"), Hostnames: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	n.caPEM = mat.CAPEM
	// The hub's own ECDSA certificate, as roost serve uses (httptest's RSA one costs far more per
	// handshake).
	n.fixture = newHub(t, hubOptions{eng: eng, metrics: true, telemetry: true, tls: mat.Config.Clone(),
		wire: func(f *fixture, api *httpapi.Config) {
			ms, err := mqtt.New(context.Background(), mqtt.Config{HostName: host, Engine: f.eng, Registry: f.reg, Policies: f.pols,
				Telemetry: f.tel, Diag: f.dw, Metrics: f.m, NodeID: node})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			n.mqttAddr = ln.Addr().String()
			go func() { _ = ms.Serve(tls.NewListener(ln, mat.Config)) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = ms.Shutdown(ctx)
			})
			if api.Methods, err = methods.New(methods.Config{Engine: f.eng, Registry: f.reg, Metrics: f.m, Clock: clk}); err != nil {
				t.Fatal(err)
			}
		}})
	return n
}

// connect connects a device (or module, "dev/mod") over MQTT and subscribes it to direct methods.
// The device answers every call with handle's status and body.
func (n *methodNode) connect(t testing.TB, clientID string, handle func(name string, payload []byte) (int, []byte)) paho.Client {
	t.Helper()
	dev, mod, _ := strings.Cut(clientID, "/")
	var key string
	if mod == "" {
		d, err := n.reg.GetDevice(context.Background(), dev)
		if err != nil {
			d, err = n.reg.CreateDevice(context.Background(), registry.Device{DeviceID: dev})
		}
		if err != nil {
			t.Fatal(err)
		}
		key = d.Authentication.SymmetricKey.PrimaryKey
	} else {
		m, err := n.reg.GetModule(context.Background(), dev, mod)
		if err != nil {
			t.Fatal(err)
		}
		key = m.Authentication.SymmetricKey.PrimaryKey
	}
	tok := deviceSAS(t, dev, mod, key)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(n.caPEM)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + n.mqttAddr).SetClientID(clientID).
		SetUsername(host + "/" + clientID + "/?api-version=2021-04-12").SetPassword(tok).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if ct := c.Connect(); !ct.WaitTimeout(10*time.Second) || ct.Error() != nil {
		t.Fatalf("connect %s: %v", clientID, ct.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	topic := regexp.MustCompile(`^\$iothub/methods/POST/([^/]+)/\?\$rid=(.+)$`)
	st := c.Subscribe("$iothub/methods/POST/#", 0, func(c paho.Client, m paho.Message) {
		sm := topic.FindStringSubmatch(m.Topic())
		if sm == nil {
			return
		}
		status, body := handle(sm[1], m.Payload())
		if status != 0 {
			c.Publish(fmt.Sprintf("$iothub/methods/res/%d/?$rid=%s", status, sm[2]), 0, false, body)
		}
	})
	if !st.WaitTimeout(5*time.Second) || st.Error() != nil {
		t.Fatalf("subscribe: %v", st.Error())
	}
	return c
}

// echo is a device handler that answers 200 with the request's payload, as the Node e2e test's
// device does.
func echo(_ string, payload []byte) (int, []byte) { return 200, payload }

// invoke calls POST /twins/{id}/methods as azure-iothub's invokeDeviceMethod does.
func (n *methodNode) invoke(t testing.TB, path, body string) answer {
	t.Helper()
	return n.do(t.(*testing.T), "POST", path+v, n.token(t.(*testing.T), "service", time.Hour),
		map[string]string{"Content-Type": "application/json; charset=utf-8"}, body)
}

// methodRecord waits for a DirectMethods record that matches.
func (n *methodNode) methodRecord(t *testing.T, match func(diag.Wire, map[string]any) bool) diag.Wire {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var all []diag.Wire
		if err := diag.Read(context.Background(), n.eng, diag.DirectMethods, n.start, func(w diag.Wire) bool { all = append(all, w); return true }); err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			var props map[string]any
			_ = json.Unmarshal([]byte(r.Properties), &props)
			if match(r, props) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching DirectMethods record; have %+v", all)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHTTPMethodPayloadsRoundTrip sends the Node e2e suite's payloads through REST and MQTT: the
// answer is 200 {"status":200,"payload":<the same JSON>}, and each call writes an Information
// DirectMethods record with its sizes.
func TestHTTPMethodPayloadsRoundTrip(t *testing.T) {
	t.Parallel()
	n := newMethodNode(t, enginetest.Start(t), "n1", nil)
	n.connect(t, "echo-dev", echo)
	for _, p := range []any{nil, "", "foo", map[string]any{"k1": "v1"}, map[string]any{}} {
		pj, _ := json.Marshal(p)
		body := fmt.Sprintf(`{"methodName":"method1","payload":%s,"connectTimeoutInSeconds":30,"responseTimeoutInSeconds":45}`, pj)
		a := n.invoke(t, "/twins/echo-dev/methods", body)
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %s %s", pj, a.status, a.header.Get("Content-Type"), a.body)
		}
		var res struct {
			Status  int `json:"status"`
			Payload any `json:"payload"`
		}
		if err := json.Unmarshal(a.body, &res); err != nil || res.Status != 200 || !reflect.DeepEqual(res.Payload, p) {
			t.Fatalf("%s: got %s", pj, a.body)
		}
		if want := `{"status":200,"payload":` + string(pj) + `}`; string(a.body) != want {
			t.Fatalf("body %s, want %s", a.body, want)
		}
	}
	r := n.methodRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "send" && r.Level == "Information" && p["deviceId"] == "echo-dev" && p["RequestSize"] == float64(11) &&
			p["ResponseSize"] == float64(11) && p["sdkVersion"] == "2021-04-12"
	})
	if r.DurationMs == "" || r.ResultType != "" || r.CorrelationID == "" {
		t.Fatalf("record %+v: want durationMs and a correlationId, no resultType", r)
	}
	if got := metricCount(t, n.m, "roost_c2d_methods_success_total"); got != 5 {
		t.Fatalf("c2d.methods.success = %v, want 5", got)
	}
}

func TestHTTPMethodStatusAndModules(t *testing.T) {
	t.Parallel()
	n := newMethodNode(t, enginetest.Start(t), "n1", nil)
	n.connect(t, "gw", func(name string, _ []byte) (int, []byte) {
		if name == "missing" {
			return 404, []byte(`{"error":"no such method"}`)
		}
		return 200, nil
	})
	if _, err := n.reg.CreateModule(context.Background(), registry.Module{DeviceID: "gw", ModuleID: "temp"}); err != nil {
		t.Fatal(err)
	}
	n.connect(t, "gw/temp", func(name string, p []byte) (int, []byte) { return 201, []byte(`"module ` + name + `"`) })
	if a := n.invoke(t, "/twins/gw/methods", `{"methodName":"missing"}`); a.status != 200 || string(a.body) != `{"status":404,"payload":{"error":"no such method"}}` {
		t.Fatalf("device status must pass through with HTTP 200: %d %s", a.status, a.body)
	}
	if a := n.invoke(t, "/twins/gw/methods", `{"methodName":"quiet"}`); a.status != 200 || string(a.body) != `{"status":200,"payload":null}` {
		t.Fatalf("empty device answer: %d %s", a.status, a.body)
	}
	if a := n.invoke(t, "/twins/gw/modules/temp/methods", `{"methodName":"read"}`); a.status != 200 || string(a.body) != `{"status":201,"payload":"module read"}` {
		t.Fatalf("module: %d %s", a.status, a.body)
	}
	n.methodRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.Level == "Information" && p["deviceId"] == "gw" && p["moduleId"] == "temp"
	})
}

var infoBody = regexp.MustCompile(`^\{"Message":"\{\\"errorCode\\":(\d{6}),\\"trackingId\\":\\"([0-9a-f]{32})-TimeStamp:\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\\",\\"message\\":\\"([^"\\]+)\\",\\"info\\":\{\\"timeout\\":\\"(\d\d:\d\d:\d\d)\\"\},\\"timestampUtc\\":\\"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z\\"\}","ExceptionMessage":""\}\n?$`)

// TestHTTPMethodErrors checks every bad request: the exact code and wire name, the body the SDKs
// parse, a DirectMethods record at level Error, and nothing delivered to the device.
func TestHTTPMethodErrors(t *testing.T) {
	t.Parallel()
	n := newMethodNode(t, enginetest.Start(t), "n1", nil)
	delivered := make(chan string, 16)
	n.connect(t, "target", func(name string, _ []byte) (int, []byte) { delivered <- name; return 200, nil })
	if _, err := n.reg.CreateDevice(context.Background(), registry.Device{DeviceID: "sleeper"}); err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", methods.MaxPayload)
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"malformed json", "/twins/target/methods", `{"methodName":"m",`, 400, "IotHubFormatError"},
		{"not an object", "/twins/target/methods", `["m"]`, 400, "IotHubFormatError"},
		{"empty body", "/twins/target/methods", ``, 400, "ArgumentNull"},
		{"no method name", "/twins/target/methods", `{"payload":{}}`, 400, "ArgumentNull"},
		{"illegal characters", "/twins/target/methods", `{"methodName":"re boot"}`, 400, "ArgumentInvalid"},
		{"slash in name", "/twins/target/methods", `{"methodName":"a/b"}`, 400, "ArgumentInvalid"},
		{"payload over 128 KB", "/twins/target/methods", `{"methodName":"m","payload":"` + huge + `"}`, 400, "ArgumentInvalid"},
		{"body over 1 MiB", "/twins/target/methods", `{"methodName":"m","payload":"` + strings.Repeat("y", 1<<20) + `"}`, 413, "GenericRequestEntityTooLarge"},
		{"response timeout too short", "/twins/target/methods", `{"methodName":"m","responseTimeoutInSeconds":4}`, 400, "ArgumentInvalid"},
		{"response timeout too long", "/twins/target/methods", `{"methodName":"m","responseTimeoutInSeconds":301}`, 400, "ArgumentInvalid"},
		{"connect timeout too long", "/twins/target/methods", `{"methodName":"m","connectTimeoutInSeconds":301}`, 400, "ArgumentInvalid"},
		{"negative connect timeout", "/twins/target/methods", `{"methodName":"m","connectTimeoutInSeconds":-1}`, 400, "ArgumentInvalid"},
		{"unknown device", "/twins/ghost/methods", `{"methodName":"m"}`, 404, "DeviceNotFound"},
		{"unknown module", "/twins/target/modules/nope/methods", `{"methodName":"m"}`, 404, "ModuleNotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := n.invoke(t, tt.path, tt.body)
			if a.status != tt.status || a.header.Get("iothub-errorcode") != tt.code || a.errorName() != tt.code {
				t.Fatalf("got %d %s %.300s, want %d %s", a.status, a.header.Get("iothub-errorcode"), a.body, tt.status, tt.code)
			}
			if !errorBodyShape.Match(a.body) {
				t.Fatalf("body %.300s is not IoT Hub's error body", a.body)
			}
			id := trackingID(a)
			n.methodRecord(t, func(r diag.Wire, _ map[string]any) bool {
				return r.CorrelationID == id && r.Level == "Error" && r.OperationName == "send" && r.ResultDescription != ""
			})
		})
	}
	// A policy without ServiceConnect: 401, recorded too.
	a := n.do(t, "POST", "/twins/target/methods"+v, n.token(t, "registryReadWrite", time.Hour), nil, `{"methodName":"m"}`)
	if a.status != 401 {
		t.Fatalf("registryReadWrite policy: %d %s", a.status, a.body)
	}
	select {
	case name := <-delivered:
		t.Fatalf("a bad request reached the device (%s)", name)
	default:
	}

	// 404103: a registered device that is not connected. IoT Hub's JSON-in-JSON body with
	// info.timeout, and the same iothub-errorcode header.
	a = n.invoke(t, "/twins/sleeper/methods", `{"methodName":"m","payload":{"a":1}}`)
	sm := infoBody.FindSubmatch(a.body)
	if a.status != 404 || a.header.Get("iothub-errorcode") != "DeviceNotOnline" || sm == nil ||
		string(sm[1]) != "404103" || string(sm[3]) != "Timed out waiting for device to connect." || string(sm[4]) != "00:00:00" {
		t.Fatalf("404103: %d %s %s", a.status, a.header.Get("iothub-errorcode"), a.body)
	}
	n.methodRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.CorrelationID == string(sm[2]) && r.Level == "Error" && r.ResultType == "404103" &&
			r.ResultDescription == "DeviceNotOnline" && p["deviceId"] == "sleeper" && p["RequestSize"] == float64(7) && p["statusCode"] == "404"
	})
	if got := metricCount(t, n.m, "roost_c2d_methods_failure_total"); got < 13 {
		t.Fatalf("c2d.methods.failure = %v", got)
	}
}

// TestHTTPMethodGatewayTimeout: a device that never answers gives 504101 once the response
// timeout has passed (a fake clock makes the 5 s pass at once).
func TestHTTPMethodGatewayTimeout(t *testing.T) {
	t.Parallel()
	clk := methodstest.NewClock()
	n := newMethodNode(t, enginetest.Start(t), "n1", clk)
	got := make(chan struct{}, 1)
	n.connect(t, "stuck", func(string, []byte) (int, []byte) { got <- struct{}{}; return 0, nil })
	ch := make(chan answer, 1)
	go func() { ch <- n.invoke(t, "/twins/stuck/methods", `{"methodName":"m","responseTimeoutInSeconds":5}`) }()
	<-got
	clk.WaitTimer(t, 5*time.Second)
	clk.Advance(5 * time.Second)
	a := <-ch
	sm := infoBody.FindSubmatch(a.body)
	if a.status != 504 || a.header.Get("iothub-errorcode") != "GatewayTimeout" || sm == nil || string(sm[1]) != "504101" || string(sm[4]) != "00:00:05" {
		t.Fatalf("504101: %d %s", a.status, a.body)
	}
	n.methodRecord(t, func(r diag.Wire, _ map[string]any) bool {
		return r.CorrelationID == string(sm[2]) && r.ResultType == "504101" && r.ResultDescription == "GatewayTimeout"
	})
}

// TestHTTPMethodAcrossNodes: the service calls node b; the device is connected to node a; both
// share one NATS server. A device that connects to a while a call with connectTimeout waits on b
// gets the call.
func TestHTTPMethodAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := newMethodNode(t, ext.Connect(t), "a", nil)
	b := newMethodNode(t, ext.Connect(t), "b", nil)
	a.connect(t, "roamer", echo)
	if r := b.invoke(t, "/twins/roamer/methods", `{"methodName":"where","payload":{"node":"b"}}`); r.status != 200 || string(r.body) != `{"status":200,"payload":{"node":"b"}}` {
		t.Fatalf("across nodes: %d %s", r.status, r.body)
	}
	if _, err := a.reg.CreateDevice(context.Background(), registry.Device{DeviceID: "latecomer"}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan answer, 1)
	go func() {
		ch <- b.invoke(t, "/twins/latecomer/methods", `{"methodName":"hello","payload":"hi","connectTimeoutInSeconds":20}`)
	}()
	time.Sleep(300 * time.Millisecond)
	a.connect(t, "latecomer", echo)
	select {
	case r := <-ch:
		if r.status != 200 || string(r.body) != `{"status":200,"payload":"hi"}` {
			t.Fatalf("waiting call: %d %s", r.status, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call did not reach the device that connected")
	}
	b.methodRecord(t, func(r diag.Wire, p map[string]any) bool {
		return r.Level == "Information" && p["deviceId"] == "latecomer"
	})
}

func metricCount(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

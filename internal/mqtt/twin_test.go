package mqtt_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/twin"
)

var _ mqtt.Twins = (*twin.Store)(nil)

// twinsRef hands the MQTT server a twin store that is opened after the server, on the registry
// the test hub makes.
type twinsRef struct{ atomic.Pointer[twin.Store] }

func (r *twinsRef) DeviceDocument(ctx context.Context, dev, mod, gen string) ([]byte, error) {
	return r.Load().DeviceDocument(ctx, dev, mod, gen)
}

func (r *twinsRef) UpdateReported(ctx context.Context, dev, mod, gen string, patch []byte) (int64, error) {
	return r.Load().UpdateReported(ctx, dev, mod, gen, patch)
}

func (r *twinsRef) DesiredVersion(ctx context.Context, dev, mod, gen string) (int64, error) {
	return r.Load().DesiredVersion(ctx, dev, mod, gen)
}

func (r *twinsRef) DesiredNotification(change []byte, gen string, after int64) (int64, []byte, bool) {
	return r.Load().DesiredNotification(change, gen, after)
}

// twinHub is a test hub whose MQTT server serves twins.
type twinHub struct {
	*hub
	twins *twin.Store
}

func startTwinHub(t *testing.T, h func(cfg mqtt.Config) *hub, nodeID string) *twinHub {
	t.Helper()
	ref := &twinsRef{}
	th := &twinHub{hub: h(mqtt.Config{NodeID: nodeID, Twins: ref})}
	var err error
	if th.twins, err = twin.Open(context.Background(), th.eng, twin.Config{Registry: th.reg}); err != nil {
		t.Fatal(err)
	}
	ref.Store(th.twins)
	return th
}

// msg is a message the device received.
type msg struct {
	topic   string
	payload string
}

// twinDevice connects a device (or module) and subscribes it to twin responses and desired
// property notifications, as the SDKs do.
func twinDevice(t *testing.T, h *twinHub, clientID, password string) (paho.Client, chan msg) {
	t.Helper()
	c, err := h.client(t, clientID, password, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan msg, 64)
	for _, f := range []string{"$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"} {
		tok := c.Subscribe(f, 0, func(_ paho.Client, m paho.Message) { ch <- msg{m.Topic(), string(m.Payload())} })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return c, ch
}

func publish(t *testing.T, c paho.Client, topic string, qos byte, body string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, body)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func receive(t *testing.T, ch <-chan msg) msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message for the device")
	}
	return msg{}
}

func jsonEqual(t *testing.T, want, got string) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got %q: %v", got, err)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Fatalf("body (-want +got):\n%s", diff)
	}
}

func TestMQTTTwinAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := startTwinHub(t, func(cfg mqtt.Config) *hub { return startHub(t, ext.Connect(t), cfg) }, "a")
	b := startTwinHub(t, func(cfg mqtt.Config) *hub { return startHub(t, ext.Connect(t), cfg) }, "b")
	ctx := context.Background()
	d := a.device(t, "dev.1")
	c, ch := twinDevice(t, a, "dev.1", deviceToken(t, d, time.Hour))

	// GET: the Node SDK sends a body of one space at QoS 0; Python sends QoS 1.
	publish(t, c, "$iothub/twin/GET/?$rid=6d1b2a3c-0000-4000-8000-000000000001", 0, " ")
	m := receive(t, ch)
	if m.topic != "$iothub/twin/res/200/?$rid=6d1b2a3c-0000-4000-8000-000000000001" {
		t.Fatalf("GET answer on %q", m.topic)
	}
	jsonEqual(t, `{"desired":{"$version":1},"reported":{"$version":1}}`, m.payload)

	// Reported PATCH: 204 with the new $version after the rid, empty body.
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=2", 1, `{"temp":21.5,"fw":{"v":"1.0"}}`)
	m = receive(t, ch)
	if m.topic != "$iothub/twin/res/204/?$rid=2&$version=2" || m.payload != "" {
		t.Fatalf("PATCH answer %q %q", m.topic, m.payload)
	}

	// A desired change made through the other node reaches the device on this one.
	if _, err := b.twins.Update(ctx, "dev.1", "", []byte(`{"properties":{"desired":{"fan":{"speed":3}}}}`), ""); err != nil {
		t.Fatal(err)
	}
	m = receive(t, ch)
	if m.topic != "$iothub/twin/PATCH/properties/desired/?$version=2" {
		t.Fatalf("desired notification on %q", m.topic)
	}
	jsonEqual(t, `{"fan":{"speed":3},"$version":2}`, m.payload)
	// Tag changes and the device's own reported changes are not pushed.
	if _, err := b.twins.Update(ctx, "dev.1", "", []byte(`{"tags":{"site":"x"}}`), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.twins.Update(ctx, "dev.1", "", []byte(`{"properties":{"desired":{"fan":null}}}`), ""); err != nil {
		t.Fatal(err)
	}
	m = receive(t, ch)
	if m.topic != "$iothub/twin/PATCH/properties/desired/?$version=3" {
		t.Fatalf("second notification on %q", m.topic)
	}
	jsonEqual(t, `{"fan":null,"$version":3}`, m.payload)

	// The service on the other node sees the reported properties.
	tw, err := b.twins.Get(ctx, "dev.1", "")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	raw, _ := json.Marshal(tw)
	_ = json.Unmarshal(raw, &got)
	rep := got["properties"].(map[string]any)["reported"].(map[string]any)
	if rep["temp"] != 21.5 || rep["$version"] != 2.0 {
		t.Fatalf("reported as the service sees it: %v", rep)
	}

	// GET again sees it all.
	publish(t, c, "$iothub/twin/GET/?$rid=3", 0, "")
	m = receive(t, ch)
	jsonEqual(t, `{"desired":{"$version":3},"reported":{"temp":21.5,"fw":{"v":"1.0"},"$version":2}}`, m.payload)

	// Each operation wrote a D2CTwinOperations record.
	a.waitRecord(t, diag.D2CTwinOperations, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "update" && r.Level == "Information" && p["deviceId"] == "dev.1" &&
			p["protocol"] == "Mqtt" && strings.Contains(p["authenticationType"].(string), `"scope":"device"`)
	})
	a.waitRecord(t, diag.D2CTwinOperations, func(r diag.Wire, p map[string]any) bool {
		return r.OperationName == "read" && r.Level == "Information" && p["deviceId"] == "dev.1"
	})
}

func TestMQTTTwinBadRequestsFailTheRequestNotTheConnection(t *testing.T) {
	t.Parallel()
	h := startTwinHub(t, func(cfg mqtt.Config) *hub { return startHub(t, enginetest.Start(t), cfg) }, "n")
	d := h.device(t, "dev-1")
	c, ch := twinDevice(t, h, "dev-1", deviceToken(t, d, time.Hour))
	big := `{"k":"` + strings.Repeat("x", 4000) + `"`
	for i := range 9 {
		big += `,"k` + string(rune('0'+i)) + `":"` + strings.Repeat("x", 4000) + `"`
	}
	big += "}"
	cases := []struct {
		name, topic, body string
		status            string
		code              float64
	}{
		{"malformed JSON", "$iothub/twin/PATCH/properties/reported/?$rid=1", `{"a":`, "400", 400006},
		{"not an object", "$iothub/twin/PATCH/properties/reported/?$rid=2", `"x"`, "400", 400006},
		{"bad key", "$iothub/twin/PATCH/properties/reported/?$rid=3", `{"a.b":1}`, "400", 400004},
		{"too deep", "$iothub/twin/PATCH/properties/reported/?$rid=4", strings.Repeat(`{"a":`, 13) + "1" + strings.Repeat("}", 13), "400", 400004},
		{"too big", "$iothub/twin/PATCH/properties/reported/?$rid=5", big, "403", 403100},
		{"no rid", "$iothub/twin/GET/", "", "400", 400004},
	}
	for _, tc := range cases {
		publish(t, c, tc.topic, 0, tc.body)
		m := receive(t, ch)
		rid := tc.topic[strings.Index(tc.topic, "?$rid=")+6:]
		if strings.HasSuffix(tc.topic, "/") {
			rid = ""
		}
		if want := "$iothub/twin/res/" + tc.status + "/?$rid=" + rid; m.topic != want {
			t.Fatalf("%s: answer on %q, want %q", tc.name, m.topic, want)
		}
		var body map[string]any
		if err := json.Unmarshal([]byte(m.payload), &body); err != nil || body["errorCode"] != tc.code || body["message"] == "" {
			t.Fatalf("%s: body %s, want errorCode %v and a message", tc.name, m.payload, tc.code)
		}
		h.waitRecord(t, diag.D2CTwinOperations, func(r diag.Wire, p map[string]any) bool {
			return r.Level == "Error" && r.ResultType == strconv.Itoa(int(tc.code)) &&
				p["deviceId"] == "dev-1" && r.CorrelationID == body["trackingId"]
		})
	}
	// Nothing changed and the connection still works.
	publish(t, c, "$iothub/twin/GET/?$rid=ok", 1, " ")
	m := receive(t, ch)
	if m.topic != "$iothub/twin/res/200/?$rid=ok" {
		t.Fatalf("GET after bad requests answered on %q", m.topic)
	}
	jsonEqual(t, `{"desired":{"$version":1},"reported":{"$version":1}}`, m.payload)
}

func TestMQTTModuleTwin(t *testing.T) {
	t.Parallel()
	h := startTwinHub(t, func(cfg mqtt.Config) *hub { return startHub(t, enginetest.Start(t), cfg) }, "n")
	ctx := context.Background()
	h.device(t, "gw")
	mod, err := h.reg.CreateModule(ctx, registry.Module{DeviceID: "gw", ModuleID: "filter"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sas.Sign(sas.DeviceResource(hubHost, "gw", "filter"), mod.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, ch := twinDevice(t, h, "gw/filter", tok)
	publish(t, c, "$iothub/twin/PATCH/properties/reported/?$rid=1", 0, `{"state":"on"}`)
	if m := receive(t, ch); m.topic != "$iothub/twin/res/204/?$rid=1&$version=2" {
		t.Fatalf("module PATCH answered on %q", m.topic)
	}
	if _, err := h.twins.Update(ctx, "gw", "filter", []byte(`{"properties":{"desired":{"threshold":7}}}`), ""); err != nil {
		t.Fatal(err)
	}
	// The device's own twin is another twin: a change there is not the module's.
	if _, err := h.twins.Update(ctx, "gw", "", []byte(`{"properties":{"desired":{"other":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch)
	if m.topic != "$iothub/twin/PATCH/properties/desired/?$version=2" {
		t.Fatalf("module notification on %q", m.topic)
	}
	jsonEqual(t, `{"threshold":7,"$version":2}`, m.payload)
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %q %q", m.topic, m.payload)
	case <-time.After(200 * time.Millisecond):
	}
	tw, err := h.twins.Get(ctx, "gw", "filter")
	if err != nil {
		t.Fatal(err)
	}
	if tw.ReportedVersion() != 2 || tw.ModuleID() != "filter" {
		t.Fatalf("module twin: reported $version %d module %q", tw.ReportedVersion(), tw.ModuleID())
	}
}

func TestMQTTTwinUnsubscribeStopsNotifications(t *testing.T) {
	t.Parallel()
	h := startTwinHub(t, func(cfg mqtt.Config) *hub { return startHub(t, enginetest.Start(t), cfg) }, "n")
	ctx := context.Background()
	d := h.device(t, "d")
	c, ch := twinDevice(t, h, "d", deviceToken(t, d, time.Hour))
	if tok := c.Unsubscribe("$iothub/twin/PATCH/properties/desired/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if _, err := h.twins.Update(ctx, "d", "", []byte(`{"properties":{"desired":{"x":1}}}`), ""); err != nil {
		t.Fatal(err)
	}
	// Without the response subscription GET answers do not arrive either.
	if tok := c.Unsubscribe("$iothub/twin/res/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	publish(t, c, "$iothub/twin/GET/?$rid=1", 0, "")
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %q %q", m.topic, m.payload)
	case <-time.After(300 * time.Millisecond):
	}
	// Subscribing again starts after the current version: the change made meanwhile is read
	// with GET, not pushed.
	tok := c.Subscribe("$iothub/twin/PATCH/properties/desired/#", 0, func(_ paho.Client, m paho.Message) {
		ch <- msg{m.Topic(), string(m.Payload())}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if _, err := h.twins.Update(ctx, "d", "", []byte(`{"properties":{"desired":{"y":2}}}`), ""); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch)
	if m.topic == "$iothub/twin/PATCH/properties/desired/?$version=2" {
		// On a loaded machine the engine may hand over the change made while unsubscribed just
		// as the device subscribes again; pushing it late is harmless (versions still rise).
		m = receive(t, ch)
	}
	if m.topic != "$iothub/twin/PATCH/properties/desired/?$version=3" {
		t.Fatalf("notification after resubscribing on %q", m.topic)
	}
	jsonEqual(t, `{"y":2,"$version":3}`, m.payload)
}

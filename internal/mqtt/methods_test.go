package mqtt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/methods/methodstest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/sas"
)

// methodTopic is the exact topic the SDK parsers accept (spec/device-protocol.md 4.1).
var methodTopic = regexp.MustCompile(`^\$iothub/methods/POST/([^/]+)/\?\$rid=([0-9a-f]+)$`)

// methodCall is a request as the device saw it.
type methodCall struct {
	topic, name, rid string
	qos              byte
	payload          []byte
}

// methodDevice subscribes a device to direct methods the way the Node SDK does (QoS 0) and hands
// every request to the returned channel.
func methodDevice(t *testing.T, c paho.Client) <-chan methodCall {
	t.Helper()
	calls := make(chan methodCall, 256)
	tok := c.Subscribe("$iothub/methods/POST/#", 0, func(_ paho.Client, m paho.Message) {
		mc := methodCall{topic: m.Topic(), qos: m.Qos(), payload: append([]byte(nil), m.Payload()...)}
		if sm := methodTopic.FindStringSubmatch(m.Topic()); sm != nil {
			mc.name, mc.rid = sm[1], sm[2]
		}
		calls <- mc
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return calls
}

// respond answers a call as the Node SDK does: $iothub/methods/res/{status}/?$rid={rid}.
func respond(t *testing.T, c paho.Client, qos byte, status, rid string, body []byte) {
	t.Helper()
	tok := c.Publish("$iothub/methods/res/"+status+"/?$rid="+rid, qos, false, body)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish response: %v", tok.Error())
	}
}

func nextCall(t *testing.T, calls <-chan methodCall) methodCall {
	t.Helper()
	select {
	case mc := <-calls:
		return mc
	case <-time.After(10 * time.Second):
		t.Fatal("the device received no method request")
		return methodCall{}
	}
}

func newMethods(t *testing.T, h *hub, clk methods.Clock) *methods.Service {
	t.Helper()
	svc, err := methods.New(methods.Config{Engine: h.eng, Registry: h.reg, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

type invoked struct {
	res methods.Result
	err error
}

func invokeAsync(svc *methods.Service, c methods.Call) <-chan invoked {
	ch := make(chan invoked, 1)
	go func() {
		r, err := svc.Invoke(context.Background(), c)
		ch <- invoked{r, err}
	}()
	return ch
}

func waitInvoked(t *testing.T, ch <-chan invoked) invoked {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not return")
		return invoked{}
	}
}

func wantErrCode(t *testing.T, err error, code errcode.Code) {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want %d", err, code)
	}
}

// TestMQTTMethodPayloadsRoundTrip runs the Node e2e suite's payloads (null, "", "foo",
// {k1:"v1"}, {}) through a device that echoes them: the device receives exactly the caller's
// JSON and the caller gets exactly the device's, with the device's status.
func TestMQTTMethodPayloadsRoundTrip(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "echo")
	c, err := h.client(t, "echo", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	go func() {
		for mc := range calls {
			c.Publish("$iothub/methods/res/200/?$rid="+mc.rid, 0, false, mc.payload)
		}
	}()
	svc := newMethods(t, h, nil)
	for _, p := range []any{nil, "", "foo", map[string]any{"k1": "v1"}, map[string]any{}} {
		body, _ := json.Marshal(p)
		res, err := svc.Invoke(context.Background(), methods.Call{DeviceID: "echo", MethodName: "method1", Payload: body,
			ResponseTimeout: 45 * time.Second, ConnectTimeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		var got any
		if err := json.Unmarshal(res.Payload, &got); err != nil || !reflect.DeepEqual(got, p) || res.Status != 200 {
			t.Fatalf("payload %s: got %d %s", body, res.Status, res.Payload)
		}
	}
}

func TestMQTTMethodRequestTopicAndStatus(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "dev-topic")
	c, err := h.client(t, "dev-topic", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	svc := newMethods(t, h, nil)
	for i, status := range []string{"200", "404", "-1", "0", "2147483647"} {
		ch := invokeAsync(svc, methods.Call{DeviceID: "dev-topic", MethodName: "set.Point_1-a*b", Payload: []byte(`{ "t" : 21.5 }`)})
		mc := nextCall(t, calls)
		if mc.name != "set.Point_1-a*b" || mc.qos != 0 || string(mc.payload) != `{ "t" : 21.5 }` {
			t.Fatalf("request %d: topic %q qos %d payload %s", i, mc.topic, mc.qos, mc.payload)
		}
		respond(t, c, 0, status, mc.rid, []byte(`{"ok":true}`))
		r := waitInvoked(t, ch)
		if r.err != nil || fmt.Sprint(r.res.Status) != status || string(r.res.Payload) != `{"ok":true}` {
			t.Fatalf("status %s: got %+v", status, r)
		}
	}
	// An empty answer is null; a QoS 1 answer (the Python SDK's) is acknowledged.
	ch := invokeAsync(svc, methods.Call{DeviceID: "dev-topic", MethodName: "m"})
	mc := nextCall(t, calls)
	if string(mc.payload) != "null" {
		t.Fatalf("a call without payload must reach the device as null, got %q", mc.payload)
	}
	respond(t, c, 1, "204", mc.rid, nil) // waits for the PUBACK
	if r := waitInvoked(t, ch); r.err != nil || r.res.Status != 204 || string(r.res.Payload) != "null" {
		t.Fatalf("empty answer: %+v", r)
	}
	// A status that is not an integer fails the call with 502000 and leaves the device connected.
	ch = invokeAsync(svc, methods.Call{DeviceID: "dev-topic", MethodName: "m"})
	mc = nextCall(t, calls)
	respond(t, c, 0, "ok", mc.rid, nil)
	wantErrCode(t, waitInvoked(t, ch).err, errcode.GenericBadGateway)
	// An answer that is not JSON is 502000 too.
	ch = invokeAsync(svc, methods.Call{DeviceID: "dev-topic", MethodName: "m"})
	mc = nextCall(t, calls)
	respond(t, c, 0, "200", mc.rid, []byte("plain text"))
	wantErrCode(t, waitInvoked(t, ch).err, errcode.GenericBadGateway)
	// Answers to unknown request ids are dropped.
	respond(t, c, 1, "200", "ffff", []byte(`1`))
	respond(t, c, 0, "200", "", []byte(`1`))
	if !c.IsConnectionOpen() {
		t.Fatal("the device was disconnected")
	}
	ch = invokeAsync(svc, methods.Call{DeviceID: "dev-topic", MethodName: "m"})
	mc = nextCall(t, calls)
	respond(t, c, 0, "200", mc.rid, []byte(`2`))
	if r := waitInvoked(t, ch); r.err != nil || string(r.res.Payload) != "2" {
		t.Fatalf("after bad answers: %+v", r)
	}
}

func TestMQTTMethodToModule(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	h.device(t, "edge")
	m, err := h.reg.CreateModule(context.Background(), registry.Module{DeviceID: "edge", ModuleID: "filter"})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := sas.Sign(sas.DeviceResource(hubHost, "edge", "filter"), m.Authentication.SymmetricKey.PrimaryKey, "", time.Now().Add(time.Hour))
	c, err := h.client(t, "edge/filter", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	svc := newMethods(t, h, nil)
	// The device itself is not listening: only the module is.
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "edge", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceNotOnline)
	ch := invokeAsync(svc, methods.Call{DeviceID: "edge", ModuleID: "filter", MethodName: "m", Payload: []byte(`"x"`)})
	mc := nextCall(t, calls)
	respond(t, c, 0, "200", mc.rid, mc.payload)
	if r := waitInvoked(t, ch); r.err != nil || string(r.res.Payload) != `"x"` {
		t.Fatalf("module call: %+v", r)
	}
}

// TestMQTTMethodNotListening covers 404103: connected without a method subscription, and after
// unsubscribing.
func TestMQTTMethodNotListening(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "deaf")
	c, err := h.client(t, "deaf", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := newMethods(t, h, nil)
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "deaf", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceNotOnline)
	calls := methodDevice(t, c)
	ch := invokeAsync(svc, methods.Call{DeviceID: "deaf", MethodName: "m"})
	respond(t, c, 0, "200", nextCall(t, calls).rid, nil)
	if r := waitInvoked(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
	if tok := c.Unsubscribe("$iothub/methods/POST/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("unsubscribe: %v", tok.Error())
	}
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "deaf", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceNotOnline)
	// Subscribing again makes it reachable again.
	calls = methodDevice(t, c)
	ch = invokeAsync(svc, methods.Call{DeviceID: "deaf", MethodName: "m"})
	respond(t, c, 0, "200", nextCall(t, calls).rid, nil)
	if r := waitInvoked(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestMQTTMethodNoAnswer covers 504101 for a device that never answers, the late answer that
// follows, and a device that disconnects with a call in flight.
func TestMQTTMethodNoAnswer(t *testing.T) {
	t.Parallel()
	h := startHub(t, enginetest.Start(t), mqtt.Config{})
	d := h.device(t, "mute")
	c, err := h.client(t, "mute", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	clk := methodstest.NewClock()
	svc := newMethods(t, h, clk)
	ch := invokeAsync(svc, methods.Call{DeviceID: "mute", MethodName: "m", ResponseTimeout: 5 * time.Second})
	mc := nextCall(t, calls)
	clk.WaitTimer(t, 5*time.Second)
	clk.Advance(5 * time.Second)
	wantErrCode(t, waitInvoked(t, ch).err, errcode.GatewayTimeout)
	// The late answer is dropped and the device stays connected and reachable.
	respond(t, c, 0, "200", mc.rid, []byte(`"late"`))
	ch = invokeAsync(svc, methods.Call{DeviceID: "mute", MethodName: "m"})
	respond(t, c, 0, "200", nextCall(t, calls).rid, []byte(`"on time"`))
	if r := waitInvoked(t, ch); r.err != nil || string(r.res.Payload) != `"on time"` {
		t.Fatalf("after a late answer: %+v", r)
	}

	// A device that goes away with a call in flight: the caller learns at once, not after 300 s.
	ch = invokeAsync(svc, methods.Call{DeviceID: "mute", MethodName: "m", ResponseTimeout: 300 * time.Second})
	nextCall(t, calls)
	c.Disconnect(0)
	r := waitInvoked(t, ch)
	wantErrCode(t, r.err, errcode.GatewayTimeout)
	var rt *methods.ResponseTimedOut
	if !errors.As(r.err, &rt) {
		t.Fatalf("cause %v", r.err)
	}
}

// TestMQTTMethodInflightLimit checks that one connection holds at most 100 unanswered calls:
// the next is refused with 403800, and calls whose callers gave up make room again.
func TestMQTTMethodInflightLimit(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var mu sync.Mutex
	h := startHub(t, enginetest.Start(t), mqtt.Config{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	d := h.device(t, "swamped")
	c, err := h.client(t, "swamped", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	clk := methodstest.NewClock()
	svc := newMethods(t, h, clk)
	var pending []<-chan invoked
	for i := 0; i < 100; i++ {
		pending = append(pending, invokeAsync(svc, methods.Call{DeviceID: "swamped", MethodName: "m", ResponseTimeout: 5 * time.Second}))
	}
	for i := 0; i < 100; i++ {
		nextCall(t, calls)
	}
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "swamped", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceMaximumInflightMethodExceeded)
	// The callers give up after 5 s; the connection drops their calls when it needs room.
	clk.Advance(5 * time.Second)
	for _, ch := range pending {
		wantErrCode(t, waitInvoked(t, ch).err, errcode.GatewayTimeout)
	}
	mu.Lock()
	now = now.Add(6 * time.Second)
	mu.Unlock()
	ch := invokeAsync(svc, methods.Call{DeviceID: "swamped", MethodName: "m"})
	respond(t, c, 0, "200", nextCall(t, calls).rid, nil)
	if r := waitInvoked(t, ch); r.err != nil {
		t.Fatalf("after expiry: %v", r.err)
	}
}

// TestMQTTMethodAcrossNodes invokes on node b a device connected to node a, both on one NATS
// server, and waits on b (connectTimeout) for a device that connects to a later.
func TestMQTTMethodAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "a"})
	b := startHub(t, ext.Connect(t), mqtt.Config{NodeID: "b"})
	d := a.device(t, "far")
	c, err := a.client(t, "far", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := methodDevice(t, c)
	svc := newMethods(t, b, nil)
	ch := invokeAsync(svc, methods.Call{DeviceID: "far", MethodName: "ping", Payload: []byte(`{"from":"b"}`)})
	mc := nextCall(t, calls)
	respond(t, c, 0, "200", mc.rid, mc.payload)
	if r := waitInvoked(t, ch); r.err != nil || string(r.res.Payload) != `{"from":"b"}` {
		t.Fatalf("across nodes: %+v", r)
	}

	// A device that connects after the call started, within connectTimeout.
	late := a.device(t, "late-comer")
	start := time.Now()
	ch = invokeAsync(svc, methods.Call{DeviceID: "late-comer", MethodName: "hello", ConnectTimeout: 20 * time.Second})
	time.Sleep(300 * time.Millisecond)
	lc, err := a.client(t, "late-comer", deviceToken(t, late, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	lcalls := methodDevice(t, lc)
	select {
	case r := <-ch:
		t.Fatalf("the waiting call returned before the device got it: %+v", r)
	case mc = <-lcalls:
	case <-time.After(10 * time.Second):
		t.Fatal("the late device received no method request")
	}
	respond(t, lc, 0, "201", mc.rid, []byte(`"hi"`))
	r := waitInvoked(t, ch)
	if r.err != nil || r.res.Status != 201 {
		t.Fatalf("late device: %+v", r)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the waiting call took %s; the device's subscription should have woken it", el)
	}
	// Unknown device on the other node: 404001; offline: 404103.
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "nobody", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceNotFound)
	c.Disconnect(100)
	waitState(t, a, "far", "Disconnected")
	_, err = svc.Invoke(context.Background(), methods.Call{DeviceID: "far", MethodName: "m"})
	wantErrCode(t, err, errcode.DeviceNotOnline)
}

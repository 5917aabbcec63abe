package mqtt_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
)

// c2dHub is one node with cloud-to-device messaging: the harness of server_test.go plus a
// c2d.Service wired to the MQTT server.
type c2dHub struct {
	*hub
	c2d *c2d.Service
}

func startC2DHub(t testing.TB, eng *engine.Engine, node string, ccfg c2d.Config) *c2dHub {
	t.Helper()
	var svc *c2d.Service
	h := startHubWith(t, eng, mqtt.Config{NodeID: node}, func(h *hub, cfg *mqtt.Config) func() {
		ccfg.Registry, ccfg.Diag = h.reg, h.dw
		var err error
		if svc, err = c2d.Open(context.Background(), eng, ccfg); err != nil {
			t.Fatal(err)
		}
		cfg.C2D = svc
		return svc.Close
	})
	return &c2dHub{hub: h, c2d: svc}
}

func (h *c2dHub) send(t *testing.T, dev string, m c2d.Message) c2d.Message {
	t.Helper()
	out, err := h.c2d.Send(context.Background(), dev, m)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return out
}

func (h *c2dHub) waitDepth(t *testing.T, dev string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := h.c2d.Depth(context.Background(), dev)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("depth of %s is %d (%v), want %d", dev, n, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// c2dReceived is what the device saw.
type c2dReceived struct {
	topic   string
	qos     byte
	dup     bool
	payload string
}

func subscribeC2D(t *testing.T, c paho.Client, dev string, qos byte) chan c2dReceived {
	t.Helper()
	ch := make(chan c2dReceived, 100)
	tok := c.Subscribe("devices/"+dev+"/messages/devicebound/#", qos, func(_ paho.Client, m paho.Message) {
		ch <- c2dReceived{topic: m.Topic(), qos: m.Qos(), dup: m.Duplicate(), payload: string(m.Payload())}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return ch
}

func nextC2D(t *testing.T, ch chan c2dReceived) c2dReceived {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no cloud-to-device message")
		return c2dReceived{}
	}
}

// parseBag takes a delivered topic apart as the Node SDK does: the fifth '/'-segment, split on
// '&' then '=', each part URI-decoded.
func parseBag(t *testing.T, topic string) [][2]string {
	t.Helper()
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[3] != "devicebound" || strings.Contains(topic, "?") {
		t.Fatalf("topic %q is not devices/{id}/messages/devicebound/{bag}", topic)
	}
	var out [][2]string
	for _, kv := range strings.Split(parts[4], "&") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("key without value in %q", topic)
		}
		dk, err1 := url.PathUnescape(k)
		dv, err2 := url.PathUnescape(v)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad escape in %q", topic)
		}
		out = append(out, [2]string{dk, dv})
	}
	return out
}

func TestMQTTC2DDeliveryTopicAndCompletion(t *testing.T) {
	t.Parallel()
	h := startC2DHub(t, enginetest.Start(t), "n1", c2d.Config{})
	d := h.device(t, "car-1")
	c, err := h.client(t, "car-1", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := subscribeC2D(t, c, "car-1", 1)
	expiry := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	h.send(t, "car-1", c2d.Message{
		MessageID: "m-1", CorrelationID: "c/1&x=y", UserID: "ops", ContentType: "application/json", ContentEncoding: "utf-8",
		Ack: c2d.AckFull, Expiry: expiry, Body: []byte(`{"lights":"on"}`),
		Properties: []c2d.Property{{Name: "Color", Value: "dark red"}, {Name: "path", Value: "/a/b?c=%"}},
	})
	got := nextC2D(t, ch)
	want := "devices/car-1/messages/devicebound/Color=dark%20red&path=%2Fa%2Fb%3Fc%3D%25&%24.mid=m-1" +
		"&%24.to=%2Fdevices%2Fcar-1%2Fmessages%2FdeviceBound&%24.cid=c%2F1%26x%3Dy&%24.uid=ops" +
		"&%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=" + strings.ReplaceAll(c2d.FormatTime(expiry), ":", "%3A") + "&iothub-ack=full"
	if got.topic != want {
		t.Fatalf("topic\n got %s\nwant %s", got.topic, want)
	}
	if got.qos != 1 || got.dup || got.payload != `{"lights":"on"}` {
		t.Fatalf("%+v", got)
	}
	bag := parseBag(t, got.topic)
	if bag[0] != [2]string{"Color", "dark red"} || bag[1] != [2]string{"path", "/a/b?c=%"} || bag[3] != [2]string{"$.to", "/devices/car-1/messages/deviceBound"} ||
		bag[4] != [2]string{"$.cid", "c/1&x=y"} || len(c2d.FormatTime(expiry)) != len("2006-01-02T15:04:05.0000000Z") {
		t.Fatalf("bag %v", bag)
	}
	// paho acknowledged it: completed, with Success feedback.
	h.waitDepth(t, "car-1", 0)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := h.c2d.ReceiveFeedback(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b != nil {
			if len(b.Records) != 1 || b.Records[0].StatusCode != "Success" || b.Records[0].OriginalMessageID != "m-1" {
				t.Fatalf("%+v", b.Records)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no feedback")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMQTTC2DWaitsForTheDeviceAndKeepsOrder(t *testing.T) {
	t.Parallel()
	h := startC2DHub(t, enginetest.Start(t), "n1", c2d.Config{})
	d := h.device(t, "away")
	for i := 0; i < 5; i++ {
		h.send(t, "away", c2d.Message{MessageID: fmt.Sprint("m", i), Body: []byte(fmt.Sprint(i))})
	}
	c, err := h.client(t, "away", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := subscribeC2D(t, c, "away", 1)
	for i := 5; i < 8; i++ {
		h.send(t, "away", c2d.Message{MessageID: fmt.Sprint("m", i), Body: []byte(fmt.Sprint(i))})
	}
	for i := 0; i < 8; i++ {
		if got := nextC2D(t, ch); got.payload != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, got)
		}
	}
	h.waitDepth(t, "away", 0)
}

func TestMQTTC2DAtQoS0IsCompletedWhenSent(t *testing.T) {
	t.Parallel()
	h := startC2DHub(t, enginetest.Start(t), "n1", c2d.Config{})
	d := h.device(t, "q0")
	c, err := h.client(t, "q0", deviceToken(t, d, time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := subscribeC2D(t, c, "q0", 0)
	h.send(t, "q0", c2d.Message{Body: []byte("x")})
	if got := nextC2D(t, ch); got.qos != 0 {
		t.Fatalf("%+v", got)
	}
	h.waitDepth(t, "q0", 0)
}

// rawDevice is a hand-driven MQTT connection, for the cases paho hides: not acknowledging, and
// acknowledging late.
type rawDevice struct {
	t *testing.T
	c *tls.Conn
}

func (h *hub) rawDevice(t *testing.T, d registry.Device) *rawDevice {
	t.Helper()
	c := h.raw(t)
	_, _ = c.Write(connectPacket(d.DeviceID, hubHost+"/"+d.DeviceID+"/?api-version=2021-04-12", deviceToken(t, d, time.Hour), 60, 4))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	filter := "devices/" + d.DeviceID + "/messages/devicebound/#"
	sub := append([]byte{0x82, byte(2 + 2 + len(filter) + 1), 0, 1, 0, byte(len(filter))}, append([]byte(filter), 1)...)
	_, _ = c.Write(sub)
	suback := make([]byte, 5)
	if _, err := io.ReadFull(c, suback); err != nil || suback[0] != 0x90 || suback[4] != 1 {
		t.Fatalf("SUBACK %x %v", suback, err)
	}
	return &rawDevice{t: t, c: c}
}

type rawPublish struct {
	dup     bool
	qos     byte
	id      uint16
	topic   string
	payload string
}

// next reads the next PUBLISH.
func (r *rawDevice) next(within time.Duration) (rawPublish, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(within))
	hdr := make([]byte, 1)
	if _, err := io.ReadFull(r.c, hdr); err != nil {
		return rawPublish{}, err
	}
	n, mult := 0, 1
	for {
		b := make([]byte, 1)
		if _, err := io.ReadFull(r.c, b); err != nil {
			return rawPublish{}, err
		}
		n += int(b[0]&127) * mult
		mult *= 128
		if b[0]&128 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.c, body); err != nil {
		return rawPublish{}, err
	}
	if hdr[0]>>4 != 3 {
		return r.next(within) // not a PUBLISH (PINGRESP and the like)
	}
	p := rawPublish{dup: hdr[0]&8 != 0, qos: hdr[0] >> 1 & 3}
	tl := int(body[0])<<8 | int(body[1])
	p.topic = string(body[2 : 2+tl])
	rest := body[2+tl:]
	if p.qos > 0 {
		p.id = uint16(rest[0])<<8 | uint16(rest[1])
		rest = rest[2:]
	}
	p.payload = string(rest)
	return p, nil
}

func (r *rawDevice) puback(id uint16) {
	_, _ = r.c.Write([]byte{0x40, 2, byte(id >> 8), byte(id)})
}

func TestMQTTC2DRedeliveredWhenNotAcknowledged(t *testing.T) {
	t.Parallel()
	h := startC2DHub(t, enginetest.Start(t), "n1", c2d.Config{LockDuration: 700 * time.Millisecond, MaxDeliveryCount: 2})
	d := h.device(t, "mute")
	dev := h.rawDevice(t, d)
	h.send(t, "mute", c2d.Message{MessageID: "x", Body: []byte("hi"), Ack: c2d.AckNegative})
	first, err := dev.next(5 * time.Second)
	if err != nil || first.qos != 1 || first.dup || first.payload != "hi" {
		t.Fatalf("%+v %v", first, err)
	}
	// No PUBACK: after the lock it comes again, same packet id, DUP set.
	again, err := dev.next(5 * time.Second)
	if err != nil || again.id != first.id || !again.dup || again.topic != first.topic {
		t.Fatalf("redelivery %+v %v", again, err)
	}
	// Still no PUBACK: the second lock uses up the deliveries; the message is dead-lettered.
	h.waitDepth(t, "mute", 0)
	h.waitRecord(t, diag.C2DCommands, func(w diag.Wire, p map[string]any) bool {
		return w.OperationName == "deliveryCountExceeded" && p["deviceId"] == "mute" && p["protocol"] == "Mqtt"
	})
	// A PUBACK now is too late: logged, the connection stays.
	dev.puback(first.id)
	h.waitRecord(t, diag.C2DCommands, func(w diag.Wire, p map[string]any) bool {
		return w.OperationName == "complete" && w.ResultType == "412002" && p["deviceId"] == "mute"
	})
	// Unknown packet ids are ignored too.
	dev.puback(4242)
	h.send(t, "mute", c2d.Message{Body: []byte("next")})
	if p, err := dev.next(5 * time.Second); err != nil || p.payload != "next" {
		t.Fatalf("connection unusable after late acknowledgements: %+v %v", p, err)
	}
}

// TestMQTTC2DAcrossNodes: a message sent through node a reaches the device connected to node
// b; when b dies before the device acknowledges, the device reconnects to a and gets the message
// again at once, with its delivery count raised.
func TestMQTTC2DAcrossNodes(t *testing.T) {
	t.Parallel()
	ext := enginetest.StartExternal(t)
	a := startC2DHub(t, ext.Connect(t), "a", c2d.Config{})
	bEng := ext.Connect(t)
	b := startC2DHub(t, bEng, "b", c2d.Config{})
	d := a.device(t, "roamer")
	devB := b.rawDevice(t, d)
	sent := a.send(t, "roamer", c2d.Message{MessageID: "cross", Body: []byte("over there"), Ack: c2d.AckPositive})
	got, err := devB.next(10 * time.Second)
	if err != nil || got.payload != "over there" || !strings.Contains(got.topic, "%24.mid=cross") {
		t.Fatalf("%+v %v", got, err)
	}
	// Node b dies: its engine connection goes first, so nothing it held is released.
	_ = bEng.Close()
	b.stop()
	devA := a.rawDevice(t, d)
	start := time.Now()
	again, err := devA.next(10 * time.Second)
	if err != nil || again.payload != "over there" {
		t.Fatalf("after the node died: %+v %v", again, err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("redelivered after %s: it waited for the lock", el)
	}
	devA.puback(again.id)
	a.waitDepth(t, "roamer", 0)
	fb, err := a.c2d.ReceiveFeedback(context.Background())
	for i := 0; fb == nil && err == nil && i < 200; i++ {
		time.Sleep(20 * time.Millisecond)
		fb, err = a.c2d.ReceiveFeedback(context.Background())
	}
	if err != nil || fb == nil || fb.Records[0].OriginalMessageID != "cross" || fb.Records[0].StatusCode != "Success" {
		t.Fatalf("feedback %+v %v", fb, err)
	}
	_ = sent
}

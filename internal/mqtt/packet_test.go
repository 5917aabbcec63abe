package mqtt

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/roost-iot/roost/internal/telemetry"
)

// encodeConnect builds a CONNECT packet for tests.
func encodeConnect(clientID, username, password string, keepAlive uint16, level byte) []byte {
	var body []byte
	str := func(s string) { body = append(body, byte(len(s)>>8), byte(len(s))); body = append(body, s...) }
	str("MQTT")
	flags := byte(0)
	if username != "" {
		flags |= 0x80
	}
	if password != "" {
		flags |= 0x40
	}
	body = append(body, level, flags, byte(keepAlive>>8), byte(keepAlive))
	str(clientID)
	if username != "" {
		str(username)
	}
	if password != "" {
		str(password)
	}
	out := []byte{typeConnect << 4}
	out = appendLength(out, len(body))
	return append(out, body...)
}

func TestPacketDecodeConnect(t *testing.T) {
	pk := encodeConnect("dev1", "hub/dev1/?api-version=2021-04-12", "SharedAccessSignature sr=x", 60, 4)
	h, err := readHeader(&smallReader{rd: bytes.NewReader(pk)}, 1<<20)
	if err != nil || h.typ != typeConnect {
		t.Fatalf("header: %+v %v", h, err)
	}
	c, err := decodeConnect(pk[len(pk)-h.length:])
	if err != nil {
		t.Fatal(err)
	}
	if c.clientID != "dev1" || c.username != "hub/dev1/?api-version=2021-04-12" || string(c.password) != "SharedAccessSignature sr=x" || c.keepAlive != 60 {
		t.Fatalf("decoded %+v", c)
	}
}

func TestPacketRejectsMalformed(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"reserved type", []byte{0x00, 0x00}},
		{"length too long", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"qos 3 publish", []byte{0x36, 0x00}},
		{"subscribe bad flags", []byte{0x80, 0x00}},
		{"pingreq flags", []byte{0xc1, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readHeader(&smallReader{rd: bytes.NewReader(tt.in)}, 1<<20)
			if !errors.Is(err, errMalformed) {
				t.Fatalf("got %v, want errMalformed", err)
			}
		})
	}
	if _, err := readHeader(&smallReader{rd: bytes.NewReader([]byte{0x30, 0x80, 0x80, 0x40})}, 1000); !errors.Is(err, errTooLarge) {
		t.Fatalf("huge length: got %v, want errTooLarge", err)
	}
	bodies := []struct {
		name string
		fn   func() error
	}{
		{"publish empty topic", func() error { _, err := decodePublish(header{typ: typePublish}, []byte{0, 0}); return err }},
		{"publish wildcard", func() error { _, err := decodePublish(header{typ: typePublish}, []byte{0, 1, '#'}); return err }},
		{"publish bad utf8", func() error { _, err := decodePublish(header{typ: typePublish}, []byte{0, 1, 0xff}); return err }},
		{"publish truncated", func() error { _, err := decodePublish(header{typ: typePublish}, []byte{0, 5, 'a'}); return err }},
		{"publish qos1 id 0", func() error {
			_, err := decodePublish(header{typ: typePublish, flags: 2}, []byte{0, 1, 'a', 0, 0})
			return err
		}},
		{"subscribe no filters", func() error { _, _, err := decodeSubscribe([]byte{0, 1}); return err }},
		{"subscribe bad qos bits", func() error { _, _, err := decodeSubscribe([]byte{0, 1, 0, 1, 'a', 0x04}); return err }},
		{"connect trailing", func() error {
			pk := encodeConnect("d", "", "", 0, 4)
			_, err := decodeConnect(append(pk[2:], 0))
			return err
		}},
		{"connect password without user", func() error {
			_, err := decodeConnect([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x40, 0, 0, 0, 1, 'd', 0, 1, 'p'})
			return err
		}},
	}
	for _, tt := range bodies {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, errMalformed) {
				t.Fatalf("got %v, want errMalformed", err)
			}
		})
	}
}

func FuzzPacketDecode(f *testing.F) {
	f.Add(encodeConnect("dev1", "hub/dev1/?api-version=2021-04-12", "tok", 60, 4))
	f.Add(appendPublish(nil, "devices/d/messages/events/a=b", 1, 7, []byte("hello")))
	f.Add(appendSuback(nil, 1, []byte{1}))
	f.Add([]byte{0x82, 0x08, 0, 1, 0, 3, 'a', '/', '#', 1})
	f.Add([]byte{0xa2, 0x05, 0, 1, 0, 1, 'a'})
	f.Add([]byte{0x40, 0x02, 0, 1})
	f.Add([]byte{0xc0, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := &smallReader{rd: bytes.NewReader(b)}
		for {
			h, err := readHeader(br, 1<<16)
			if err != nil {
				return
			}
			body := make([]byte, h.length)
			if _, err := io.ReadFull(br, body); err != nil && h.length > 0 {
				return
			}
			switch h.typ {
			case typeConnect:
				_, _ = decodeConnect(body)
			case typePublish:
				p, err := decodePublish(h, body)
				if err == nil {
					pt := parsePublishTopic(p.topic)
					var m telemetry.Message
					_ = parseBag(pt.bag, &m)
				}
			case typeSubscribe:
				_, _, _ = decodeSubscribe(body)
			case typeUnsubscribe:
				_, _, _ = decodeUnsubscribe(body)
			case typePuback:
				_, _ = decodeAck(body)
			}
		}
	})
}

func TestTopicParsing(t *testing.T) {
	tests := []struct {
		topic string
		want  parsedTopic
	}{
		{"devices/d1/messages/events/", parsedTopic{kind: topicTelemetry, deviceID: "d1"}},
		{"devices/d1/messages/events", parsedTopic{kind: topicTelemetry, deviceID: "d1"}},
		{"devices/d.1$/messages/events/a=b&%24.mid=5", parsedTopic{kind: topicTelemetry, deviceID: "d.1$", bag: "a=b&%24.mid=5"}},
		{"devices/d1/modules/m1/messages/events/%24.on=out1/", parsedTopic{kind: topicTelemetry, deviceID: "d1", moduleID: "m1", bag: "%24.on=out1/"}},
		{"$iothub/twin/GET/?$rid=42", parsedTopic{kind: topicTwinGet, bag: "?$rid=42", rid: "42"}},
		{"$iothub/twin/PATCH/properties/reported/?$rid=a1", parsedTopic{kind: topicTwinPatchReported, bag: "?$rid=a1", rid: "a1"}},
		{"$iothub/methods/res/200/?$rid=7", parsedTopic{kind: topicMethodResponse, status: "200", bag: "?$rid=7", rid: "7"}},
		{"devices/d1/messages/eventsX", parsedTopic{}},
		{"devices//messages/events/", parsedTopic{}},
		{"other/topic", parsedTopic{}},
		{"$iothub/unknown", parsedTopic{}},
	}
	for _, tt := range tests {
		if got := parsePublishTopic(tt.topic); got != tt.want {
			t.Errorf("parsePublishTopic(%q) = %+v, want %+v", tt.topic, got, tt.want)
		}
	}
}

func TestPropertyBag(t *testing.T) {
	var m telemetry.Message
	bag := "%24.mid=m%201&$.cid=c1&%24.ct=application%2Fjson&%24.ce=utf-8&%24.uid=u&%24.exp=2030-01-02T03%3A04%3A05.0000000Z&temp=21.5&a%2Bb=x+y&flag&%24.diagid=9"
	if err := parseBag(bag, &m); err != nil {
		t.Fatal(err)
	}
	if m.MessageID != "m 1" || m.CorrelationID != "c1" || m.ContentType != "application/json" || m.ContentEncoding != "utf-8" || m.UserID != "u" || m.Expiry.Year() != 2030 {
		t.Fatalf("system properties: %+v", m)
	}
	want := []telemetry.Property{{Name: "temp", Value: "21.5"}, {Name: "a+b", Value: "x+y"}, {Name: "flag", Value: ""}, {Name: "$.diagid", Value: "9"}}
	if len(m.Properties) != len(want) {
		t.Fatalf("app properties %+v, want %+v", m.Properties, want)
	}
	for i := range want {
		if m.Properties[i] != want[i] {
			t.Fatalf("app property %d = %+v, want %+v", i, m.Properties[i], want[i])
		}
	}
	if err := parseBag("a=%zz", &m); err == nil {
		t.Fatal("bad escape accepted")
	}
}

func TestUsernameAndClientID(t *testing.T) {
	if d, m, ok := parseClientID("dev/mod"); !ok || d != "dev" || m != "mod" {
		t.Fatal("module client id")
	}
	for _, bad := range []string{"", "/m", "d/", "d/m/x"} {
		if _, _, ok := parseClientID(bad); ok {
			t.Errorf("client id %q accepted", bad)
		}
	}
	q, ok := parseUsername("Hub.Local/dev/mod/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18&model-id=dtmi:a:b;1", "hub.local", "dev/mod")
	if !ok || q.Get("api-version") != "2021-04-12" || q.Get("DeviceClientType") != "azure-iot-device/1.18" || q.Get("model-id") != "dtmi:a:b;1" {
		t.Fatalf("username: %v %v", q, ok)
	}
	for _, bad := range []string{"other/dev/?x", "hub.local/dev2/?x", "hub.local/devx", "hub.local"} {
		if _, ok := parseUsername(bad, "hub.local", "dev"); ok {
			t.Errorf("username %q accepted", bad)
		}
	}
}

package telemetry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-iot/roost/internal/engine"
)

// fullMessage sets every field the envelope stores.
func fullMessage() *Message {
	t0 := time.Date(2026, 3, 4, 10, 15, 2, 123456789, time.UTC)
	return &Message{
		DeviceID: "dev.1$*>", ModuleID: "mod/1",
		Body:      []byte(`{"temperature":21.5}`),
		MessageID: "mid-1", CorrelationID: "cid-1", UserID: "uid-1", To: "/devices/dev.1$*>/messages/events",
		ContentType: "application/json", ContentEncoding: "utf-8",
		OutputName: "out1", InterfaceID: "urn:azureiot:Security:SecurityAgent:1", ComponentName: "thermostat1",
		MessageSchema: "schema-1",
		CreationTime:  t0.Add(-time.Second), Expiry: t0.Add(time.Hour),
		Properties:       []Property{{"a", "1"}, {"", ""}, {"a", "2"}, {"ünï", "cödé\x00"}},
		AuthMethod:       `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`,
		AuthGenerationID: "638000000000000000", Protocol: "Mqtt",
		EnqueuedTime: t0,
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	tests := map[string]*Message{
		"full":        fullMessage(),
		"minimal":     {DeviceID: "d"},
		"binary body": {DeviceID: "d", Body: []byte{0, 0xff, 0xfe, '\n'}},
		"big body":    {DeviceID: "d", Body: bytes.Repeat([]byte("x"), MaxMessageSize)},
		"old times":   {DeviceID: "d", CreationTime: time.Unix(-1e10, 5).UTC(), Expiry: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		"many props":  {DeviceID: "d", Properties: manyProps(300)},
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := Encode(m)
			var got Message
			if err := Decode(data, &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if diff := cmp.Diff(m, &got); diff != "" {
				t.Fatalf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func manyProps(n int) []Property {
	out := make([]Property, n)
	for i := range out {
		out[i] = Property{Name: strings.Repeat("k", i%7+1), Value: strings.Repeat("v", i)}
	}
	return out
}

func TestEnvelopeDecodeRejectsCorruptInput(t *testing.T) {
	t.Parallel()
	good := Encode(fullMessage())
	hdrLen, n := binary.Uvarint(good[1:])
	tests := map[string][]byte{
		"empty":              nil,
		"one byte":           {envelopeV1},
		"unknown version":    append([]byte{2}, good[1:]...),
		"header too long":    append([]byte{envelopeV1}, binary.AppendUvarint(nil, uint64(len(good)))...),
		"truncated header":   good[:1+n+int(hdrLen)/2],
		"varint overflow":    {envelopeV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"field past header":  {envelopeV1, 3, tagDeviceID, 5, 'a'},
		"short time":         {envelopeV1, 4, tagEnqueuedTime, 2, 0, 0},
		"nanos out of range": append([]byte{envelopeV1, 14, tagExpiry, 12}, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff),
		"bad property":       {envelopeV1, 3, tagProperty, 1, 9},
	}
	for name, data := range tests {
		var m Message
		if err := Decode(data, &m); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	// Unknown tags are skipped, so fields can be added later.
	extra := []byte{envelopeV1, 7, 99, 2, 'z', 'z', tagDeviceID, 1, 'd', 'B'}
	var m Message
	if err := Decode(extra, &m); err != nil || m.DeviceID != "d" || string(m.Body) != "B" {
		t.Fatalf("unknown tag: %+v, %v", m, err)
	}
}

func TestEnvelopeDecodeAllocatesOnceForStrings(t *testing.T) {
	data := Encode(&Message{DeviceID: "d1", MessageID: "m", ContentType: "application/json", Body: []byte("hello")})
	var m Message
	allocs := testing.AllocsPerRun(100, func() {
		if err := Decode(data, &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("Decode allocates %.0f times, want 1", allocs)
	}
}

func TestSizeCountsLikeIoTHub(t *testing.T) {
	t.Parallel()
	m := &Message{
		DeviceID: "not-counted", AuthMethod: "not-counted", Body: make([]byte, 100),
		MessageID: "12345", ContentType: "abc",
		Properties:   []Property{{"ab", "cde"}},
		CreationTime: time.Now(),
	}
	if got, want := Size(m), 100+5+3+2+3+timeSize; got != want {
		t.Fatalf("Size = %d, want %d", got, want)
	}
}

func TestPartitionOfIsStableAndSpreads(t *testing.T) {
	t.Parallel()
	// These values are the layout of every existing hub: they must never change.
	golden := map[string]int{"d1": 2, "device-0001": 1, "thermostat": 0, "dev.1$*>": 3, "": 1}
	for id, want := range golden {
		if got := PartitionOf(id, 4); got != want {
			t.Errorf("PartitionOf(%q, 4) = %d, want %d", id, got, want)
		}
		h := fnv.New32a()
		h.Write([]byte(id))
		if got := PartitionOf(id, 7); got != int(h.Sum32()%7) {
			t.Errorf("PartitionOf(%q, 7) = %d, not FNV-1a", id, got)
		}
	}
	counts := make([]int, 32)
	for i := 0; i < 32000; i++ {
		counts[PartitionOf("device-"+strconv.Itoa(i), 32)]++
	}
	for p, c := range counts {
		if c < 800 || c > 1200 {
			t.Errorf("partition %d holds %d of 32000 devices, want about 1000", p, c)
		}
	}
	if PartitionOf("x", 1) != 0 || PartitionOf("x", 0) != 0 {
		t.Fatal("one partition must be partition 0")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(fullMessage()))
	f.Add(Encode(&Message{DeviceID: "d"}))
	f.Add([]byte{envelopeV1, 0})
	f.Add([]byte{envelopeV1, 3, tagProperty, 1, 0})
	f.Add([]byte{envelopeV1, 14, tagCreationTime, 12, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := Decode(data, &m); err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes to the same message.
		var again Message
		if err := Decode(Encode(&m), &again); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if diff := cmp.Diff(&m, &again); diff != "" {
			t.Fatalf("decode(encode(decode(x))) differs:\n%s", diff)
		}
	})
}

func FuzzEncodeDecode(f *testing.F) {
	f.Add("d1", "", "mid", "k", "v", []byte("body"), int64(1700000000), uint32(5))
	f.Add("dev.1$", "m/1", "", "", "", []byte{0xff}, int64(-1), uint32(999999999))
	f.Fuzz(func(t *testing.T, dev, mod, mid, k, v string, body []byte, sec int64, nsec uint32) {
		m := &Message{DeviceID: dev, ModuleID: mod, MessageID: mid, Body: body,
			Properties:   []Property{{k, v}, {v, k}},
			EnqueuedTime: time.Unix(sec, int64(nsec%1e9)).UTC()}
		if len(body) == 0 {
			m.Body = nil
		}
		var got Message
		if err := Decode(Encode(m), &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if diff := cmp.Diff(m, &got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestNoModuleTokenIsEncodeTokenOfEmpty(t *testing.T) {
	t.Parallel()
	if got := engine.EncodeToken(""); got != noModule {
		t.Fatalf("EncodeToken(\"\") = %q, the subjects of device messages use %q", got, noModule)
	}
}

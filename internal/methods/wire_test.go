package methods

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

func jsonValid(b []byte) bool { return json.Valid(b) }

func TestMethodsWireRoundTrip(t *testing.T) {
	t.Parallel()
	b := appendRequest(nil, "reboot", []byte(`{"k1":"v1"}`), 45*time.Second)
	r, err := DecodeRequest(b)
	if err != nil || r.Name != "reboot" || string(r.Payload) != `{"k1":"v1"}` || r.Timeout != 45*time.Second {
		t.Fatalf("request: %+v %v", r, err)
	}
	if r, err := DecodeRequest(appendRequest(nil, "m", nil, time.Second)); err != nil || string(r.Payload) != "null" {
		t.Fatalf("empty payload: %+v %v", r, err)
	}
	status, body, err := decodeReply(AppendResponse(nil, -7, []byte(`"ok"`)))
	if err != nil || status != -7 || string(body) != `"ok"` {
		t.Fatalf("response: %d %q %v", status, body, err)
	}
	_, _, err = decodeReply(AppendError(nil, errcode.DeviceNotOnline, "gone"))
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != errcode.DeviceNotOnline || e.Msg != "gone" {
		t.Fatalf("error reply: %v", err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 0, 0, 9}} {
		if _, err := DecodeRequest(bad); !errors.Is(err, errBadEnvelope) {
			t.Errorf("request %x: got %v", bad, err)
		}
	}
	for _, bad := range [][]byte{nil, {1, 0}, {1, 2, 0, 0, 0, 0}, {1, 1, 0, 0, 0, 0}, {9, 0, 0, 0, 0, 0}} {
		if _, _, err := decodeReply(bad); !errors.Is(err, errBadEnvelope) {
			t.Errorf("reply %x: got %v", bad, err)
		}
	}
}

// FuzzMethodsWire decodes arbitrary bytes from another node: never a panic, and what decodes
// encodes back to the same bytes.
func FuzzMethodsWire(f *testing.F) {
	f.Add(appendRequest(nil, "m", []byte(`{"a":1}`), time.Second))
	f.Add(AppendResponse(nil, 200, []byte(`null`)))
	f.Add(AppendError(nil, errcode.GatewayTimeout, "late"))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeRequest(b); err == nil {
			again := appendRequest(nil, r.Name, r.Payload, r.Timeout)
			if len(b) > 7+len(r.Name) && !bytes.Equal(again, b) {
				t.Fatalf("request %x re-encodes as %x", b, again)
			}
		}
		status, body, err := decodeReply(b)
		if err == nil && !bytes.Equal(AppendResponse(nil, status, body), b) {
			t.Fatalf("reply %x does not round-trip", b)
		}
	})
}

package c2d

import (
	"strings"
	"testing"
	"time"
)

// FuzzC2DLockToken checks the parser of lock tokens, which arrive in request paths: it never
// panics, accepts only what String makes, and String(parse(s)) gives s back (in lower case).
func FuzzC2DLockToken(f *testing.F) {
	for _, s := range []string{
		lockToken{seq: 1, nonce: "0123456789abcdef"}.String(),
		lockToken{seq: 1<<64 - 1, nonce: "ffffffffffffffff"}.String(),
		"00000000-0000-0000-0000-000000000000", "not-a-token", "", "0000000g-0000-0001-0000-000000000000",
		"00000000-0000-0001-0000-00000000000", "00000000_0000_0001_0000_000000000000",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseLockToken(s)
		if err != nil {
			return
		}
		if tok.seq == 0 || len(tok.nonce) != 16 {
			t.Fatalf("%q parsed to %+v", s, tok)
		}
		if got := tok.String(); got != strings.ToLower(strings.TrimSpace(s)) {
			t.Fatalf("%q -> %+v -> %q", s, tok, got)
		}
	})
}

// FuzzC2DMessageValidation feeds arbitrary properties to the sender-side checks: they never
// panic, and whatever they accept survives the stored envelope unchanged.
func FuzzC2DMessageValidation(f *testing.F) {
	f.Add("m-1", "corr", "name", "value", []byte("body"), "full")
	f.Add("", "", "$.mid", "x", []byte{}, "none")
	f.Add("a b", "\x00", "iothub-ack", "v\n", []byte{0xff}, "maybe")
	f.Fuzz(func(t *testing.T, id, corr, name, value string, body []byte, ack string) {
		now := time.Unix(1_700_000_000, 0)
		m := Message{MessageID: id, CorrelationID: corr, Ack: Ack(ack), Body: body, Properties: []Property{{Name: name, Value: value}}}
		a, err := ParseAck(ack)
		if err != nil {
			return
		}
		m.Ack = a
		if validate(&m, now) != nil {
			return
		}
		m.EnqueuedTime, m.Expiry = now, now.Add(time.Hour)
		got, err := decode("dev", 7, encode(&m))
		if err != nil {
			t.Fatal(err)
		}
		if got.MessageID != id || got.CorrelationID != corr || string(got.Body) != string(body) || got.Ack != a ||
			len(got.Properties) != 1 || got.Properties[0] != (Property{name, value}) || !got.Expiry.Equal(m.Expiry) {
			t.Fatalf("round trip: %+v -> %+v", m, got)
		}
	})
}

package engine

import (
	"regexp"
	"testing"
)

var tokenCases = []string{"dev1", "a.b", "a=2Eb", "*", ">", "$sys", "x y", "", "ünï", "-_", "#+%?!(),=@;$'"}

var safeToken = regexp.MustCompile(`^[A-Za-z0-9_=-]+$`)

func TestEncodeTokenRoundTrip(t *testing.T) {
	seen := map[string]string{}
	for _, id := range tokenCases {
		enc := EncodeToken(id)
		if !safeToken.MatchString(enc) {
			t.Errorf("EncodeToken(%q) = %q: not a safe subject token", id, enc)
		}
		dec, err := DecodeToken(enc)
		if err != nil || dec != id {
			t.Errorf("DecodeToken(EncodeToken(%q)) = %q, %v", id, dec, err)
		}
		if prev, ok := seen[enc]; ok {
			t.Errorf("%q and %q both encode to %q", prev, id, enc)
		}
		seen[enc] = id
	}
}

func FuzzEncodeToken(f *testing.F) {
	for _, id := range tokenCases {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		enc := EncodeToken(id)
		if !safeToken.MatchString(enc) {
			t.Fatalf("EncodeToken(%q) = %q: unsafe", id, enc)
		}
		dec, err := DecodeToken(enc)
		if err != nil || dec != id {
			t.Fatalf("round trip of %q: %q, %v", id, dec, err)
		}
		// Decoding arbitrary input must never panic, and what decodes must re-encode to itself.
		if d, err := DecodeToken(id); err == nil && EncodeToken(d) != id && id != "" {
			t.Fatalf("DecodeToken(%q) = %q, which encodes to %q", id, d, EncodeToken(d))
		}
	})
}

package sas

import (
	"crypto/sha256"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"
)

func FuzzParseToken(f *testing.F) {
	for _, tt := range verifyCases(f) {
		f.Add(tt.token)
	}
	f.Add("SharedAccessSignature sr=h%zz&sig=" + deviceSigURL + "&se=" + testSE)
	f.Add("SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=99999999999999999999")
	f.Add("SharedAccessSignature &&&===")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseToken(%q): error %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		if tok.RawResource == "" || tok.Signature == "" {
			t.Fatalf("ParseToken(%q) = %+v: empty required field", s, tok)
		}
		if d, err := url.PathUnescape(tok.RawResource); err != nil || d != tok.Resource {
			t.Fatalf("Resource %q is not RawResource %q decoded once", tok.Resource, tok.RawResource)
		}
		if secs, err := strconv.ParseInt(tok.se, 10, 64); err != nil || min(secs, maxExpiry) != tok.Expiry.Unix() {
			t.Fatalf("Expiry %v does not match se %q", tok.Expiry, tok.se)
		}
		_ = tok.Verify(testKey, before)
		_ = tok.CheckResource(testHost)
	})
}

func FuzzParseConnectionString(f *testing.F) {
	for _, tt := range connStringCases {
		f.Add(tt.in)
	}
	f.Add("HostName=h;DeviceId=d1;x509=yes")
	f.Add("=;;=;HostName")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseConnectionString(%q): error %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		again, err := ParseConnectionString(c.String())
		if err != nil {
			t.Fatalf("ParseConnectionString(%q).String() = %q does not parse: %v", s, c.String(), err)
		}
		if again != c {
			t.Fatalf("round trip of %q:\ngot  %+v\nwant %+v", s, again, c)
		}
		_ = c.Redacted()
	})
}

func FuzzVerify(f *testing.F) {
	for _, tt := range verifyCases(f) {
		f.Add(tt.token, tt.key, tt.now.Unix())
	}
	f.Fuzz(func(t *testing.T, token, key string, now int64) {
		tok, err := ParseToken(token)
		if err != nil {
			return
		}
		err = tok.Verify(key, time.Unix(now, 0))
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify: unexpected error %v", err)
		}
	})
}

// FuzzSign checks that every token Sign makes parses, verifies with its key and covers its
// resource.
func FuzzSign(f *testing.F) {
	f.Add(testHost, testKey, "iothubowner", int64(1700000000))
	f.Add(testHost+"/devices/a b%2F", testKey2, "", int64(0))
	f.Add("h/devices/é/modules/$edgeHub", "AAAA", "pol&icy=", int64(1<<40))
	f.Fuzz(func(t *testing.T, resource, key, keyName string, se int64) {
		if se > maxExpiry {
			se %= maxExpiry
		}
		s, err := Sign(resource, key, keyName, time.Unix(se, 0))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Sign: error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(s) > MaxTokenLen {
			return
		}
		tok, err := ParseToken(s)
		if err != nil {
			t.Fatalf("ParseToken(Sign(...) = %q): %v", s, err)
		}
		if tok.Resource != resource || tok.KeyName != keyName || tok.Expiry.Unix() != se {
			t.Fatalf("Sign/ParseToken round trip: got %+v from %q", tok, s)
		}
		if err := tok.Verify(key, time.Unix(se-1, 0)); err != nil {
			t.Fatalf("Verify own token %q: %v", s, err)
		}
		if splittable(resource) != "" && !ResourceCovers(tok.Resource, resource) {
			t.Fatalf("token for %q does not cover its resource", resource)
		}
	})
}

// FuzzSum checks the stack-buffer HMAC against crypto/hmac.
func FuzzSum(f *testing.F) {
	f.Add([]byte{1, 2, 3}, "MyHub/devices/X", false, testSE)
	f.Add(make([]byte, 100), "h", true, "0")
	f.Fuzz(func(t *testing.T, key []byte, resource string, lower bool, se string) {
		var got, want [sha256.Size]byte
		sum(&got, key, resource, lower, se)
		sumSlow(&want, key, resource, lower, se)
		if got != want {
			t.Fatalf("sum(%x, %q, %v, %q) differs from crypto/hmac", key, resource, lower, se)
		}
	})
}

func FuzzResourceCovers(f *testing.F) {
	for _, tt := range coversCases {
		f.Add(tt.token, tt.target)
	}
	f.Fuzz(func(t *testing.T, tok, target string) {
		got := ResourceCovers(tok, target)
		if splittable(tok) != "" && !ResourceCovers(tok, tok) {
			t.Fatalf("%q does not cover itself", tok)
		}
		if got && splittable(target) != "" && !ResourceCovers(tok, target+"/x") {
			t.Fatalf("%q covers %q but not a child of it", tok, target)
		}
	})
}

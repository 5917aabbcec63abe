package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Known vectors, computed outside Go with
//
//	HEX=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
//	printf 'myhub.azure-devices.net\n1700000000' |
//	    openssl dgst -sha256 -mac HMAC -macopt hexkey:$HEX -binary | base64
//	printf 'myhub.azure-devices.net%%2Fdevices%%2Fdevice1\n1700000000' |
//	    openssl dgst -sha256 -mac HMAC -macopt hexkey:$HEX -binary | base64
const (
	testKey        = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0x00..0x1f
	testKey2       = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=" // bytes 0x20..0x3f
	testHost       = "myhub.azure-devices.net"
	testSE         = "1700000000"
	hubSig         = "iIzEw6hi6GK79RY5jNXO6QeQkSL/Ax4zTmy44X2G1VY="
	deviceSig      = "gFSfLGMXDOvf906/iaX3KwzLLNFHgaFZyCbsGjxtd1Y="
	hubSigURL      = "iIzEw6hi6GK79RY5jNXO6QeQkSL%2FAx4zTmy44X2G1VY%3D"
	deviceSigURL   = "gFSfLGMXDOvf906%2FiaX3KwzLLNFHgaFZyCbsGjxtd1Y%3D"
	deviceResource = "myhub.azure-devices.net%2Fdevices%2Fdevice1"
)

var testExpiry = time.Unix(1700000000, 0)

// before is a time at which the test tokens are valid.
var before = testExpiry.Add(-time.Hour)

// makeToken signs sr (exactly as given) and se with crypto/hmac over signed, independently of
// the package's own HMAC code, and returns the token with the fields in the given order.
func makeToken(tb testing.TB, key, signed, sr, se, skn string, order ...string) string {
	tb.Helper()
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		tb.Fatal(err)
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(signed + "\n" + se))
	sig := url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	fields := map[string]string{"sr": sr, "sig": sig, "se": se, "skn": skn}
	if len(order) == 0 {
		order = []string{"sr", "sig", "se", "skn"}
	}
	var parts []string
	for _, f := range order {
		if f == "skn" && skn == "" {
			continue
		}
		parts = append(parts, f+"="+fields[f])
	}
	return "SharedAccessSignature " + strings.Join(parts, "&")
}

func TestSASSignKnownVectors(t *testing.T) {
	tests := []struct {
		name, resource, keyName, want string
	}{
		{
			name:     "service token, raw host as the Node service SDK",
			resource: testHost, keyName: "iothubowner",
			want: "SharedAccessSignature sr=" + testHost + "&sig=" + hubSigURL + "&se=" + testSE + "&skn=iothubowner",
		},
		{
			name:     "device token, encoded as the Node device SDK",
			resource: testHost + "/devices/device1",
			want:     "SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sign(tt.resource, testKey, tt.keyName, testExpiry.Add(999*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Sign:\ngot  %s\nwant %s", got, tt.want)
			}
			tok, err := ParseToken(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := tok.Verify(testKey, before); err != nil {
				t.Errorf("Verify of own token: %v", err)
			}
		})
	}
}

func TestSASSignEscapes(t *testing.T) {
	got, err := Sign("h/devices/a b!'()*~é", testKey, "pol icy", testExpiry)
	if err != nil {
		t.Fatal(err)
	}
	wantSR := "sr=h%2Fdevices%2Fa%20b%21%27%28%29%2A~%C3%A9&"
	if !strings.Contains(got, wantSR) {
		t.Errorf("got %s, want it to contain %s", got, wantSR)
	}
	if !strings.HasSuffix(got, "&skn=pol%20icy") {
		t.Errorf("got %s, want skn=pol%%20icy", got)
	}
	tok, err := ParseToken(got)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Resource != "h/devices/a b!'()*~é" || tok.KeyName != "pol icy" {
		t.Errorf("got Resource %q KeyName %q", tok.Resource, tok.KeyName)
	}
}

func TestSASSignErrors(t *testing.T) {
	tests := []struct {
		name, resource, key string
		expiry              time.Time
	}{
		{"empty resource", "", testKey, testExpiry},
		{"key not base64", testHost, "not base64!", testExpiry},
		{"empty key", testHost, "", testExpiry},
		{"expiry before 1970", testHost, testKey, time.Unix(-1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(tt.resource, tt.key, "", tt.expiry)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSASParseToken(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  Token
	}{
		{
			name:  "node order sr,sig,skn,se",
			token: "SharedAccessSignature sr=" + testHost + "&sig=" + hubSigURL + "&skn=iothubowner&se=" + testSE,
			want:  Token{Resource: testHost, RawResource: testHost, Signature: hubSig, KeyName: "iothubowner"},
		},
		{
			name:  "docs order sig,se,skn,sr",
			token: "SharedAccessSignature sig=" + hubSigURL + "&se=" + testSE + "&skn=iothubowner&sr=" + testHost,
			want:  Token{Resource: testHost, RawResource: testHost, Signature: hubSig, KeyName: "iothubowner"},
		},
		{
			name:  "device token, encoded sr",
			token: "SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE,
			want:  Token{Resource: testHost + "/devices/device1", RawResource: deviceResource, Signature: deviceSig},
		},
		{
			name:  "sig not url-encoded keeps '+' and '/'",
			token: "SharedAccessSignature sr=h&sig=" + "ab+/" + deviceSig[4:] + "&se=" + testSE,
			want:  Token{Resource: "h", RawResource: "h", Signature: "ab+/" + deviceSig[4:]},
		},
		{
			name:  "empty skn of the C SDK file upload",
			token: "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=" + testSE + "&skn=",
			want:  Token{Resource: "h", RawResource: "h", Signature: deviceSig},
		},
		{
			name:  "unknown field ignored",
			token: "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=" + testSE + "&x=1",
			want:  Token{Resource: "h", RawResource: "h", Signature: deviceSig},
		},
		{
			name:  "leading zeros in se",
			token: "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=0" + testSE,
			want:  Token{Resource: "h", RawResource: "h", Signature: deviceSig},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.token)
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			tt.want.Expiry = testExpiry.UTC()
			if got.Resource != tt.want.Resource || got.RawResource != tt.want.RawResource ||
				got.Signature != tt.want.Signature || got.KeyName != tt.want.KeyName ||
				!got.Expiry.Equal(tt.want.Expiry) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSASParseTokenErrors(t *testing.T) {
	ok := "sr=h&sig=" + deviceSigURL + "&se=" + testSE
	tests := []struct{ name, token string }{
		{"empty", ""},
		{"no prefix", ok},
		{"lower-case prefix", "sharedaccesssignature " + ok},
		{"no space", "SharedAccessSignature" + ok},
		{"two spaces", "SharedAccessSignature  " + ok},
		{"leading space", " SharedAccessSignature " + ok},
		{"prefix only", "SharedAccessSignature "},
		{"missing sr", "SharedAccessSignature sig=" + deviceSigURL + "&se=" + testSE},
		{"empty sr", "SharedAccessSignature sr=&sig=" + deviceSigURL + "&se=" + testSE},
		{"missing sig", "SharedAccessSignature sr=h&se=" + testSE},
		{"missing se", "SharedAccessSignature sr=h&sig=" + deviceSigURL},
		{"duplicate sr", "SharedAccessSignature sr=h&" + ok},
		{"duplicate se", "SharedAccessSignature " + ok + "&se=1"},
		{"duplicate skn", "SharedAccessSignature " + ok + "&skn=a&skn=a"},
		{"field without =", "SharedAccessSignature " + ok + "&skn"},
		{"trailing &", "SharedAccessSignature " + ok + "&"},
		{"se fraction", "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=1700000000.5"},
		{"se negative", "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=-1"},
		{"se plus sign", "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=+1700000000"},
		{"se exponent", "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=17e8"},
		{"se overflow", "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=99999999999999999999"},
		{"bad escape in sr", "SharedAccessSignature sr=h%zz&sig=" + deviceSigURL + "&se=" + testSE},
		{"bad escape in skn", "SharedAccessSignature " + ok + "&skn=%"},
		{"sig not base64", "SharedAccessSignature sr=h&sig=***&se=" + testSE},
		{"sig too short", "SharedAccessSignature sr=h&sig=YWJj&se=" + testSE},
		{"sig with newline", "SharedAccessSignature sr=h&sig=" + deviceSig[:20] + "%0A" + deviceSig[20:] + "&se=" + testSE},
		{"overlong", "SharedAccessSignature sr=" + strings.Repeat("a", MaxTokenLen) + "&sig=" + deviceSigURL + "&se=" + testSE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseToken(tt.token)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseToken(%.80q): got %v, want ErrMalformed", tt.token, err)
			}
		})
	}
}

func TestSASParseTokenLengthLimit(t *testing.T) {
	tok := "SharedAccessSignature sr=h&sig=" + deviceSigURL + "&se=" + testSE + "&x="
	tok += strings.Repeat("a", MaxTokenLen-len(tok))
	if _, err := ParseToken(tok); err != nil {
		t.Errorf("token of exactly MaxTokenLen bytes: %v", err)
	}
	if _, err := ParseToken(tok + "a"); !errors.Is(err, ErrMalformed) {
		t.Errorf("token of MaxTokenLen+1 bytes: got %v, want ErrMalformed", err)
	}
}

// verifyCases is shared by TestSASVerify and the fuzz seeds.
func verifyCases(tb testing.TB) []struct {
	name, token, key string
	now              time.Time
	want             error
} {
	tb.Helper()
	dev := testHost + "/devices/device1"
	devEnc := deviceResource
	mk := func(key, signed, sr, se, skn string, order ...string) string {
		return makeToken(tb, key, signed, sr, se, skn, order...)
	}
	return []struct {
		name, token, key string
		now              time.Time
		want             error
	}{
		{"service, node order", mk(testKey, testHost, testHost, testSE, "iothubowner", "sr", "sig", "skn", "se"), testKey, before, nil},
		{"service, python order", mk(testKey, testHost, testHost, testSE, "service", "sr", "sig", "se", "skn"), testKey, before, nil},
		{"service, docs order", mk(testKey, testHost, testHost, testSE, "service", "sig", "se", "skn", "sr"), testKey, before, nil},
		{"device, node encoding", "SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE, testKey, before, nil},
		{"device, lower-case escapes", mk(testKey, strings.ToLower(devEnc), strings.ToLower(devEnc), testSE, ""), testKey, before, nil},
		{"device, C MQTT raw sr", mk(testKey, dev, dev, testSE, ""), testKey, before, nil},
		{"device, signed decoded, sent encoded", mk(testKey, dev, devEnc, testSE, ""), testKey, before, nil},
		{"device, signed lower-cased, sent mixed case", mk(testKey, strings.ToLower(dev), "MyHub.Azure-Devices.net%2Fdevices%2FDEVICE1", testSE, ""), testKey, before, nil},
		{"module", mk(testKey, devEnc+"%2Fmodules%2Fm1", devEnc+"%2Fmodules%2Fm1", testSE, ""), testKey, before, nil},
		{"se with leading zero signed as sent", mk(testKey, testHost, testHost, "0"+testSE, ""), testKey, before, nil},
		{"secondary key", mk(testKey2, testHost, testHost, testSE, "iothubowner"), testKey2, before, nil},
		{"secondary key, tried with primary", mk(testKey2, testHost, testHost, testSE, "iothubowner"), testKey, before, ErrBadSignature},
		{"wrong key", mk(testKey, testHost, testHost, testSE, ""), testKey2, before, ErrBadSignature},
		{"forged signature", "SharedAccessSignature sr=" + testHost + "&sig=" + deviceSigURL + "&se=" + testSE, testKey, before, ErrBadSignature},
		{"se changed after signing", "SharedAccessSignature sr=" + testHost + "&sig=" + hubSigURL + "&se=1800000000", testKey, before, ErrBadSignature},
		{"sr changed after signing", "SharedAccessSignature sr=otherhub.azure-devices.net&sig=" + hubSigURL + "&se=" + testSE, testKey, before, ErrBadSignature},
		{"signed over decoded upper-case, not accepted lower-cased the other way", mk(testKey, strings.ToUpper(dev), strings.ToLower(devEnc), testSE, ""), testKey, before, ErrBadSignature},
		{"expired exactly at se", mk(testKey, testHost, testHost, testSE, ""), testKey, testExpiry, ErrExpired},
		{"expired after se", mk(testKey, testHost, testHost, testSE, ""), testKey, testExpiry.Add(time.Second), ErrExpired},
		{"valid just before se", mk(testKey, testHost, testHost, testSE, ""), testKey, testExpiry.Add(-time.Nanosecond), nil},
		{"expired and forged is a bad signature", "SharedAccessSignature sr=" + testHost + "&sig=" + deviceSigURL + "&se=" + testSE, testKey, testExpiry.Add(time.Hour), ErrBadSignature},
		{"verification key not base64", mk(testKey, testHost, testHost, testSE, ""), "%%%", before, ErrBadSignature},
		{"verification key empty", mk(testKey, testHost, testHost, testSE, ""), "", before, ErrBadSignature},
	}
}

func TestSASVerify(t *testing.T) {
	for _, tt := range verifyCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseToken(tt.token)
			if err != nil {
				t.Fatalf("ParseToken(%q): %v", tt.token, err)
			}
			err = tok.Verify(tt.key, tt.now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify: got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSASVerifyHandMadeToken(t *testing.T) {
	tok := Token{Resource: testHost, Signature: hubSig, Expiry: testExpiry}
	if err := tok.Verify(testKey, before); err != nil {
		t.Errorf("hand-made token: %v", err)
	}
	if err := (Token{Resource: testHost, Signature: hubSig}).Verify(testKey, before); !errors.Is(err, ErrMalformed) {
		t.Errorf("no expiry: got %v, want ErrMalformed", err)
	}
	if err := (Token{Signature: hubSig, Expiry: testExpiry}).Verify(testKey, before); !errors.Is(err, ErrMalformed) {
		t.Errorf("no resource: got %v, want ErrMalformed", err)
	}
	if err := (Token{}).Verify(testKey, before); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero token: got %v, want ErrMalformed", err)
	}
}

func TestSASCheckResource(t *testing.T) {
	tok, err := ParseToken("SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.CheckResource(DeviceResource(testHost, "device1", "m")); err != nil {
		t.Errorf("module of the token's device: %v", err)
	}
	if err := tok.CheckResource(DeviceResource(testHost, "device2", "")); !errors.Is(err, ErrWrongResource) {
		t.Errorf("other device: got %v, want ErrWrongResource", err)
	}
}

// TestSASVerifyAllocs pins the zero-allocation claim of Verify's doc comment.
func TestSASVerifyAllocs(t *testing.T) {
	tok, err := ParseToken("SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := tok.Verify(testKey, before); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Verify allocates %v times per call, want 0", allocs)
	}
}

func TestSASSumMatchesCryptoHMAC(t *testing.T) {
	keys := [][]byte{{1}, make([]byte, 32), make([]byte, 64), make([]byte, 65), make([]byte, 200)}
	for i := range keys[4] {
		keys[4][i] = byte(i)
	}
	resources := []string{"", "h", "MyHub/Devices/X", strings.Repeat("r", MaxTokenLen), strings.Repeat("R", MaxTokenLen+100)}
	for _, k := range keys {
		for _, r := range resources {
			for _, lower := range []bool{false, true} {
				var got, want [sha256.Size]byte
				sum(&got, k, r, lower, testSE)
				sumSlow(&want, k, r, lower, testSE)
				if got != want {
					t.Errorf("key %d bytes, resource %d bytes, lower %v: sum and crypto/hmac differ", len(k), len(r), lower)
				}
			}
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	tok, err := ParseToken("SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := tok.Verify(testKey, before); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifies/s")
}

func BenchmarkParseToken(b *testing.B) {
	s := "SharedAccessSignature sr=" + deviceResource + "&sig=" + deviceSigURL + "&se=" + testSE
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseToken(s); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSASHugeExpiry(t *testing.T) {
	s := makeToken(t, testKey, testHost, testHost, "9223372036854775807", "")
	tok, err := ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Expiry.Year() != 9999 {
		t.Errorf("Expiry = %v, want the end of year 9999", tok.Expiry)
	}
	if err := tok.Verify(testKey, time.Now()); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

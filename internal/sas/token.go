package sas

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every error from parsing, signing and verifying wraps exactly one of them.
var (
	// ErrMalformed means a token, connection string or key could not be parsed.
	ErrMalformed = errors.New("malformed shared access signature")
	// ErrExpired means a token's expiry (se) is not after the time it was checked at.
	ErrExpired = errors.New("shared access signature expired")
	// ErrBadSignature means a token's signature was not made with the given key.
	ErrBadSignature = errors.New("shared access signature does not match")
	// ErrWrongResource means a token's resource (sr) does not cover what it was used for.
	ErrWrongResource = errors.New("shared access signature resource does not cover the target")
)

// MaxTokenLen is the longest token, in bytes, that [ParseToken] accepts.
const MaxTokenLen = 4096

// tokenPrefix starts every token. The SDKs all send it exactly so; IoT Hub's own parser is
// not more lenient that we know of.
const tokenPrefix = "SharedAccessSignature "

// Token is a parsed SAS token. Build one with [ParseToken]; a Token made by hand verifies
// against Resource (or RawResource when set) and Expiry.Unix().
type Token struct {
	// Resource is the sr field percent-decoded once, e.g. "myhub.example.com/devices/dev1".
	Resource string
	// RawResource is the sr field exactly as sent, still percent-encoded
	// ("myhub.example.com%2Fdevices%2Fdev1" from the Node SDK, raw slashes from the C SDK).
	// The signature is checked over this first.
	RawResource string
	// Signature is the sig field percent-decoded: the base64 text of the HMAC-SHA256.
	Signature string
	// Expiry is the se field (seconds since the Unix epoch, capped at the end of year 9999):
	// the token is valid strictly before this instant.
	Expiry time.Time
	// KeyName is the skn field percent-decoded: the shared access policy that signed the
	// token. It is "" for device-key tokens (no skn, or the empty skn= of the C SDK's file
	// upload); the C SDK's HTTP transport puts the device id here.
	KeyName string

	se string // the se field exactly as sent, since the client signed these bytes
}

// ParseToken parses a token "SharedAccessSignature sr=...&sig=...&se=...[&skn=...]".
// The fields may come in any order; unknown fields are ignored. It returns an error wrapping
// [ErrMalformed] when s is longer than [MaxTokenLen], lacks the exact prefix
// "SharedAccessSignature ", lacks sr, sig or se, repeats a field, has a part without '=',
// has an se that is not a non-negative decimal integer, has a bad percent-escape, or has a
// sig that is not the base64 of 32 bytes. ParseToken does not check the signature or the
// expiry: see [Token.Verify].
func ParseToken(s string) (Token, error) {
	if len(s) > MaxTokenLen {
		return Token{}, fmt.Errorf("sas: token is %d bytes, limit %d: %w", len(s), MaxTokenLen, ErrMalformed)
	}
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return Token{}, fmt.Errorf("sas: token does not start with %q: %w", tokenPrefix, ErrMalformed)
	}
	var sr, sig, se, skn string
	var seen [4]bool
	i := 0
	for part := range strings.SplitSeq(rest, "&") {
		i++
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return Token{}, fmt.Errorf("sas: token field %d has no '=': %w", i, ErrMalformed)
		}
		var f int
		switch k {
		case "sr":
			f, sr = 0, v
		case "sig":
			f, sig = 1, v
		case "se":
			f, se = 2, v
		case "skn":
			f, skn = 3, v
		default:
			continue
		}
		if seen[f] {
			return Token{}, fmt.Errorf("sas: token field %s appears twice: %w", k, ErrMalformed)
		}
		seen[f] = true
	}
	switch {
	case sr == "":
		return Token{}, fmt.Errorf("sas: token has no sr: %w", ErrMalformed)
	case sig == "":
		return Token{}, fmt.Errorf("sas: token has no sig: %w", ErrMalformed)
	case se == "":
		return Token{}, fmt.Errorf("sas: token has no se: %w", ErrMalformed)
	}

	t := Token{RawResource: sr, se: se}
	secs, err := parseExpiry(se)
	if err != nil {
		return Token{}, err
	}
	t.Expiry = time.Unix(min(secs, maxExpiry), 0).UTC()
	if t.Resource, err = url.PathUnescape(sr); err != nil {
		return Token{}, fmt.Errorf("sas: token sr: bad percent-escape: %w", ErrMalformed)
	}
	if t.Signature, err = url.PathUnescape(sig); err != nil {
		return Token{}, fmt.Errorf("sas: token sig: bad percent-escape: %w", ErrMalformed)
	}
	var buf [sha256.Size + 3]byte
	if mac, ok := decodeBase64(buf[:], t.Signature); !ok || len(mac) != sha256.Size {
		return Token{}, fmt.Errorf("sas: token sig is not the base64 of a 32-byte HMAC-SHA256: %w", ErrMalformed)
	}
	if t.KeyName, err = url.PathUnescape(skn); err != nil {
		return Token{}, fmt.Errorf("sas: token skn: bad percent-escape: %w", ErrMalformed)
	}
	return t, nil
}

// maxExpiry caps Expiry at the end of year 9999, so that an se meant as "never" (up to the
// largest int64) does not overflow time.Time. Verification still signs se as sent.
const maxExpiry = 253402300799

// parseExpiry parses se: decimal digits only (no sign, no fraction), fitting an int64.
func parseExpiry(se string) (int64, error) {
	for i := 0; i < len(se); i++ {
		if se[i] < '0' || se[i] > '9' {
			return 0, fmt.Errorf("sas: token se is not a decimal number of seconds: %w", ErrMalformed)
		}
	}
	n, err := strconv.ParseInt(se, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("sas: token se is out of range: %w", ErrMalformed)
	}
	return n, nil
}

// Verify checks that t was signed with key (the base64 key of a shared access policy or a
// device) and has not expired at now.
//
// The HMAC is computed over the resource and expiry exactly as the client placed them in the
// token (RawResource + "\n" + se), which is what every SDK signs. SDKs and hand-written
// clients differ in how they encode sr (see spec/device-protocol.md §9), so when that does not
// match Verify also tries the percent-decoded Resource and then its ASCII lower-cased form, as
// the IoT Hub docs describe. The comparison is constant-time ([hmac.Equal]).
//
// The signature is checked before the expiry, so a forged token is always reported as
// [ErrBadSignature] and only a genuine one as [ErrExpired]. A caller holding a primary and a
// secondary key tries the second when the first gives ErrBadSignature. Verify does not check
// what the token may be used for: see [Token.CheckResource].
//
// Verify does not allocate for tokens from [ParseToken] and keys of up to 96 bytes when it
// succeeds.
func (t Token) Verify(key string, now time.Time) error {
	var kbuf [96]byte
	k, ok := decodeBase64(kbuf[:], key)
	if !ok || len(k) == 0 {
		// No token can have been signed with a key that is not a key.
		return fmt.Errorf("sas: verification key is not base64: %w", ErrBadSignature)
	}
	var sbuf [sha256.Size + 3]byte
	sig, ok := decodeBase64(sbuf[:], t.Signature)
	if !ok || len(sig) != sha256.Size {
		return fmt.Errorf("sas: token sig is not the base64 of a 32-byte HMAC-SHA256: %w", ErrMalformed)
	}
	se := t.se
	if se == "" {
		if t.Expiry.IsZero() || t.Expiry.Unix() < 0 {
			return fmt.Errorf("sas: token has no expiry: %w", ErrMalformed)
		}
		se = strconv.FormatInt(t.Expiry.Unix(), 10)
	}

	raw := t.RawResource
	if raw == "" {
		raw = t.Resource
	}
	if raw == "" {
		return fmt.Errorf("sas: token has no resource: %w", ErrMalformed)
	}
	var mac [sha256.Size]byte
	match := func(res string, lower bool) bool {
		sum(&mac, k, res, lower, se)
		return hmac.Equal(mac[:], sig)
	}
	good := match(raw, false) ||
		(t.Resource != "" && t.Resource != raw && match(t.Resource, false)) ||
		(hasUpperASCII(t.Resource) && match(t.Resource, true))
	if !good {
		return fmt.Errorf("sas: token for %q (skn %q): %w", truncate(t.Resource), truncate(t.KeyName), ErrBadSignature)
	}
	if !now.Before(t.Expiry) {
		return fmt.Errorf("sas: token expired at %s: %w", t.Expiry.UTC().Format(time.RFC3339), ErrExpired)
	}
	return nil
}

// CheckResource reports whether t may be used for target, a resource such as
// [DeviceResource]'s result or the hub host name, by [ResourceCovers] on t.Resource. It
// returns nil or an error wrapping [ErrWrongResource].
func (t Token) CheckResource(target string) error {
	if ResourceCovers(t.Resource, target) {
		return nil
	}
	return fmt.Errorf("sas: token for %q used for %q: %w", truncate(t.Resource), truncate(target), ErrWrongResource)
}

// Sign returns a token for resource, signed with key (base64) and valid until expiry
// (truncated to whole seconds). keyName is the policy name put in skn; "" leaves skn out, as
// a device-key token does.
//
// The resource is given unencoded ("myhub.example.com/devices/dev1"). Sign places it in sr
// encoded as the Node SDK's encodeUriComponentStrict does: every byte except A-Z a-z 0-9 - _ .
// ~ becomes %XX with upper-case hex. The HMAC is computed over exactly that encoded string
// + "\n" + se. This reproduces both Node SDKs byte for byte: the device SDK encodes
// host + "/devices/" + id (so '/' becomes %2F), and the service SDK passes the bare host
// name, which encoding leaves unchanged. Python's quote(uri, safe="") gives the same sr.
//
// Fields come in the order sr, sig, se, skn (Python's and C's order). Sign returns an error
// wrapping [ErrMalformed] when resource is empty, key is not base64, or expiry is before 1970.
func Sign(resource, key, keyName string, expiry time.Time) (string, error) {
	if resource == "" {
		return "", fmt.Errorf("sas: sign: empty resource: %w", ErrMalformed)
	}
	k, ok := decodeBase64(nil, key)
	if !ok || len(k) == 0 {
		return "", fmt.Errorf("sas: sign: key is not base64: %w", ErrMalformed)
	}
	secs := expiry.Unix()
	if secs < 0 {
		return "", fmt.Errorf("sas: sign: expiry %s is before 1970: %w", expiry, ErrMalformed)
	}
	sr := escape(resource)
	se := strconv.FormatInt(secs, 10)
	var mac [sha256.Size]byte
	sum(&mac, k, sr, false, se)

	var b strings.Builder
	b.Grow(len(tokenPrefix) + len(sr) + len(se) + len(keyName)*3 + 80)
	b.WriteString(tokenPrefix)
	b.WriteString("sr=")
	b.WriteString(sr)
	b.WriteString("&sig=")
	b.WriteString(escape(base64.StdEncoding.EncodeToString(mac[:])))
	b.WriteString("&se=")
	b.WriteString(se)
	if keyName != "" {
		b.WriteString("&skn=")
		b.WriteString(escape(keyName))
	}
	return b.String(), nil
}

// HMAC-SHA256 (RFC 2104) over resource + "\n" + se, computed on stack buffers: crypto/hmac
// allocates about 9 times per call and Verify runs on every CONNECT and every REST request
// (BenchmarkVerify). Messages too long for the buffer fall back to crypto/hmac.
// TestSumMatchesCryptoHMAC and FuzzSum check the two agree.

const (
	hmacBlock  = 64                       // SHA-256 block size
	maxMessage = MaxTokenLen + 1 + 20 + 8 // sr, "\n", an int64 in decimal, slack
)

// sum sets mac to HMAC-SHA256(key, resource + "\n" + se), with resource ASCII lower-cased
// first when lower is set.
func sum(mac *[sha256.Size]byte, key []byte, resource string, lower bool, se string) {
	msgLen := len(resource) + 1 + len(se)
	if msgLen > maxMessage {
		sumSlow(mac, key, resource, lower, se)
		return
	}
	var k [hmacBlock]byte
	if len(key) > hmacBlock {
		h := sha256.Sum256(key)
		copy(k[:], h[:])
	} else {
		copy(k[:], key)
	}

	var inner [hmacBlock + maxMessage]byte
	for i, c := range k {
		inner[i] = c ^ 0x36
	}
	n := hmacBlock + copy(inner[hmacBlock:], resource)
	if lower {
		lowerASCII(inner[hmacBlock:n])
	}
	inner[n] = '\n'
	n++
	n += copy(inner[n:], se)
	ih := sha256.Sum256(inner[:n])

	var outer [hmacBlock + sha256.Size]byte
	for i, c := range k {
		outer[i] = c ^ 0x5c
	}
	copy(outer[hmacBlock:], ih[:])
	*mac = sha256.Sum256(outer[:])
}

func sumSlow(mac *[sha256.Size]byte, key []byte, resource string, lower bool, se string) {
	msg := []byte(resource) // bytes, not runes: resource need not be UTF-8
	if lower {
		lowerASCII(msg)
	}
	// Copies in and out keep the fast path's stack buffers from escaping through the
	// hash.Hash interface.
	h := hmac.New(sha256.New, slices.Clone(key))
	h.Write(msg)
	h.Write([]byte{'\n'})
	h.Write([]byte(se))
	copy(mac[:], h.Sum(nil))
}

// decodeBase64 decodes standard padded base64 s, into buf when it fits (without allocating for
// s of up to 256 bytes). It reports false when s is not valid base64 or contains line breaks,
// which encoding/base64 would otherwise skip.
func decodeBase64(buf []byte, s string) ([]byte, bool) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, false
	}
	if base64.StdEncoding.DecodedLen(len(s)) > len(buf) {
		b, err := base64.StdEncoding.DecodeString(s)
		return b, err == nil
	}
	var src []byte
	var stack [256]byte
	if len(s) <= len(stack) {
		src = stack[:copy(stack[:], s)]
	} else {
		src = []byte(s)
	}
	n, err := base64.StdEncoding.Decode(buf, src)
	if err != nil {
		return nil, false
	}
	return buf[:n], true
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

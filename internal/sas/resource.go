package sas

import (
	"net/url"
	"strings"
)

// DeviceResource returns the SAS resource of a device, "host/devices/<deviceID>", or of a
// module, "host/devices/<deviceID>/modules/<moduleID>" when moduleID is not "". The ids are
// percent-encoded as JavaScript's encodeURIComponent does (every byte but A-Z a-z 0-9
// - _ . ! ~ * ' ( ) becomes %XX), so the result splits on '/' into its real segments; the
// host is used as given. deviceID must not be "".
func DeviceResource(host, deviceID, moduleID string) string {
	r := host + "/devices/" + escapeComponent(deviceID)
	if moduleID != "" {
		r += "/modules/" + escapeComponent(moduleID)
	}
	return r
}

// ResourceCovers reports whether a token for tokenResource may be used for target, both
// percent-decoded once as in [Token.Resource] and [DeviceResource] (a string with no '/' at all,
// such as a Node token's raw "h%2Fdevices%2Fd", is decoded once more first). Trailing '/' are
// trimmed, both are split into '/'-separated segments, and each segment is compared after
// percent-decoding it until it has no more escapes (at most four rounds) and ASCII lower-casing
// it, so single- (Node, Python) and double-encoded (C#, IoT Edge) ids of one device compare
// equal, as do host names in any case.
//
// The token covers the target when the target's segments start with all of the token's:
// "h/devices/a" covers "h/devices/a" and "h/devices/a/modules/m" but not "h/devices/ab", and
// "h" (a service or hub-wide token) covers every resource of hub h. An empty tokenResource
// covers nothing.
//
// Device-key tokens are only ever verified with their own device's key, so the lower-casing
// of ids matters only for policy tokens scoped to one device, which IoT Hub also matches
// without regard to case (the docs tell clients to lower-case the resource).
func ResourceCovers(tokenResource, target string) bool {
	tok, tgt := splittable(tokenResource), splittable(target)
	if tok == "" || tgt == "" {
		return false
	}
	for {
		ts, trest, tmore := strings.Cut(tok, "/")
		gs, grest, gmore := strings.Cut(tgt, "/")
		if !segmentEqual(ts, gs) {
			return false
		}
		if !tmore {
			return true // every token segment matched
		}
		if !gmore {
			return false // the target is shorter than the token
		}
		tok, tgt = trest, grest
	}
}

// splittable trims trailing slashes from a resource and, when it has no '/' left to split on,
// decodes it once.
func splittable(s string) string {
	s = strings.TrimRight(s, "/")
	if strings.IndexByte(s, '/') < 0 && strings.IndexByte(s, '%') >= 0 {
		if d, err := url.PathUnescape(s); err == nil {
			s = strings.TrimRight(d, "/")
		}
	}
	return s
}

func segmentEqual(a, b string) bool {
	return equalFoldASCII(unescapeAll(a), unescapeAll(b))
}

// unescapeAll percent-decodes s until it has no more valid escapes, at most four times.
// An invalid escape leaves the text as it is.
func unescapeAll(s string) string {
	for range 4 {
		if strings.IndexByte(s, '%') < 0 {
			break
		}
		d, err := url.PathUnescape(s)
		if err != nil || d == s {
			break
		}
		s = d
	}
	return s
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// escape percent-encodes s as the Node SDK's encodeUriComponentStrict and Python's
// quote(s, safe="") do: every byte outside RFC 3986's unreserved set (A-Z a-z 0-9 - _ . ~).
func escape(s string) string { return percentEncode(s, false) }

// escapeComponent percent-encodes s as JavaScript's encodeURIComponent does, which also
// leaves ! ' ( ) * alone.
func escapeComponent(s string) string { return percentEncode(s, true) }

func percentEncode(s string, component bool) string {
	keep := func(c byte) bool {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			return true
		case c == '-', c == '_', c == '.', c == '~':
			return true
		case c == '!', c == '\'', c == '(', c == ')', c == '*':
			return component
		}
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

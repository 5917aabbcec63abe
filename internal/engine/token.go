package engine

import (
	"errors"
	"strings"
)

// EncodeToken maps an id onto one NATS subject token or KV key segment. Letters, digits, '-' and
// '_' stay as they are; every other byte becomes '=' and two upper-case hex digits. The mapping is
// reversible and keeps distinct ids distinct ("a.b" and "a=2Eb" encode differently because '='
// itself is escaped).
func EncodeToken(id string) string {
	clean := true
	for i := 0; i < len(id); i++ {
		if !plain(id[i]) {
			clean = false
			break
		}
	}
	if clean && id != "" {
		return id
	}
	var sb strings.Builder
	sb.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if plain(c) {
			sb.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		sb.WriteByte('=')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&0xF])
	}
	if sb.Len() == 0 {
		return "="
	}
	return sb.String()
}

// errBadToken means a string is not the output of [EncodeToken].
var errBadToken = errors.New("engine: malformed encoded token")

// DecodeToken reverses [EncodeToken].
func DecodeToken(tok string) (string, error) {
	if tok == "=" {
		return "", nil
	}
	if tok == "" {
		return "", errBadToken
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '=' {
			if !plain(c) {
				return "", errBadToken
			}
			out = append(out, c)
			continue
		}
		if i+2 >= len(tok) {
			return "", errBadToken
		}
		hi, ok1 := unhex(tok[i+1])
		lo, ok2 := unhex(tok[i+2])
		if !ok1 || !ok2 || plain(hi<<4|lo) {
			return "", errBadToken // only the canonical form decodes
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

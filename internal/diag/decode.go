package diag

import (
	"encoding/json"
	"unicode/utf8"
)

// decodeWire decodes a stored record. Records Roost writes are flat objects of strings, which a
// hand-written scanner reads about four times faster than encoding/json (it matters when a
// query reads millions); anything else (an escape it does not handle, a number, a nested value)
// falls back to encoding/json, so the result is the same.
func decodeWire(b []byte, w *Wire) error {
	if fastDecode(b, w) {
		return nil
	}
	*w = Wire{}
	return json.Unmarshal(b, w)
}

func fastDecode(b []byte, w *Wire) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return skipWS(b, i+1) == len(b)
		}
		key, j, ok := readString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		val, j, ok := readString(b, i)
		if !ok {
			return false
		}
		i = skipWS(b, j)
		switch key {
		case "time":
			w.Time = val
		case "resourceId":
			w.ResourceID = val
		case "operationName":
			w.OperationName = val
		case "category":
			w.Category = val
		case "level":
			w.Level = val
		case "resultType":
			w.ResultType = val
		case "resultDescription":
			w.ResultDescription = val
		case "durationMs":
			w.DurationMs = val
		case "callerIpAddress":
			w.CallerIPAddress = val
		case "correlationId":
			w.CorrelationID = val
		case "properties":
			w.Properties = val
		case "location":
			w.Location = val
		default:
			return false
		}
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			if i >= len(b) || b[i] != '"' {
				return false // a trailing comma is not JSON
			}
			continue
		}
		if i < len(b) && b[i] == '}' {
			return skipWS(b, i+1) == len(b)
		}
		return false
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// readString reads a JSON string at b[i]; it handles the escapes encoding/json writes.
func readString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	start := i + 1
	j := start
	escaped := false
	for j < len(b) {
		c := b[j]
		if c == '"' {
			break
		}
		if c < 0x20 {
			return "", i, false
		}
		if c == '\\' {
			escaped = true
			j += 2
			continue
		}
		j++
	}
	if j >= len(b) {
		return "", i, false
	}
	raw := b[start:j]
	if !utf8.Valid(raw) {
		return "", i, false
	}
	if !escaped {
		return string(raw), j + 1, true
	}
	// The escapes encoding/json writes besides \u (left to the slow path, with its surrogates).
	out := make([]byte, 0, len(raw))
	for k := 0; k < len(raw); k++ {
		c := raw[k]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		k++
		switch raw[k] {
		case '"', '\\', '/':
			out = append(out, raw[k])
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		default:
			return "", i, false
		}
	}
	return string(out), j + 1, true
}

package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/errcode"
)

// IoT Hub's limits on twin documents (spec/device-protocol.md section 6.4).
const (
	MaxTagsSize     = 8 << 10  // bytes, as IoT Hub counts them (see [Size])
	MaxDesiredSize  = 32 << 10 // bytes
	MaxReportedSize = 32 << 10 // bytes
	MaxDepth        = 10       // nesting levels of objects below a section
	MaxKeyLength    = 1024     // bytes of UTF-8
	MaxStringLength = 4096     // bytes of UTF-8
	MaxSafeInteger  = 4503599627370495
	MinSafeInteger  = -4503599627370496
)

// Values inside a twin are what [decodeJSON] produces: map[string]any for objects, []any for
// arrays, json.Number for numbers (so that a number is written back as it came), string, bool
// and nil.

// decodeJSON parses one JSON value, keeping numbers as json.Number. Anything after the value
// other than white space is an error.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

// decodeObject parses a request body that must be one JSON object. what names the body in
// error messages. A body that is not JSON, or JSON of another shape, is 400006 IotHubFormatError.
func decodeObject(b []byte, what string) (map[string]any, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errcode.New(errcode.IotHubFormatError, "the %s is empty; it must be a JSON object", what)
	}
	v, err := decodeJSON(b)
	if err != nil {
		return nil, errcode.Wrap(errcode.IotHubFormatError, err, "the %s is not valid JSON", what)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errcode.New(errcode.IotHubFormatError, "the %s must be a JSON object, not %s", what, kindOf(v))
	}
	return m, nil
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return "an unknown value"
}

// checkSection validates a section (tags, desired or reported, or a patch of one) against IoT
// Hub's key, value and depth rules. path names the section in messages ("properties.desired").
// Nulls are allowed: in a patch they delete.
func checkSection(m map[string]any, path string) error {
	return checkObject(m, path, 1)
}

func checkObject(m map[string]any, path string, depth int) error {
	if depth > MaxDepth+1 {
		return errcode.New(errcode.ArgumentInvalid,
			"%s is nested too deeply: twin objects may be nested at most %d levels", path, MaxDepth)
	}
	for k, v := range m {
		if err := checkKey(k, path); err != nil {
			return err
		}
		if err := checkValue(v, path+"."+printable(k), depth); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(v any, path string, depth int) error {
	switch x := v.(type) {
	case map[string]any:
		return checkObject(x, path, depth+1)
	case []any:
		for i, e := range x {
			if err := checkValue(e, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
				return err
			}
		}
	case string:
		if len(x) > MaxStringLength {
			return errcode.New(errcode.ArgumentInvalid,
				"the value of %s is %d bytes long; twin string values may be at most %d bytes", path, len(x), MaxStringLength)
		}
	case json.Number:
		return checkNumber(x, path)
	}
	return nil
}

// checkNumber enforces IoT Hub's integer range; other numbers must be finite.
func checkNumber(n json.Number, path string) error {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > MaxSafeInteger || i < MinSafeInteger {
			return errcode.New(errcode.ArgumentInvalid,
				"the value of %s is out of range: twin integers must lie between %d and %d", path, int64(MinSafeInteger), int64(MaxSafeInteger))
		}
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return errcode.New(errcode.ArgumentInvalid, "the value of %s is not a number a twin can hold", path)
	}
	return nil
}

// checkKey enforces IoT Hub's key rules: 1 to 1024 bytes of UTF-8, no control characters (C0,
// DEL, C1), no '.', '$' or space.
func checkKey(k, path string) error {
	if k == "" {
		return errcode.New(errcode.ArgumentInvalid, "%s has an empty key; twin keys must not be empty", path)
	}
	if len(k) > MaxKeyLength {
		return errcode.New(errcode.ArgumentInvalid,
			"%s has a key of %d bytes; twin keys may be at most %d bytes", path, len(k), MaxKeyLength)
	}
	for _, r := range k {
		if r == '.' || r == '$' || r == ' ' || isControl(r) {
			return errcode.New(errcode.ArgumentInvalid,
				"%s has the key '%s', which is not allowed: twin keys may not contain '.', '$', spaces or control characters",
				path, printable(k))
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

// printable makes untrusted text safe to echo in an error message: control characters and ';'
// become '?', and it is cut at 100 bytes.
func printable(s string) string {
	if len(s) > 100 {
		s = s[:100]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s += "..."
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) || r == ';' {
			return '?'
		}
		return r
	}, s)
}

// Size is a section's size as IoT Hub counts it: for every key, the key's length plus its
// value's; strings count their characters other than control characters, numbers 8 bytes,
// booleans 4, null nothing, objects and arrays the sum of what they hold.
func Size(m map[string]any) int {
	n := 0
	for k, v := range m {
		n += textSize(k) + valueSize(v)
	}
	return n
}

func valueSize(v any) int {
	switch x := v.(type) {
	case map[string]any:
		return Size(x)
	case []any:
		n := 0
		for _, e := range x {
			n += valueSize(e)
		}
		return n
	case string:
		return textSize(x)
	case json.Number:
		return 8
	case bool:
		return 4
	}
	return 0
}

func textSize(s string) int {
	n := 0
	for _, r := range s {
		if !isControl(r) {
			n++
		}
	}
	return n
}

// checkSize reports a section over its limit with 403100, the code IoT Hub answers with.
func checkSize(m map[string]any, path string, limit int) error {
	if n := Size(m); n > limit {
		return errcode.New(errcode.DeviceModelMaxPropertiesExceeded,
			"'%s' would be %d bytes; its size must not exceed %d bytes", path, n, limit)
	}
	return nil
}

// stamp is the metadata a change writes on every node it touches.
type stamp struct {
	at      string // $lastUpdated
	version int64  // $lastUpdatedVersion; 0 for reported properties, which have none
}

func newStamp(t time.Time, version int64) stamp {
	return stamp{at: formatTime(t), version: version}
}

// formatTime writes a time as IoT Hub writes twin times: UTC, seven fractional digits, Z.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func (s stamp) mark(meta map[string]any) {
	meta["$lastUpdated"] = s.at
	if s.version > 0 {
		meta["$lastUpdatedVersion"] = s.version
	}
}

func (s stamp) leaf() map[string]any {
	m := make(map[string]any, 2)
	s.mark(m)
	return m
}

// merge applies a JSON merge patch (RFC 7396) to props and keeps meta, the section's $metadata
// tree, in step: every node the patch writes gets the stamp, a deleted key loses its metadata,
// and objects on the way down are stamped too. meta may be nil for tags, which have none. The
// patch's maps become part of props; the caller must not use the patch afterwards.
func merge(props, meta, patch map[string]any, st stamp) {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(props, k)
			if meta != nil {
				delete(meta, k)
			}
		case map[string]any:
			child, isObj := props[k].(map[string]any)
			if !isObj {
				child = make(map[string]any, len(pv))
				props[k] = child
			}
			var cmeta map[string]any
			if meta != nil {
				cmeta, _ = meta[k].(map[string]any)
				if !isObj || cmeta == nil {
					cmeta = make(map[string]any, len(pv)+2)
					meta[k] = cmeta
				}
			}
			merge(child, cmeta, pv, st)
		default:
			props[k] = v
			if meta != nil {
				meta[k] = st.leaf()
			}
		}
	}
	if meta != nil {
		st.mark(meta)
	}
}

// diff returns the merge patch that turns from into to: keys gone become null, changed values
// are set, objects on both sides are compared key by key. Applying it with [merge] to from gives
// to.
func diff(from, to map[string]any) map[string]any {
	p := map[string]any{}
	for k := range from {
		if _, ok := to[k]; !ok {
			p[k] = nil
		}
	}
	for k, nv := range to {
		ov, ok := from[k]
		if !ok {
			p[k] = nv
			continue
		}
		om, ok1 := ov.(map[string]any)
		nm, ok2 := nv.(map[string]any)
		if ok1 && ok2 {
			if d := diff(om, nm); len(d) > 0 {
				p[k] = d
			}
			continue
		}
		if !reflect.DeepEqual(ov, nv) {
			p[k] = nv
		}
	}
	return p
}

// dropNulls removes null members, at any depth, from a document that replaces a section: there
// a null means the key is absent.
func dropNulls(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			dropNulls(x)
		}
	}
}

// clone deep-copies a value made of maps, slices and scalars.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return cloneMap(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = clone(e)
		}
		return out
	}
	return v
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = clone(v)
	}
	return out
}

package kql

import (
	"bytes"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is a KQL scalar type.
type Kind uint8

// Scalar types. Null is the absence of a value of any type.
const (
	Null Kind = iota
	Bool
	Int
	Long
	Real
	String
	DateTime
	TimeSpan
	Dynamic
)

// String returns the type's KQL name, as Log Analytics reports it in a result's columns.
func (k Kind) String() string {
	switch k {
	case Bool:
		return "bool"
	case Int:
		return "int"
	case Long:
		return "long"
	case Real:
		return "real"
	case String:
		return "string"
	case DateTime:
		return "datetime"
	case TimeSpan:
		return "timespan"
	case Dynamic:
		return "dynamic"
	}
	return "null"
}

// Value is one KQL value. The zero Value is null.
type Value struct {
	K Kind
	// I holds Bool (0 or 1), Int, Long, DateTime (Unix nanoseconds, UTC) and TimeSpan
	// (nanoseconds).
	I int64
	// F holds Real.
	F float64
	// S holds String.
	S string
	// D holds Dynamic: what encoding/json decodes into any with UseNumber (map[string]any,
	// []any, json.Number, string, bool, nil).
	D any
}

// Constructors.

// NullValue returns null.
func NullValue() Value { return Value{} }

// BoolValue returns a bool.
func BoolValue(b bool) Value {
	if b {
		return Value{K: Bool, I: 1}
	}
	return Value{K: Bool}
}

// IntValue returns an int.
func IntValue(n int64) Value { return Value{K: Int, I: n} }

// LongValue returns a long.
func LongValue(n int64) Value { return Value{K: Long, I: n} }

// RealValue returns a real.
func RealValue(f float64) Value { return Value{K: Real, F: f} }

// StringValue returns a string.
func StringValue(s string) Value { return Value{K: String, S: s} }

// TimeValue returns a datetime; the zero time gives null.
func TimeValue(t time.Time) Value {
	if t.IsZero() {
		return Value{}
	}
	return Value{K: DateTime, I: t.UnixNano()}
}

// SpanValue returns a timespan.
func SpanValue(d time.Duration) Value { return Value{K: TimeSpan, I: int64(d)} }

// DynamicValue wraps a decoded JSON value.
func DynamicValue(v any) Value { return Value{K: Dynamic, D: v} }

// IsNull reports whether v is null (a dynamic JSON null counts as null).
func (v Value) IsNull() bool { return v.K == Null || v.K == Dynamic && v.D == nil }

// Time returns a datetime's time in UTC.
func (v Value) Time() time.Time { return time.Unix(0, v.I).UTC() }

// Truth reports whether v is the bool true (a dynamic true counts).
func (v Value) Truth() bool {
	switch v.K {
	case Bool:
		return v.I != 0
	case Dynamic:
		b, ok := v.D.(bool)
		return ok && b
	}
	return false
}

func (v Value) isNumeric() bool { return v.K == Int || v.K == Long || v.K == Real }

// num returns a numeric value as float64, and whether it is numeric (dynamic numbers count).
func (v Value) num() (float64, bool) {
	switch v.K {
	case Int, Long:
		return float64(v.I), true
	case Real:
		return v.F, true
	case Dynamic:
		if n, ok := v.D.(json.Number); ok {
			f, err := n.Float64()
			return f, err == nil
		}
	}
	return 0, false
}

// undyn turns a dynamic scalar into the matching plain value (strings, numbers, bools);
// objects, arrays and other kinds are returned unchanged.
func (v Value) undyn() Value {
	if v.K != Dynamic {
		return v
	}
	switch d := v.D.(type) {
	case nil:
		return Value{}
	case string:
		return StringValue(d)
	case bool:
		return BoolValue(d)
	case json.Number:
		if n, err := d.Int64(); err == nil {
			return LongValue(n)
		}
		if f, err := d.Float64(); err == nil {
			return RealValue(f)
		}
	case float64:
		return RealValue(d)
	}
	return v
}

// String returns the value as tostring() gives it: "" for null, JSON for dynamic objects.
func (v Value) String() string {
	switch v.K {
	case Null:
		return ""
	case Bool:
		if v.I != 0 {
			return "true"
		}
		return "false"
	case Int, Long:
		return strconv.FormatInt(v.I, 10)
	case Real:
		return formatReal(v.F)
	case String:
		return v.S
	case DateTime:
		return FormatTime(v.Time())
	case TimeSpan:
		return FormatSpan(time.Duration(v.I))
	case Dynamic:
		switch d := v.D.(type) {
		case nil:
			return ""
		case string:
			return d
		case json.Number:
			return d.String()
		case bool:
			if d {
				return "true"
			}
			return "false"
		}
		return jsonText(v.D)
	}
	return ""
}

func formatReal(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// jsonText encodes a dynamic value compactly without HTML escaping.
func jsonText(v any) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// FormatTime writes a datetime as Kusto does: ISO 8601 in UTC with up to seven fractional
// digits and no trailing zeros ("2025-03-04T11:20:41Z", "2025-03-04T11:20:41.5Z").
func FormatTime(t time.Time) string {
	t = t.UTC()
	s := t.Format("2006-01-02T15:04:05")
	ns := t.Nanosecond() / 100 // 100 ns ticks, as .NET keeps them
	if ns != 0 {
		frac := strconv.Itoa(ns)
		frac = strings.Repeat("0", 7-len(frac)) + frac
		s += "." + strings.TrimRight(frac, "0")
	}
	return s + "Z"
}

// FormatSpan writes a timespan as Kusto does: [-][d.]hh:mm:ss[.fffffff].
func FormatSpan(d time.Duration) string {
	var sb strings.Builder
	if d < 0 {
		sb.WriteByte('-')
		d = -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	if days > 0 {
		sb.WriteString(strconv.FormatInt(int64(days), 10))
		sb.WriteByte('.')
	}
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	two := func(n time.Duration) {
		if n < 10 {
			sb.WriteByte('0')
		}
		sb.WriteString(strconv.FormatInt(int64(n), 10))
	}
	two(h)
	sb.WriteByte(':')
	two(m)
	sb.WriteByte(':')
	two(s)
	if ticks := int64(d) / 100; ticks != 0 {
		frac := strconv.FormatInt(ticks, 10)
		sb.WriteByte('.')
		sb.WriteString(strings.Repeat("0", 7-len(frac)) + frac)
	}
	return sb.String()
}

// JSON returns the value as the Log Analytics query API writes it in a row: numbers and bools
// as JSON numbers and bools, datetimes and timespans as strings, dynamic values as their JSON
// text, null as null.
func (v Value) JSON() any {
	switch v.K {
	case Null:
		return nil
	case Bool:
		return v.I != 0
	case Int, Long:
		return v.I
	case Real:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return formatReal(v.F)
		}
		return v.F
	case Dynamic:
		if v.D == nil {
			return nil
		}
		return jsonText(v.D)
	}
	return v.String()
}

// Native returns the value as a plain Go value for JSON output keyed by column: dynamic values
// stay structured.
func (v Value) Native() any {
	if v.K == Dynamic {
		return v.D
	}
	return v.JSON()
}

// compare orders two values: -1, 0 or 1, and false when they cannot be compared (null on either
// side, or kinds with no order between them).
func compare(a, b Value) (int, bool) {
	a, b = a.undyn(), b.undyn()
	if a.IsNull() || b.IsNull() {
		return 0, false
	}
	switch {
	case a.isNumeric() && b.isNumeric():
		if (a.K == Int || a.K == Long) && (b.K == Int || b.K == Long) {
			return cmpInt(a.I, b.I), true
		}
		fa, _ := a.num()
		fb, _ := b.num()
		return cmpFloat(fa, fb), true
	case a.K == b.K && (a.K == DateTime || a.K == TimeSpan || a.K == Bool):
		return cmpInt(a.I, b.I), true
	case a.K == String && b.K == String:
		return strings.Compare(a.S, b.S), true
	case a.K == DateTime && b.K == String:
		if t, ok := parseDateTime(b.S); ok {
			return cmpInt(a.I, t.UnixNano()), true
		}
	case a.K == String && b.K == DateTime:
		if t, ok := parseDateTime(a.S); ok {
			return cmpInt(t.UnixNano(), b.I), true
		}
	}
	// Mixed kinds (a string column against a number, say) compare by their text, which is what
	// a user comparing ResultType == 429001 means.
	if a.K == Dynamic || b.K == Dynamic {
		return strings.Compare(a.String(), b.String()), true
	}
	return strings.Compare(a.String(), b.String()), true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// equal is KQL's == between two values: null equals nothing.
func equal(a, b Value) bool {
	c, ok := compare(a, b)
	return ok && c == 0
}

// sortLess orders values for sort and top: nulls are smallest.
func sortLess(a, b Value) int {
	an, bn := a.IsNull(), b.IsNull()
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	c, _ := compare(a, b)
	return c
}

// appendKey appends an encoding of v that is equal for equal values, for grouping and distinct.
func appendKey(b []byte, v Value) []byte {
	v = v.undyn()
	b = append(b, byte(v.K))
	switch v.K {
	case Bool, Int, Long, DateTime, TimeSpan:
		if v.K == Int {
			b[len(b)-1] = byte(Long) // int and long group together
		}
		b = strconv.AppendInt(b, v.I, 36)
	case Real:
		b = strconv.AppendFloat(b, v.F, 'g', -1, 64)
	case String:
		b = strconv.AppendInt(b, int64(len(v.S)), 10)
		b = append(b, ':')
		b = append(b, v.S...)
	case Dynamic:
		s := jsonText(canonical(v.D))
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return append(b, 0)
}

// canonical sorts nothing itself (encoding/json already sorts map keys); it exists so that
// dynamic keys are encoded the same way wherever they come from.
func canonical(v any) any { return v }

// size estimates the memory a value holds, for query memory limits.
func (v Value) size() int {
	n := 56 + len(v.S)
	if v.K == Dynamic {
		n += dynSize(v.D, 0)
	}
	return n
}

func dynSize(v any, depth int) int {
	if depth > 16 {
		return 64
	}
	switch d := v.(type) {
	case string:
		return 16 + len(d)
	case json.Number:
		return 16 + len(d)
	case map[string]any:
		n := 48
		for k, x := range d {
			n += 16 + len(k) + dynSize(x, depth+1)
		}
		return n
	case []any:
		n := 24
		for _, x := range d {
			n += 16 + dynSize(x, depth+1)
		}
		return n
	}
	return 16
}

// sortedKeys returns a map's keys in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

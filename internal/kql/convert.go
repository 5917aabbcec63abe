package kql

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// timeDuration rounds nanoseconds held in a float to a Duration, saturating.
func timeDuration(ns float64) time.Duration {
	switch {
	case math.IsNaN(ns):
		return 0
	case ns >= math.MaxInt64:
		return time.Duration(math.MaxInt64)
	case ns <= math.MinInt64:
		return time.Duration(math.MinInt64)
	}
	return time.Duration(math.Round(ns))
}

// dateLayouts are the forms datetime literals and todatetime() accept.
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05Z",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04",
	"2006-01-02",
	"2006-01",
	"01/02/2006 15:04:05",
	"1/2/2006 3:04:05 PM",
	"01/02/2006",
	time.RFC1123,
	time.RFC1123Z,
}

// parseDateTime reads a date in the forms Kusto accepts for datetime literals and todatetime(),
// as UTC unless the text gives an offset.
func parseDateTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return time.Time{}, false
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// parseSpanText reads a timespan: a literal such as 1d, 1.5h, 30m, 100ms, or the
// [-][d.]hh:mm[:ss[.fffffff]] form.
func parseSpanText(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return 0, false
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	var d time.Duration
	if strings.Contains(s, ":") {
		days := 0.0
		rest := s
		if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
			n, err := strconv.ParseFloat(s[:i], 64)
			if err != nil {
				return 0, false
			}
			days, rest = n, s[i+1:]
		}
		parts := strings.Split(rest, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return 0, false
		}
		h, err1 := strconv.Atoi(parts[0])
		m, err2 := strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59 {
			return 0, false
		}
		sec := 0.0
		if len(parts) == 3 {
			f, err := strconv.ParseFloat(parts[2], 64)
			if err != nil || f < 0 || f >= 60 {
				return 0, false
			}
			sec = f
		}
		d = timeDuration(days*24*3600e9 + float64(h)*3600e9 + float64(m)*60e9 + sec*1e9)
	} else {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, false
		}
		f, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, false
		}
		unit := 24 * 3600e9 // a bare number is days
		if suffix := strings.ToLower(s[i:]); suffix != "" {
			u, ok := spanUnits[suffix]
			if !ok {
				return 0, false
			}
			unit = u
		}
		if f*unit > 9.2e18 {
			return 0, false
		}
		d = timeDuration(f * unit)
	}
	if neg {
		d = -d
	}
	return d, true
}

// parseDynamicLiteral reads the inside of dynamic(...): JSON, where strings may also use
// single quotes.
func parseDynamicLiteral(s string) (any, error) {
	js := singleToDoubleQuotes(s)
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing text")
	}
	return v, nil
}

func singleToDoubleQuotes(s string) string {
	if !strings.Contains(s, "'") {
		return s
	}
	var b strings.Builder
	inDouble, inSingle := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inDouble:
			b.WriteByte(c)
			if c == '\\' && i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			} else if c == '"' {
				inDouble = false
			}
		case inSingle:
			switch {
			case c == '\\' && i+1 < len(s):
				i++
				if s[i] == '\'' {
					b.WriteByte('\'')
				} else {
					b.WriteByte('\\')
					b.WriteByte(s[i])
				}
			case c == '\'':
				inSingle = false
				b.WriteByte('"')
			case c == '"':
				b.WriteString(`\"`)
			default:
				b.WriteByte(c)
			}
		case c == '"':
			inDouble = true
			b.WriteByte(c)
		case c == '\'':
			inSingle = true
			b.WriteByte('"')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseJSON decodes text into a dynamic value as parse_json() does: invalid JSON gives a
// dynamic string holding the text.
func ParseJSON(s string) Value {
	t := strings.TrimSpace(s)
	if t == "" {
		return DynamicValue(nil)
	}
	switch t[0] {
	case '{', '[', '"', 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		dec := json.NewDecoder(strings.NewReader(t))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err == nil && !dec.More() {
			return DynamicValue(v)
		}
	}
	return DynamicValue(s)
}

// toDynamic turns any value into a dynamic one.
func toDynamic(v Value) Value {
	switch v.K {
	case Null:
		return DynamicValue(nil)
	case Dynamic:
		return v
	case String:
		return DynamicValue(v.S)
	case Bool:
		return DynamicValue(v.I != 0)
	case Int, Long:
		return DynamicValue(json.Number(strconv.FormatInt(v.I, 10)))
	case Real:
		return DynamicValue(json.Number(formatReal(v.F)))
	}
	return DynamicValue(v.String())
}

// toLong converts as tolong() does: null when the value has no numeric reading.
func toLong(v Value) Value {
	v = v.undyn()
	switch v.K {
	case Int, Long:
		return LongValue(v.I)
	case Real:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) || math.Abs(v.F) > 9.2e18 {
			return Value{}
		}
		return LongValue(int64(v.F))
	case Bool:
		return LongValue(v.I)
	case DateTime, TimeSpan:
		return LongValue(v.I / 100) // ticks, as Kusto gives them
	case String:
		s := strings.TrimSpace(v.S)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return LongValue(n)
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) < 9.2e18 {
			return LongValue(int64(f))
		}
	}
	return Value{}
}

func toInt(v Value) Value {
	l := toLong(v)
	if l.K != Long || l.I > math.MaxInt32 || l.I < math.MinInt32 {
		return Value{}
	}
	return IntValue(l.I)
}

func toReal(v Value) Value {
	v = v.undyn()
	switch v.K {
	case Int, Long, Bool:
		return RealValue(float64(v.I))
	case Real:
		return v
	case DateTime, TimeSpan:
		return RealValue(float64(v.I / 100))
	case String:
		s := strings.TrimSpace(v.S)
		switch strings.ToLower(s) {
		case "nan":
			return RealValue(math.NaN())
		case "infinity", "+infinity":
			return RealValue(math.Inf(1))
		case "-infinity":
			return RealValue(math.Inf(-1))
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return RealValue(f)
		}
	}
	return Value{}
}

func toBool(v Value) Value {
	v = v.undyn()
	switch v.K {
	case Bool:
		return v
	case Int, Long:
		return BoolValue(v.I != 0)
	case Real:
		return BoolValue(v.F != 0)
	case String:
		switch strings.ToLower(strings.TrimSpace(v.S)) {
		case "true", "1":
			return BoolValue(true)
		case "false", "0":
			return BoolValue(false)
		}
	}
	return Value{}
}

func toDateTime(v Value) Value {
	v = v.undyn()
	switch v.K {
	case DateTime:
		return v
	case String:
		if t, ok := parseDateTime(v.S); ok {
			return TimeValue(t)
		}
	}
	return Value{}
}

func toTimeSpan(v Value) Value {
	v = v.undyn()
	switch v.K {
	case TimeSpan:
		return v
	case String:
		if d, ok := parseSpanText(v.S); ok {
			return SpanValue(d)
		}
	case Int, Long:
		return SpanValue(time.Duration(v.I) * 100) // ticks
	}
	return Value{}
}

// toStr is tostring(): "" for null.
func toStr(v Value) Value { return StringValue(v.String()) }

// member returns x.name on a dynamic bag, or null.
func member(x Value, name string) Value {
	if x.K != Dynamic {
		return Value{}
	}
	m, ok := x.D.(map[string]any)
	if !ok {
		return Value{}
	}
	if v, ok := m[name]; ok {
		return DynamicValue(v)
	}
	return Value{}
}

// index returns x[i] on a dynamic array (negative counts from the end), or x["name"] on a bag.
func index(x, i Value) Value {
	if x.K != Dynamic {
		return Value{}
	}
	i = i.undyn()
	if i.K == String {
		return member(x, i.S)
	}
	arr, ok := x.D.([]any)
	if !ok {
		return Value{}
	}
	n := toLong(i)
	if n.K != Long {
		return Value{}
	}
	k := n.I
	if k < 0 {
		k += int64(len(arr))
	}
	if k < 0 || k >= int64(len(arr)) {
		return Value{}
	}
	return DynamicValue(arr[k])
}

// jsonNumber keeps numbers as json.Number when decoding dynamic values.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

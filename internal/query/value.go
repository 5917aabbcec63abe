package query

import (
	"encoding/json"
	"math"
	"strconv"
)

// Values are what encoding/json decodes into any: nil (JSON null), bool, float64 (or
// json.Number and Go integer types, accepted from sources that produce them), string, []any and
// map[string]any. A property that does not exist is the value undefined, which no JSON value
// equals; it is never written to a result.

type undefinedType struct{}

// undefined is the value of a missing property and of an expression that has no answer (a
// comparison between different types, arithmetic on a string, a division by zero).
var undefined any = undefinedType{}

func isUndefined(v any) bool { _, ok := v.(undefinedType); return ok }

// number returns v as a float64 when it is a JSON number.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	case float32:
		return float64(n), true
	}
	return 0, false
}

// num makes a result number; NaN and the infinities (which JSON cannot carry) are undefined.
func num(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return undefined
	}
	if f == 0 {
		return float64(0) // no negative zero in results
	}
	return f
}

// typeRank orders the primitive types for MIN and MAX: null < booleans < numbers < strings.
// Objects, arrays and undefined have no rank (-1).
func typeRank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case string:
		return 3
	}
	if _, ok := number(v); ok {
		return 2
	}
	return -1
}

func isPrimitive(v any) bool { return typeRank(v) >= 0 }

// compare orders two primitives of the same type: -1, 0 or 1. ok is false for values of
// different types and for anything that is not a primitive, which the query language cannot
// compare.
func compare(a, b any) (c int, ok bool) {
	ra, rb := typeRank(a), typeRank(b)
	if ra < 0 || ra != rb {
		return 0, false
	}
	switch ra {
	case 0:
		return 0, true
	case 1:
		x, y := a.(bool), b.(bool)
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		}
		return 1, true
	case 2:
		x, _ := number(a)
		y, _ := number(b)
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	x, y := a.(string), b.(string)
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// total orders any two primitives, first by type, for MIN and MAX.
func total(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		if ra < rb {
			return -1
		}
		return 1
	}
	c, _ := compare(a, b)
	return c
}

// valueKey is a primitive as a map key, so that IN over a long list is one lookup.
type valueKey struct {
	kind byte // 'z' null, 'b' boolean, 'n' number, 's' string
	f    float64
	s    string
}

func keyOf(v any) (valueKey, bool) {
	switch x := v.(type) {
	case nil:
		return valueKey{kind: 'z'}, true
	case bool:
		if x {
			return valueKey{kind: 'b', f: 1}, true
		}
		return valueKey{kind: 'b'}, true
	case string:
		return valueKey{kind: 's', s: x}, true
	}
	if f, ok := number(v); ok {
		if f == 0 {
			f = 0
		}
		return valueKey{kind: 'n', f: f}, true
	}
	return valueKey{}, false
}

// truthy reports whether a condition holds: only the boolean true does.
func truthy(v any) bool { b, ok := v.(bool); return ok && b }

// appendKey appends a text form of a primitive (or undefined) that sorts like the values do
// within a type (numbers numerically, strings by code point) and groups types: null, booleans,
// numbers, strings, then undefined. Grouping and continuation tokens use it.
func appendKey(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, 'a')
	case bool:
		if x {
			return append(buf, 'b', '1')
		}
		return append(buf, 'b', '0')
	case string:
		return strconv.AppendQuote(append(buf, 's'), x)
	}
	f, ok := number(v)
	if !ok {
		return append(buf, '~')
	}
	if f == 0 {
		f = 0
	}
	bits := math.Float64bits(f)
	if bits>>63 == 1 {
		bits = ^bits
	} else {
		bits |= 1 << 63
	}
	var h [16]byte // fixed width, so that the text sorts as the number does
	for i := len(h) - 1; i >= 0; i-- {
		h[i] = "0123456789abcdef"[bits&15]
		bits >>= 4
	}
	return append(append(buf, 'n'), h[:]...)
}

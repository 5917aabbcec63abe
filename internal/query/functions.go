package query

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxConcat bounds what CONCAT builds, in bytes (a twin's strings are at most 4 KB), so a
// query of thousands of arguments cannot make each twin cost megabytes; longer is undefined.
const maxConcat = 64 << 10

// maxFixedArgs is the most arguments a function other than CONCAT takes.
const maxFixedArgs = 3

// args are a call's argument values, passed by value so that a call allocates nothing; n of
// them are set.
type args [maxFixedArgs]any

// function is a built-in scalar function. Arguments of the wrong type give undefined.
type function struct {
	name     string
	min, max int // argument counts; max -1 means any number (then variadic is set)
	impl     func(a args, n int) any
	variadic func(a []any) any
}

// functions are the built-ins, by upper-case name. IS_DEFINED is the one IoT Hub documents for
// twin queries; STARTSWITH and ENDSWITH are what the hub accepts there (STARTS_WITH and
// ENDS_WITH are the routing-query spellings, accepted too); the rest are the routing-query
// functions, which Roost also evaluates in twin queries.
var functions = map[string]*function{}

func init() {
	def := func(name string, minArgs, maxArgs int, impl func(args, int) any, aliases ...string) {
		f := &function{name: name, min: minArgs, max: maxArgs, impl: impl}
		functions[name] = f
		for _, a := range aliases {
			functions[a] = f
		}
	}
	isType := func(test func(any) bool) func(args, int) any {
		return func(a args, _ int) any { return !isUndefined(a[0]) && test(a[0]) }
	}
	def("IS_DEFINED", 1, 1, func(a args, _ int) any { return !isUndefined(a[0]) })
	def("IS_NULL", 1, 1, isType(func(v any) bool { return v == nil }))
	def("IS_BOOL", 1, 1, isType(func(v any) bool { _, ok := v.(bool); return ok }))
	def("IS_NUMBER", 1, 1, isType(func(v any) bool { _, ok := number(v); return ok }))
	def("IS_STRING", 1, 1, isType(func(v any) bool { _, ok := v.(string); return ok }))
	def("IS_OBJECT", 1, 1, isType(func(v any) bool { _, ok := v.(map[string]any); return ok }))
	def("IS_ARRAY", 1, 1, isType(func(v any) bool { _, ok := v.([]any); return ok }))
	def("IS_PRIMITIVE", 1, 1, isType(isPrimitive))

	def("STARTSWITH", 2, 2, strings2(func(s, p string) any { return strings.HasPrefix(s, p) }), "STARTS_WITH")
	def("ENDSWITH", 2, 2, strings2(func(s, p string) any { return strings.HasSuffix(s, p) }), "ENDS_WITH")
	def("CONTAINS", 2, 2, strings2(func(s, p string) any { return strings.Contains(s, p) }))
	def("INDEX_OF", 2, 2, strings2(func(s, p string) any {
		i := strings.Index(s, p)
		if i < 0 {
			return float64(-1)
		}
		return float64(utf8.RuneCountInString(s[:i]))
	}))
	def("LOWER", 1, 1, string1(func(s string) any { return strings.ToLower(s) }))
	def("UPPER", 1, 1, string1(func(s string) any { return strings.ToUpper(s) }))
	def("LENGTH", 1, 1, string1(func(s string) any { return float64(utf8.RuneCountInString(s)) }))
	functions["CONCAT"] = &function{name: "CONCAT", min: 2, max: -1, variadic: func(a []any) any {
		n := 0
		for _, v := range a {
			s, ok := v.(string)
			if !ok {
				return undefined
			}
			n += len(s)
		}
		if n > maxConcat {
			return undefined
		}
		var b strings.Builder
		b.Grow(n)
		for _, v := range a {
			b.WriteString(v.(string))
		}
		return b.String()
	}}
	def("SUBSTRING", 2, 3, substring)
	def("AS_NUMBER", 1, 1, func(a args, _ int) any {
		if _, ok := number(a[0]); ok {
			return a[0]
		}
		s, ok := a[0].(string)
		if !ok {
			return undefined
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return undefined
		}
		return num(f)
	})

	def("ABS", 1, 1, math1(math.Abs))
	def("CEILING", 1, 1, math1(math.Ceil))
	def("FLOOR", 1, 1, math1(math.Floor))
	def("EXP", 1, 1, math1(math.Exp))
	def("SQRT", 1, 1, math1(math.Sqrt))
	def("SQUARE", 1, 1, math1(func(x float64) float64 { return x * x }))
	def("SIGN", 1, 1, math1(func(x float64) float64 {
		switch {
		case x > 0:
			return 1
		case x < 0:
			return -1
		}
		return 0
	}))
	def("POWER", 2, 2, func(a args, _ int) any {
		x, ok1 := number(a[0])
		y, ok2 := number(a[1])
		if !ok1 || !ok2 {
			return undefined
		}
		return num(math.Pow(x, y))
	})
}

func string1(f func(string) any) func(args, int) any {
	return func(a args, _ int) any {
		s, ok := a[0].(string)
		if !ok {
			return undefined
		}
		return f(s)
	}
}

func strings2(f func(s, p string) any) func(args, int) any {
	return func(a args, _ int) any {
		s, ok1 := a[0].(string)
		p, ok2 := a[1].(string)
		if !ok1 || !ok2 {
			return undefined
		}
		return f(s, p)
	}
}

func math1(f func(float64) float64) func(args, int) any {
	return func(a args, _ int) any {
		x, ok := number(a[0])
		if !ok {
			return undefined
		}
		return num(f(x))
	}
}

// substring is SUBSTRING(s, start[, length]), counting characters from 0.
func substring(a args, n int) any {
	s, ok := a[0].(string)
	start, ok2 := number(a[1])
	if !ok || !ok2 {
		return undefined
	}
	runes := []rune(s)
	total := float64(len(runes))
	length := total
	if n == 3 {
		l, ok := number(a[2])
		if !ok {
			return undefined
		}
		length = l
	}
	start = math.Floor(start)
	length = math.Floor(length)
	if start < 0 {
		start = 0
	}
	if start >= total || length <= 0 {
		return ""
	}
	end := math.Min(start+length, total)
	return string(runes[int(start):int(end)])
}

func mathMod(x, y float64) float64 { return math.Mod(x, y) }

// aggKind is an aggregate function of the SELECT list.
type aggKind int

const (
	aggCount aggKind = iota
	aggSum
	aggAvg
	aggMin
	aggMax
)

var aggregates = map[string]aggKind{"COUNT": aggCount, "SUM": aggSum, "AVG": aggAvg, "MIN": aggMin, "MAX": aggMax}

// aggregate is COUNT(), COUNT(x), SUM(x), AVG(x), MIN(x) or MAX(x) in the SELECT list.
type aggregate struct {
	kind aggKind
	arg  expr // nil for COUNT()
}

// acc accumulates one aggregate over the documents of a group.
type acc struct {
	n      int
	sum    float64
	nums   int
	best   any
	hasAny bool
}

func (a *acc) add(g *aggregate, doc map[string]any) {
	if g.arg == nil {
		a.n++
		return
	}
	v := g.arg.eval(doc)
	switch g.kind {
	case aggCount:
		if !isUndefined(v) {
			a.n++
		}
	case aggSum, aggAvg:
		if f, ok := number(v); ok {
			a.sum += f
			a.nums++
		}
	case aggMin, aggMax:
		if !isPrimitive(v) {
			return
		}
		if !a.hasAny {
			a.best, a.hasAny = v, true
			return
		}
		c := total(v, a.best)
		if g.kind == aggMin && c < 0 || g.kind == aggMax && c > 0 {
			a.best = v
		}
	}
}

func (a *acc) result(g *aggregate) any {
	switch g.kind {
	case aggCount:
		return a.n
	case aggSum:
		return num(a.sum)
	case aggAvg:
		if a.nums == 0 {
			return undefined
		}
		return num(a.sum / float64(a.nums))
	}
	if !a.hasAny {
		return undefined
	}
	return a.best
}

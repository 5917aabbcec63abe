package kql

import (
	"math"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// evalFn computes an expression for a row.
type evalFn func(Row) Value

// compiled is a bound expression.
type compiled struct {
	fn    evalFn
	typ   Kind // Null when only known at run time
	konst bool // depends on no column
}

// scope is what names in an expression can refer to.
type scope struct {
	cols []Column
	r    *run
	// search makes a bare string a match against every column (search "x").
	search        bool
	caseSensitive bool
}

func (sc *scope) column(id *Ident) (int, error) {
	for i, c := range sc.cols {
		if c.Name == id.Name {
			return i, nil
		}
	}
	// Column names are case-sensitive in KQL. A name that matches one column only when case is
	// ignored is taken, with a warning: older IoT Hub docs spell category in lower case.
	match := -1
	for i, c := range sc.cols {
		if strings.EqualFold(c.Name, id.Name) {
			if match >= 0 {
				match = -2
				break
			}
			match = i
		}
	}
	if match >= 0 {
		sc.r.warnf("%s: column '%s' does not exist; using '%s' (KQL names are case-sensitive)", id.Pos, id.Name, sc.cols[match].Name)
		return match, nil
	}
	hint := ""
	if len(sc.cols) > 0 && len(sc.cols) <= 40 {
		names := make([]string, len(sc.cols))
		for i, c := range sc.cols {
			names[i] = c.Name
		}
		hint = " (columns: " + strings.Join(names, ", ") + ")"
	}
	return 0, errorf(id.Pos, "unknown column or name '%s'%s", id.Name, hint)
}

func konst(v Value) compiled {
	return compiled{fn: func(Row) Value { return v }, typ: v.K, konst: true}
}

// fold evaluates a constant expression once.
func fold(c compiled) compiled {
	if !c.konst {
		return c
	}
	return konst(c.fn(nil))
}

func (sc *scope) compile(e Expr) (compiled, error) {
	switch e := e.(type) {
	case *Literal:
		if sc.search && e.Val.K == String {
			return sc.anyColumn("has", e.Val.S, e.Pos)
		}
		return konst(e.Val), nil
	case *Paren:
		return sc.compile(e.X)
	case *Ident:
		if v, ok := sc.r.lets[e.Name]; ok {
			if _, err := sc.column(e); err != nil { // a column of the same name wins
				return konst(v), nil
			}
		}
		i, err := sc.column(e)
		if err != nil {
			if e.Name == "null" {
				return konst(Value{}), nil
			}
			return compiled{}, err
		}
		return compiled{fn: func(r Row) Value { return r[i] }, typ: sc.cols[i].Type}, nil
	case *Star:
		return compiled{}, errorf(e.Pos, "'*' is only allowed as the left side of a string operator (where * has \"x\") or in search")
	case *Member:
		x, err := sc.compile(e.X)
		if err != nil {
			return compiled{}, err
		}
		if e.Index == nil {
			name := e.Name
			return fold(compiled{fn: func(r Row) Value { return member(x.fn(r), name) }, typ: Dynamic, konst: x.konst}), nil
		}
		ix, err := sc.compile(e.Index)
		if err != nil {
			return compiled{}, err
		}
		return fold(compiled{fn: func(r Row) Value { return index(x.fn(r), ix.fn(r)) }, typ: Dynamic, konst: x.konst && ix.konst}), nil
	case *Unary:
		x, err := sc.compile(e.X)
		if err != nil {
			return compiled{}, err
		}
		if e.Op == "+" {
			return x, nil
		}
		return fold(compiled{fn: func(r Row) Value { return negate(x.fn(r)) }, typ: x.typ, konst: x.konst}), nil
	case *Binary:
		return sc.binary(e)
	case *InExpr:
		return sc.in(e)
	case *BetweenExpr:
		x, err := sc.compile(e.X)
		if err != nil {
			return compiled{}, err
		}
		lo, err := sc.compile(e.Lo)
		if err != nil {
			return compiled{}, err
		}
		hi, err := sc.compile(e.Hi)
		if err != nil {
			return compiled{}, err
		}
		not := e.Not
		return fold(compiled{fn: func(r Row) Value {
			v := x.fn(r)
			l, h := lo.fn(r), hi.fn(r)
			if v.K == DateTime && h.K == TimeSpan && l.K == DateTime {
				h = Value{K: DateTime, I: l.I + h.I}
			}
			c1, ok1 := compare(v, l)
			c2, ok2 := compare(v, h)
			if !ok1 || !ok2 {
				return BoolValue(false)
			}
			return BoolValue((c1 >= 0 && c2 <= 0) != not)
		}, typ: Bool, konst: x.konst && lo.konst && hi.konst}), nil
	case *Call:
		return sc.call(e)
	}
	return compiled{}, errorf(e.exprPos(), "unsupported expression")
}

// anyColumn matches a string against every column with a string operator.
func (sc *scope) anyColumn(op, term string, pos Pos) (compiled, error) {
	if !sc.search && !strings.HasPrefix(op, "has") && !strings.HasPrefix(op, "contains") {
		if op != "==" && op != "=~" && op != "startswith" && op != "endswith" {
			return compiled{}, errorf(pos, "'*' cannot be used with %s", op)
		}
	}
	if sc.caseSensitive && !strings.HasSuffix(op, "_cs") && (op == "has" || op == "contains") {
		op += "_cs"
	}
	match, err := stringMatcher(op, term, pos)
	if err != nil {
		return compiled{}, err
	}
	n := len(sc.cols)
	return compiled{fn: func(r Row) Value {
		for i := 0; i < n && i < len(r); i++ {
			v := r[i]
			if v.IsNull() {
				continue
			}
			if match(v.String()) {
				return BoolValue(true)
			}
		}
		return BoolValue(false)
	}, typ: Bool}, nil
}

func negate(v Value) Value {
	v = v.undyn()
	switch v.K {
	case Int, Long, TimeSpan:
		return Value{K: v.K, I: -v.I}
	case Real:
		return RealValue(-v.F)
	}
	return Value{}
}

func (sc *scope) binary(e *Binary) (compiled, error) {
	if star, ok := unparen(e.X).(*Star); ok {
		lit, ok := unparen(e.Y).(*Literal)
		if !ok || lit.Val.K != String {
			return compiled{}, errorf(star.Pos, "'*' must be compared with a string literal")
		}
		return sc.anyColumn(e.Op, lit.Val.S, e.Pos)
	}
	inner := *sc
	inner.search = false
	if e.Op == "and" || e.Op == "or" {
		inner.search = sc.search // search "a" and "b"
	}
	x, err := inner.compile(e.X)
	if err != nil {
		return compiled{}, err
	}
	y, err := inner.compile(e.Y)
	if err != nil {
		return compiled{}, err
	}
	k := x.konst && y.konst
	xf, yf := x.fn, y.fn
	switch e.Op {
	case "and":
		return fold(compiled{fn: func(r Row) Value { return BoolValue(xf(r).Truth() && yf(r).Truth()) }, typ: Bool, konst: k}), nil
	case "or":
		return fold(compiled{fn: func(r Row) Value { return BoolValue(xf(r).Truth() || yf(r).Truth()) }, typ: Bool, konst: k}), nil
	case "==":
		return fold(compiled{fn: func(r Row) Value { return BoolValue(equal(xf(r), yf(r))) }, typ: Bool, konst: k}), nil
	case "!=":
		return fold(compiled{fn: func(r Row) Value {
			c, ok := compare(xf(r), yf(r))
			return BoolValue(ok && c != 0)
		}, typ: Bool, konst: k}), nil
	case "=~", "!~":
		not := e.Op == "!~"
		return fold(compiled{fn: func(r Row) Value {
			a, b := xf(r), yf(r)
			if a.IsNull() || b.IsNull() {
				return BoolValue(false)
			}
			return BoolValue(strings.EqualFold(a.String(), b.String()) != not)
		}, typ: Bool, konst: k}), nil
	case "<", "<=", ">", ">=":
		op := e.Op
		return fold(compiled{fn: func(r Row) Value {
			c, ok := compare(xf(r), yf(r))
			if !ok {
				return BoolValue(false)
			}
			switch op {
			case "<":
				return BoolValue(c < 0)
			case "<=":
				return BoolValue(c <= 0)
			case ">":
				return BoolValue(c > 0)
			}
			return BoolValue(c >= 0)
		}, typ: Bool, konst: k}), nil
	case "+", "-", "*", "/", "%":
		op := e.Op
		typ := Null
		if x.typ == y.typ && (x.typ == Long || x.typ == Real) && op != "/" {
			typ = x.typ
		}
		return fold(compiled{fn: func(r Row) Value { return arith(op, xf(r), yf(r)) }, typ: typ, konst: k}), nil
	case "matches regex":
		if y.konst {
			pat := y.fn(nil)
			re, err := compileRegex(pat.String(), e.Y.exprPos())
			if err != nil {
				return compiled{}, err
			}
			return fold(compiled{fn: func(r Row) Value {
				v := xf(r)
				if v.IsNull() {
					return BoolValue(false)
				}
				return BoolValue(re.MatchString(v.String()))
			}, typ: Bool, konst: k}), nil
		}
		cache := newRegexCache()
		return compiled{fn: func(r Row) Value {
			v := xf(r)
			re := cache.get(yf(r).String())
			if v.IsNull() || re == nil {
				return BoolValue(false)
			}
			return BoolValue(re.MatchString(v.String()))
		}, typ: Bool}, nil
	}
	op := e.Op
	not := strings.HasPrefix(op, "!")
	op = strings.TrimPrefix(op, "!")
	if _, ok := stringOps[op]; !ok {
		return compiled{}, errorf(e.Pos, "unknown operator %s", e.Op)
	}
	if y.konst {
		rhs := y.fn(nil)
		match, err := stringMatcher(op, rhs.String(), e.Pos)
		if err != nil {
			return compiled{}, err
		}
		rnull := rhs.IsNull()
		return fold(compiled{fn: func(r Row) Value {
			v := xf(r)
			if rnull {
				return BoolValue(false)
			}
			return BoolValue(match(v.String()) != not)
		}, typ: Bool, konst: k}), nil
	}
	return compiled{fn: func(r Row) Value {
		v, w := xf(r), yf(r)
		if w.IsNull() {
			return BoolValue(false)
		}
		match, err := stringMatcher(op, w.String(), e.Pos)
		if err != nil {
			return BoolValue(false)
		}
		return BoolValue(match(v.String()) != not)
	}, typ: Bool}, nil
}

// stringMatcher returns a test for lhs op rhs with rhs fixed.
func stringMatcher(op, rhs string, pos Pos) (func(string) bool, error) {
	lower := strings.ToLower(rhs)
	switch op {
	case "==":
		return func(s string) bool { return s == rhs }, nil
	case "=~":
		return func(s string) bool { return strings.EqualFold(s, rhs) }, nil
	case "contains":
		return func(s string) bool { return containsFold(s, lower) }, nil
	case "contains_cs":
		return func(s string) bool { return strings.Contains(s, rhs) }, nil
	case "has":
		return func(s string) bool { return hasTerm(s, rhs, false, false, false) }, nil
	case "has_cs":
		return func(s string) bool { return hasTerm(s, rhs, true, false, false) }, nil
	case "hasprefix":
		return func(s string) bool { return hasTerm(s, rhs, false, true, false) }, nil
	case "hasprefix_cs":
		return func(s string) bool { return hasTerm(s, rhs, true, true, false) }, nil
	case "hassuffix":
		return func(s string) bool { return hasTerm(s, rhs, false, false, true) }, nil
	case "hassuffix_cs":
		return func(s string) bool { return hasTerm(s, rhs, true, false, true) }, nil
	case "startswith":
		return func(s string) bool {
			return len(s) >= len(rhs) && strings.EqualFold(s[:len(rhs)], rhs) || hasPrefixFold(s, lower)
		}, nil
	case "startswith_cs":
		return func(s string) bool { return strings.HasPrefix(s, rhs) }, nil
	case "endswith":
		return func(s string) bool {
			return len(s) >= len(rhs) && strings.EqualFold(s[len(s)-len(rhs):], rhs) || hasSuffixFold(s, lower)
		}, nil
	case "endswith_cs":
		return func(s string) bool { return strings.HasSuffix(s, rhs) }, nil
	}
	return nil, errorf(pos, "unknown string operator %s", op)
}

func hasPrefixFold(s, lower string) bool {
	return strings.HasPrefix(strings.ToLower(s), lower)
}

func hasSuffixFold(s, lower string) bool {
	return strings.HasSuffix(strings.ToLower(s), lower)
}

// containsFold reports whether lower (already lower case) occurs in s, ignoring case. ASCII text
// is compared without allocating.
func containsFold(s, lower string) bool {
	if lower == "" {
		return true
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		return strings.Contains(strings.ToLower(s), lower)
	}
	n := len(lower)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for j < n {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
			j++
		}
		if j == n {
			return true
		}
	}
	return false
}

func isTermChar(r rune) bool {
	return r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') ||
		r >= 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// hasTerm is KQL's has: term occurs in s as a whole term, that is, not preceded or followed by
// a letter or digit. With prefix (suffix) only the start (end) must be a term boundary.
func hasTerm(s, term string, cs, prefix, suffix bool) bool {
	if term == "" {
		return true
	}
	hay, needle := s, term
	if !cs {
		hay, needle = strings.ToLower(s), strings.ToLower(term)
	}
	for from := 0; from <= len(hay)-len(needle); {
		i := strings.Index(hay[from:], needle)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(needle)
		before, after := true, true
		if i > 0 {
			r, _ := utf8.DecodeLastRuneInString(hay[:i])
			before = !isTermChar(r) || !isTermChar(firstRune(needle))
		}
		if end < len(hay) {
			r, _ := utf8.DecodeRuneInString(hay[end:])
			after = !isTermChar(r) || !isTermChar(lastRune(needle))
		}
		switch {
		case prefix && before, suffix && after, !prefix && !suffix && before && after:
			return true
		}
		from = i + 1
	}
	return false
}

func firstRune(s string) rune { r, _ := utf8.DecodeRuneInString(s); return r }
func lastRune(s string) rune  { r, _ := utf8.DecodeLastRuneInString(s); return r }

// MaxRegexLength bounds regular expressions in queries. Go's regexp is linear-time, so no
// pattern can make a match run away; the bound keeps compilation cheap.
const MaxRegexLength = 4096

func compileRegex(pat string, pos Pos) (*regexp.Regexp, error) {
	if len(pat) > MaxRegexLength {
		return nil, errorf(pos, "the regular expression is %d bytes long; the limit is %d", len(pat), MaxRegexLength)
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, errorf(pos, "bad regular expression: %v", err)
	}
	return re, nil
}

// regexCache compiles patterns that vary per row, keeping a bounded number.
type regexCache struct {
	mu sync.Mutex
	m  map[string]*regexp.Regexp
}

func newRegexCache() *regexCache { return &regexCache{m: map[string]*regexp.Regexp{}} }

func (c *regexCache) get(pat string) *regexp.Regexp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if re, ok := c.m[pat]; ok {
		return re
	}
	re, err := compileRegex(pat, Pos{})
	if err != nil {
		re = nil
	}
	if len(c.m) > 256 {
		clear(c.m)
	}
	c.m[pat] = re
	return re
}

func (sc *scope) in(e *InExpr) (compiled, error) {
	x, err := sc.compile(e.X)
	if err != nil {
		return compiled{}, err
	}
	var items []compiled
	allConst := true
	for _, it := range e.List {
		c, err := sc.compile(it)
		if err != nil {
			return compiled{}, err
		}
		items = append(items, c)
		allConst = allConst && c.konst
	}
	not, fold := e.Not, e.CaseFold
	test := func(v Value, list []Value) bool {
		if v.IsNull() {
			return false
		}
		for _, w := range list {
			if fold {
				if !w.IsNull() && strings.EqualFold(v.String(), w.String()) {
					return true
				}
			} else if equal(v, w) {
				return true
			}
		}
		return false
	}
	expand := func(vals []Value) []Value {
		var out []Value
		for _, v := range vals {
			if v.K == Dynamic {
				if arr, ok := v.D.([]any); ok {
					for _, a := range arr {
						out = append(out, DynamicValue(a))
					}
					continue
				}
			}
			out = append(out, v)
		}
		return out
	}
	if allConst {
		vals := make([]Value, len(items))
		for i, c := range items {
			vals[i] = c.fn(nil)
		}
		vals = expand(vals)
		// Plain strings compared exactly go through a set.
		strs := map[string]bool{}
		onlyStrings := !fold
		for _, v := range vals {
			if v.K != String {
				onlyStrings = false
				break
			}
			strs[v.S] = true
		}
		if onlyStrings {
			return compiled{fn: func(r Row) Value {
				v := x.fn(r).undyn()
				if v.IsNull() {
					return BoolValue(false)
				}
				if v.K == String {
					return BoolValue(strs[v.S] != not)
				}
				return BoolValue(test(v, vals) != not)
			}, typ: Bool}, nil
		}
		return fold2(compiled{fn: func(r Row) Value {
			v := x.fn(r)
			if v.IsNull() {
				return BoolValue(false)
			}
			return BoolValue(test(v, vals) != not)
		}, typ: Bool, konst: x.konst}), nil
	}
	return compiled{fn: func(r Row) Value {
		v := x.fn(r)
		if v.IsNull() {
			return BoolValue(false)
		}
		vals := make([]Value, len(items))
		for i, c := range items {
			vals[i] = c.fn(r)
		}
		return BoolValue(test(v, expand(vals)) != not)
	}, typ: Bool}, nil
}

func fold2(c compiled) compiled { return fold(c) }

// arith applies an arithmetic operator with KQL's rules for numbers, datetimes and timespans.
func arith(op string, a, b Value) Value {
	a, b = a.undyn(), b.undyn()
	if a.IsNull() || b.IsNull() {
		return Value{}
	}
	isInt := func(v Value) bool { return v.K == Int || v.K == Long }
	switch {
	case isInt(a) && isInt(b):
		k := Long
		if a.K == Int && b.K == Int {
			k = Int
		}
		switch op {
		case "+":
			return Value{K: k, I: a.I + b.I}
		case "-":
			return Value{K: k, I: a.I - b.I}
		case "*":
			return Value{K: k, I: a.I * b.I}
		case "/":
			if b.I == 0 {
				return Value{}
			}
			return Value{K: k, I: a.I / b.I}
		case "%":
			if b.I == 0 {
				return Value{}
			}
			return Value{K: k, I: a.I % b.I}
		}
	case a.isNumeric() && b.isNumeric():
		x, _ := a.num()
		y, _ := b.num()
		switch op {
		case "+":
			return RealValue(x + y)
		case "-":
			return RealValue(x - y)
		case "*":
			return RealValue(x * y)
		case "/":
			return RealValue(x / y)
		case "%":
			return RealValue(math.Mod(x, y))
		}
	case a.K == DateTime && b.K == TimeSpan:
		switch op {
		case "+":
			return Value{K: DateTime, I: a.I + b.I}
		case "-":
			return Value{K: DateTime, I: a.I - b.I}
		}
	case a.K == TimeSpan && b.K == DateTime && op == "+":
		return Value{K: DateTime, I: a.I + b.I}
	case a.K == DateTime && b.K == DateTime && op == "-":
		return SpanValue(time.Duration(a.I - b.I))
	case a.K == TimeSpan && b.K == TimeSpan:
		switch op {
		case "+":
			return SpanValue(time.Duration(a.I + b.I))
		case "-":
			return SpanValue(time.Duration(a.I - b.I))
		case "/":
			if b.I == 0 {
				return Value{}
			}
			return RealValue(float64(a.I) / float64(b.I))
		case "%":
			if b.I == 0 {
				return Value{}
			}
			return SpanValue(time.Duration(a.I % b.I))
		}
	case a.K == TimeSpan && b.isNumeric():
		y, _ := b.num()
		switch op {
		case "*":
			return SpanValue(timeDuration(float64(a.I) * y))
		case "/":
			if y == 0 {
				return Value{}
			}
			return SpanValue(timeDuration(float64(a.I) / y))
		}
	case a.isNumeric() && b.K == TimeSpan && op == "*":
		x, _ := a.num()
		return SpanValue(timeDuration(x * float64(b.I)))
	case a.K == String && b.K == String && op == "+":
		return Value{} // KQL has no string +; strcat joins strings
	}
	return Value{}
}

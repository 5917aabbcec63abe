package query

import (
	"strconv"
	"strings"
)

// Collection is what a query reads: FROM devices, devices.modules or devices.jobs.
type Collection int

// The collections of IoT Hub's query language.
const (
	Devices Collection = iota
	Modules
	Jobs
)

func (c Collection) String() string {
	switch c {
	case Modules:
		return "devices.modules"
	case Jobs:
		return "devices.jobs"
	}
	return "devices"
}

// Item types IoT Hub names in the x-ms-item-type response header.
const (
	ItemTwin      = "twin"
	ItemRaw       = "raw"
	ItemDeviceJob = "deviceJob"
)

// Query is a parsed query. It is safe for concurrent use.
type Query struct {
	text    string
	from    Collection
	top     int // -1 when the query has no TOP
	star    bool
	items   []item
	where   expr // nil means every document
	groupBy []*pathExpr
	agg     bool // some item is an aggregate, so the result is one row per group
}

// From returns the collection the query reads.
func (q *Query) From() Collection { return q.from }

// ItemType is the x-ms-item-type of the query's results: twin for SELECT * over twins,
// deviceJob over devices.jobs, raw for projections and aggregates.
func (q *Query) ItemType() string {
	switch {
	case q.from == Jobs:
		return ItemDeviceJob
	case q.star:
		return ItemTwin
	}
	return ItemRaw
}

// item is one element of the SELECT list.
type item struct {
	pos     int    // byte offset where the item starts
	name    string // output property name
	aliased bool   // the name comes from AS
	expr    expr   // nil for an aggregate
	agg     *aggregate
}

// expr is an expression evaluated against one document.
type expr interface {
	eval(doc map[string]any) any
}

// literal is a constant: number, string, boolean, null, undefined, or an array of constants.
type literal struct{ v any }

func (l *literal) eval(map[string]any) any { return l.v }

// segment is one step of a property path: a name, or an index into an array.
type segment struct {
	name  string
	index int
	isIdx bool
}

// pathExpr reads a property of the document: deviceId, tags.location.region, tags['my-tag'].
type pathExpr struct {
	pos  int
	segs []segment
}

func (p *pathExpr) eval(doc map[string]any) any {
	var cur any = doc
	for _, s := range p.segs {
		switch c := cur.(type) {
		case map[string]any:
			if s.isIdx {
				return undefined
			}
			v, ok := c[s.name]
			if !ok {
				if v, ok = lookupFold(c, s.name); !ok {
					return undefined
				}
			}
			cur = v
		case []any:
			if !s.isIdx || s.index >= len(c) {
				return undefined
			}
			cur = c[s.index]
		default:
			return undefined
		}
	}
	return cur
}

// lookupFold finds a property whose name matches in any case (IoT Hub's property names are
// case-insensitive). When several do, the smallest name wins, so the answer does not depend on
// map order.
func lookupFold(m map[string]any, name string) (any, bool) {
	var (
		best  string
		found bool
	)
	for k := range m {
		if strings.EqualFold(k, name) && (!found || k < best) {
			best, found = k, true
		}
	}
	if !found {
		return nil, false
	}
	return m[best], true
}

// String writes the path as a query would, with the root name in its canonical case.
func (p *pathExpr) String() string {
	var b strings.Builder
	for i, s := range p.segs {
		switch {
		case s.isIdx:
			b.WriteString("[" + strconv.Itoa(s.index) + "]")
		case i > 0:
			b.WriteString("." + s.name)
		default:
			b.WriteString(s.name)
		}
	}
	return b.String()
}

// unary is NOT x or -x.
type unary struct {
	op tokKind // tIdent for NOT, tMinus, tPlus
	x  expr
}

func (u *unary) eval(doc map[string]any) any {
	v := u.x.eval(doc)
	switch u.op {
	case tIdent: // NOT
		if b, ok := v.(bool); ok {
			return !b
		}
		return undefined
	case tMinus:
		if f, ok := number(v); ok {
			return num(-f)
		}
		return undefined
	}
	if f, ok := number(v); ok {
		return num(f)
	}
	return undefined
}

// logical is AND or OR with three-valued logic: a side that is not a boolean is undefined, and
// undefined AND false is false, undefined OR true is true.
type logical struct {
	and  bool
	l, r expr
}

func (e *logical) eval(doc map[string]any) any {
	l := e.l.eval(doc)
	lb, lok := l.(bool)
	if lok && lb != e.and { // false AND ..., true OR ...
		return lb
	}
	r := e.r.eval(doc)
	rb, rok := r.(bool)
	if rok && rb != e.and {
		return rb
	}
	if lok && rok {
		return e.and
	}
	return undefined
}

// comparison is = != < <= > >= between primitives of the same type.
type comparison struct {
	op   tokKind
	l, r expr
}

func (e *comparison) eval(doc map[string]any) any {
	c, ok := compare(e.l.eval(doc), e.r.eval(doc))
	if !ok {
		return undefined
	}
	switch e.op {
	case tEq:
		return c == 0
	case tNe:
		return c != 0
	case tLt:
		return c < 0
	case tLe:
		return c <= 0
	case tGt:
		return c > 0
	}
	return c >= 0
}

// arithmetic is + - * / % between numbers.
type arithmetic struct {
	op   tokKind
	l, r expr
}

func (e *arithmetic) eval(doc map[string]any) any {
	x, ok1 := number(e.l.eval(doc))
	y, ok2 := number(e.r.eval(doc))
	if !ok1 || !ok2 {
		return undefined
	}
	switch e.op {
	case tPlus:
		return num(x + y)
	case tMinus:
		return num(x - y)
	case tStar:
		return num(x * y)
	case tSlash:
		if y == 0 {
			return undefined
		}
		return num(x / y)
	}
	if y == 0 {
		return undefined
	}
	return num(mathMod(x, y))
}

// inList is x IN [...] or x NIN [...]; the list is a set, so a long list costs one lookup.
type inList struct {
	x   expr
	set map[valueKey]struct{}
	not bool
}

func (e *inList) eval(doc map[string]any) any {
	k, ok := keyOf(e.x.eval(doc))
	if !ok {
		return undefined
	}
	_, found := e.set[k]
	return found != e.not
}

// call is a built-in function applied to its arguments.
type call struct {
	fn   *function
	args []expr
}

func (c *call) eval(doc map[string]any) any {
	if c.fn.variadic != nil {
		vals := make([]any, len(c.args))
		for i, a := range c.args {
			vals[i] = a.eval(doc)
		}
		return c.fn.variadic(vals)
	}
	var a args
	for i, e := range c.args {
		a[i] = e.eval(doc)
	}
	return c.fn.impl(a, len(c.args))
}

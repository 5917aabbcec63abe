package query

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on query text, as IoT Hub has them or as Roost chose them where IoT Hub is silent.
const (
	// MaxQueryLength is the longest query IoT Hub accepts, in characters.
	MaxQueryLength = 8192
	// MaxDepth bounds the nesting of parentheses, NOT, signs, function calls and arrays, so a
	// hostile query cannot exhaust the stack.
	MaxDepth = 64
)

// reserved words cannot start a property path (after a '.' any name is allowed, so
// tags.group works).
var reserved = map[string]bool{
	"SELECT": true, "TOP": true, "FROM": true, "WHERE": true, "GROUP": true, "BY": true, "AS": true,
	"AND": true, "OR": true, "NOT": true, "IN": true, "NIN": true, "TRUE": true, "FALSE": true,
	"NULL": true, "UNDEFINED": true, "ORDER": true,
}

// rootNames are the twin's top-level property names in the case IoT Hub writes them. A query
// may spell them in any case (SELECT DeviceId ...); results use these names.
var rootNames = map[string]string{}

func init() {
	for _, n := range []string{
		"deviceId", "moduleId", "etag", "deviceEtag", "version", "status", "statusReason",
		"statusUpdateTime", "connectionState", "lastActivityTime", "cloudToDeviceMessageCount",
		"authenticationType", "x509Thumbprint", "capabilities", "deviceScope", "parentScopes",
		"modelId", "configurations", "tags", "properties", "managedBy",
		// devices.jobs rows
		"jobId", "jobType", "startTimeUtc", "endTimeUtc", "createdDateTimeUtc",
		"lastUpdatedDateTimeUtc", "outcome", "parentJobId",
	} {
		rootNames[strings.ToLower(n)] = n
	}
}

// Parse parses a query such as
//
//	SELECT * FROM devices WHERE tags.location.region = 'US'
//	SELECT properties.reported.status AS status, COUNT() AS n FROM devices GROUP BY properties.reported.status
//
// Every error is an [*errcode.Error] with code 400004 whose cause is a [*SyntaxError].
func Parse(text string) (*Query, error) {
	p, err := newParser(text)
	if err != nil {
		return nil, err
	}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	if err := p.resolve(q); err != nil {
		return nil, err
	}
	return q, nil
}

// Condition is a parsed bare condition over device twins, the form jobs (queryCondition) and
// configurations (targetCondition) use: "tags.site = 'A' AND status = 'enabled'", or "*" for
// every device.
type Condition struct {
	e expr // nil for *
}

// ParseCondition parses a condition. Errors are as for [Parse].
func ParseCondition(text string) (*Condition, error) {
	p, err := newParser(text)
	if err != nil {
		return nil, err
	}
	if p.tok().kind == tStar && p.peek(1).kind == tEOF {
		return &Condition{}, nil
	}
	if p.tok().kind == tEOF {
		return nil, syntaxErrorf(text, 0, "the condition is empty")
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if err := p.want(tEOF, "end of condition"); err != nil {
		return nil, err
	}
	q := &Query{text: text, from: Devices, where: e, top: -1}
	if err := p.resolve(q); err != nil {
		return nil, err
	}
	return &Condition{e: q.where}, nil
}

// Match reports whether the twin document satisfies the condition.
func (c *Condition) Match(doc map[string]any) bool { return c.e == nil || truthy(c.e.eval(doc)) }

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
	paths []*pathExpr // every path, for resolve
}

func newParser(text string) (*parser, error) {
	if n := utf8.RuneCountInString(text); n > MaxQueryLength {
		return nil, invalidf("The query is invalid: it is %d characters long, more than the %d allowed", n, MaxQueryLength)
	}
	if strings.TrimSpace(text) == "" {
		return nil, invalidf("The query is invalid: it is empty")
	}
	p := &parser{src: text}
	lx := lexer{src: text}
	for {
		t, err := lx.next()
		if err != nil {
			return nil, err
		}
		p.toks = append(p.toks, t)
		if t.kind == tEOF {
			return p, nil
		}
	}
}

func (p *parser) tok() token { return p.toks[p.i] }

func (p *parser) peek(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) advance() token {
	t := p.toks[p.i]
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return syntaxErrorf(p.src, t.pos, format, args...)
}

// unexpected reports the current token where something else was needed.
func (p *parser) unexpected(want string) error {
	t := p.tok()
	return p.errorf(t, "expected %s, found %s", want, short(t))
}

// short describes a token, cutting long names so that messages stay readable.
func short(t token) string {
	if t.kind == tIdent && len(t.text) > 40 {
		return "'" + t.text[:40] + "...'"
	}
	return t.describe()
}

func (p *parser) want(k tokKind, what string) error {
	if p.tok().kind != k {
		return p.unexpected(what)
	}
	p.advance()
	return nil
}

func (p *parser) keyword(kw string) error {
	if !p.tok().is(kw) {
		return p.unexpected(kw)
	}
	p.advance()
	return nil
}

// enter counts one level of nesting at t.
func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errorf(t, "the query is nested more than %d levels deep", MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) query() (*Query, error) {
	q := &Query{text: p.src, top: -1}
	if err := p.keyword("SELECT"); err != nil {
		return nil, err
	}
	if p.tok().is("TOP") {
		p.advance()
		t := p.tok()
		if t.kind != tNumber || t.num != math.Trunc(t.num) || t.num < 0 || t.num > math.MaxInt32 {
			return nil, p.unexpected("a whole number after TOP")
		}
		q.top = int(t.num)
		p.advance()
	}
	if p.tok().kind == tStar {
		q.star = true
		p.advance()
	} else {
		for {
			it, err := p.selectItem()
			if err != nil {
				return nil, err
			}
			q.items = append(q.items, it)
			if p.tok().kind != tComma {
				break
			}
			p.advance()
		}
	}
	if err := p.keyword("FROM"); err != nil {
		return nil, err
	}
	from, err := p.collection()
	if err != nil {
		return nil, err
	}
	q.from = from
	if p.tok().is("WHERE") {
		p.advance()
		if q.where, err = p.expr(); err != nil {
			return nil, err
		}
	}
	if p.tok().is("GROUP") {
		p.advance()
		if err := p.keyword("BY"); err != nil {
			return nil, err
		}
		for {
			t := p.tok()
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			pe, ok := e.(*pathExpr)
			if !ok {
				return nil, p.errorf(t, "GROUP BY needs a property path")
			}
			q.groupBy = append(q.groupBy, pe)
			if p.tok().kind != tComma {
				break
			}
			p.advance()
		}
	}
	if p.tok().kind != tEOF {
		if p.tok().is("ORDER") {
			return nil, p.errorf(p.tok(), "ORDER BY is not supported by IoT Hub queries")
		}
		return nil, p.unexpected("end of query")
	}
	return q, nil
}

func (p *parser) selectItem() (item, error) {
	t := p.tok()
	var it item
	if k, ok := aggregates[strings.ToUpper(t.text)]; ok && t.kind == tIdent && p.peek(1).kind == tLParen {
		g, err := p.aggregate(k)
		if err != nil {
			return item{}, err
		}
		it.agg = g
		if nt := p.tok(); nt.kind != tComma && !nt.is("AS") && !nt.is("FROM") {
			return item{}, p.errorf(nt, "an aggregate must be a whole SELECT item (found %s after it)", short(nt))
		}
	} else {
		e, err := p.expr()
		if err != nil {
			return item{}, err
		}
		it.expr = e
	}
	it.pos = t.pos
	if p.tok().is("AS") {
		p.advance()
		a := p.tok()
		if a.kind != tIdent || reserved[strings.ToUpper(a.text)] {
			return item{}, p.unexpected("a name after AS")
		}
		it.name = a.text
		it.aliased = true
		p.advance()
	}
	return it, nil
}

func (p *parser) aggregate(k aggKind) (*aggregate, error) {
	name := strings.ToUpper(p.advance().text)
	p.advance() // (
	g := &aggregate{kind: k}
	if p.tok().kind == tRParen {
		if k != aggCount {
			return nil, p.errorf(p.tok(), "%s needs an argument", name)
		}
		p.advance()
		return g, nil
	}
	if k == aggCount && p.tok().kind == tStar && p.peek(1).kind == tRParen {
		p.advance()
		p.advance()
		return g, nil
	}
	arg, err := p.expr()
	if err != nil {
		return nil, err
	}
	g.arg = arg
	if err := p.want(tRParen, "')' after the argument of "+name); err != nil {
		return nil, err
	}
	return g, nil
}

func (p *parser) collection() (Collection, error) {
	t := p.tok()
	if !t.is("devices") {
		return 0, p.errorf(t, "expected devices, devices.modules or devices.jobs after FROM, found %s", short(t))
	}
	p.advance()
	if p.tok().kind != tDot {
		return Devices, nil
	}
	p.advance()
	switch n := p.tok(); {
	case n.is("modules"):
		p.advance()
		return Modules, nil
	case n.is("jobs"):
		p.advance()
		return Jobs, nil
	default:
		return 0, p.errorf(n, "expected modules or jobs after 'devices.', found %s", short(n))
	}
}

func (p *parser) expr() (expr, error) {
	if err := p.enter(p.tok()); err != nil {
		return nil, err
	}
	defer p.leave()
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.tok().is("OR") {
		p.advance()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &logical{and: false, l: l, r: r}
	}
	return l, nil
}

func (p *parser) and() (expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.tok().is("AND") {
		p.advance()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &logical{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *parser) not() (expr, error) {
	if t := p.tok(); t.is("NOT") {
		if err := p.enter(t); err != nil {
			return nil, err
		}
		defer p.leave()
		p.advance()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &unary{op: tIdent, x: x}, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (expr, error) {
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.tok()
	switch {
	case t.kind >= tEq && t.kind <= tGe:
		p.advance()
		r, err := p.additive()
		if err != nil {
			return nil, err
		}
		return &comparison{op: t.kind, l: l, r: r}, nil
	case t.is("IN"), t.is("NIN"):
		p.advance()
		return p.inList(l, t.is("NIN"))
	case t.is("NOT") && p.peek(1).is("IN"):
		p.advance()
		p.advance()
		return p.inList(l, true)
	}
	return l, nil
}

func (p *parser) inList(x expr, not bool) (expr, error) {
	t := p.tok()
	if t.kind != tLBracket {
		return nil, p.unexpected("an array constant such as ['a', 'b'] after IN")
	}
	arr, err := p.array()
	if err != nil {
		return nil, err
	}
	set := make(map[valueKey]struct{}, len(arr))
	for _, v := range arr {
		if k, ok := keyOf(v); ok {
			set[k] = struct{}{}
		}
	}
	return &inList{x: x, set: set, not: not}, nil
}

// array parses an array constant: [c1, c2, ...] whose elements are constants.
func (p *parser) array() ([]any, error) {
	open := p.tok()
	if err := p.enter(open); err != nil {
		return nil, err
	}
	defer p.leave()
	p.advance()
	out := []any{}
	if p.tok().kind == tRBracket {
		p.advance()
		return out, nil
	}
	for {
		v, err := p.constant()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch p.tok().kind {
		case tComma:
			p.advance()
			continue
		case tRBracket:
			p.advance()
			return out, nil
		}
		return nil, p.unexpected("',' or ']' in the array")
	}
}

// constant parses one array element.
func (p *parser) constant() (any, error) {
	t := p.tok()
	switch {
	case t.kind == tNumber:
		p.advance()
		return t.num, nil
	case t.kind == tMinus && p.peek(1).kind == tNumber:
		p.advance()
		return num(-p.advance().num), nil
	case t.kind == tString:
		p.advance()
		return t.text, nil
	case t.is("true"), t.is("false"):
		p.advance()
		return t.is("true"), nil
	case t.is("null"):
		p.advance()
		return nil, nil
	case t.kind == tLBracket:
		return p.array()
	}
	return nil, p.unexpected("a constant in the array")
}

func (p *parser) additive() (expr, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for k := p.tok().kind; k == tPlus || k == tMinus; k = p.tok().kind {
		p.advance()
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &arithmetic{op: k, l: l, r: r}
	}
	return l, nil
}

func (p *parser) multiplicative() (expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for k := p.tok().kind; k == tStar || k == tSlash || k == tPercent; k = p.tok().kind {
		p.advance()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &arithmetic{op: k, l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary() (expr, error) {
	t := p.tok()
	if t.kind != tMinus && t.kind != tPlus {
		return p.primary()
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer p.leave()
	p.advance()
	if n := p.tok(); n.kind == tNumber && t.kind == tMinus {
		p.advance()
		return &literal{v: num(-n.num)}, nil
	}
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	return &unary{op: t.kind, x: x}, nil
}

func (p *parser) primary() (expr, error) {
	t := p.tok()
	switch t.kind {
	case tNumber:
		p.advance()
		return &literal{v: t.num}, nil
	case tString:
		p.advance()
		return &literal{v: t.text}, nil
	case tLBracket:
		arr, err := p.array()
		if err != nil {
			return nil, err
		}
		return &literal{v: arr}, nil
	case tLParen:
		p.advance()
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.want(tRParen, "')'"); err != nil {
			return nil, err
		}
		return e, nil
	case tIdent:
		switch strings.ToUpper(t.text) {
		case "TRUE":
			p.advance()
			return &literal{v: true}, nil
		case "FALSE":
			p.advance()
			return &literal{v: false}, nil
		case "NULL":
			p.advance()
			return &literal{v: nil}, nil
		case "UNDEFINED":
			p.advance()
			return &literal{v: undefined}, nil
		}
		if p.peek(1).kind == tLParen {
			return p.call()
		}
		if reserved[strings.ToUpper(t.text)] {
			return nil, p.errorf(t, "expected an expression, found keyword %s", strings.ToUpper(t.text))
		}
		return p.path()
	}
	return nil, p.unexpected("an expression")
}

func (p *parser) call() (expr, error) {
	t := p.tok()
	name := strings.ToUpper(t.text)
	if _, ok := aggregates[name]; ok {
		return nil, p.errorf(t, "the aggregate %s is allowed only as a whole SELECT item", name)
	}
	fn, ok := functions[name]
	if !ok {
		return nil, p.errorf(t, "unknown function %s", short(t))
	}
	if err := p.enter(t); err != nil {
		return nil, err
	}
	defer p.leave()
	p.advance()
	p.advance() // (
	c := &call{fn: fn}
	if p.tok().kind != tRParen {
		for {
			a, err := p.expr()
			if err != nil {
				return nil, err
			}
			c.args = append(c.args, a)
			if p.tok().kind != tComma {
				break
			}
			p.advance()
		}
	}
	if err := p.want(tRParen, "',' or ')' in the arguments of "+fn.name); err != nil {
		return nil, err
	}
	if n := len(c.args); n < fn.min || fn.max >= 0 && n > fn.max {
		return nil, p.errorf(t, "%s takes %s, not %d", fn.name, arity(fn), n)
	}
	return c, nil
}

func arity(fn *function) string {
	plural := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return strconv.Itoa(n) + " arguments"
	}
	switch {
	case fn.max < 0:
		return "at least " + plural(fn.min)
	case fn.min == fn.max:
		return plural(fn.min)
	}
	return strconv.Itoa(fn.min) + " or " + plural(fn.max)
}

// path parses a property path: name {. name | [ 'name' ] | [ index ]}.
func (p *parser) path() (expr, error) {
	t := p.advance()
	pe := &pathExpr{pos: t.pos, segs: []segment{{name: t.text}}}
	for {
		switch p.tok().kind {
		case tDot:
			p.advance()
			n := p.tok()
			if n.kind != tIdent {
				return nil, p.unexpected("a property name after '.'")
			}
			p.advance()
			pe.segs = append(pe.segs, segment{name: n.text})
			continue
		case tLBracket:
			p.advance()
			n := p.tok()
			switch {
			case n.kind == tString:
				pe.segs = append(pe.segs, segment{name: n.text})
			case n.kind == tNumber && n.num == math.Trunc(n.num) && n.num >= 0 && n.num <= math.MaxInt32:
				pe.segs = append(pe.segs, segment{index: int(n.num), isIdx: true})
			default:
				return nil, p.unexpected("a property name in quotes or an array index in '[ ]'")
			}
			p.advance()
			if err := p.want(tRBracket, "']'"); err != nil {
				return nil, err
			}
			continue
		}
		break
	}
	p.paths = append(p.paths, pe)
	return pe, nil
}

// resolve strips the collection's name from paths (devices.jobs.status is status), spells root
// names canonically, names the SELECT items and checks the rules that need the whole query.
func (p *parser) resolve(q *Query) error {
	for _, pe := range p.paths {
		prefix := 1
		switch q.from {
		case Modules:
			prefix = 2
			if len(pe.segs) < 2 || !strings.EqualFold(pe.segs[1].name, "modules") || pe.segs[1].isIdx {
				prefix = 0
			}
		case Jobs:
			prefix = 2
			if len(pe.segs) < 2 || !strings.EqualFold(pe.segs[1].name, "jobs") || pe.segs[1].isIdx {
				prefix = 0
			}
		}
		if prefix > 0 && strings.EqualFold(pe.segs[0].name, "devices") {
			if len(pe.segs) == prefix {
				return syntaxErrorf(p.src, pe.pos, "%s names the collection, not a property", pe)
			}
			if !pe.segs[prefix].isIdx {
				pe.segs = pe.segs[prefix:]
			}
		}
		if canon, ok := rootNames[strings.ToLower(pe.segs[0].name)]; ok {
			pe.segs[0].name = canon
		}
	}
	for _, g := range q.groupBy {
		if g.segs[len(g.segs)-1].isIdx {
			return syntaxErrorf(p.src, g.pos, "GROUP BY needs a property, not an array element")
		}
	}

	switch {
	case q.from == Jobs && !q.star:
		return syntaxErrorf(p.src, q.items[0].pos, "queries on devices.jobs support only SELECT *")
	case q.from == Jobs && len(q.groupBy) > 0:
		return syntaxErrorf(p.src, q.groupBy[0].pos, "queries on devices.jobs do not support GROUP BY")
	case q.star && len(q.groupBy) > 0:
		return syntaxErrorf(p.src, q.groupBy[0].pos, "GROUP BY needs a SELECT list of grouped properties and aggregates, not SELECT *")
	}
	for _, it := range q.items {
		if it.agg != nil {
			q.agg = true
		}
	}
	if len(q.groupBy) > 0 {
		q.agg = true
	}
	names := map[string]bool{}
	for i := range q.items {
		it := &q.items[i]
		if q.agg && it.agg == nil {
			pe, ok := it.expr.(*pathExpr)
			if !ok || !q.grouped(pe) {
				what := "this expression"
				if ok {
					what = pe.String()
				}
				if len(q.groupBy) == 0 {
					return syntaxErrorf(p.src, it.pos, "%s is neither an aggregate nor in GROUP BY (a query with aggregates needs GROUP BY for other properties)", what)
				}
				return syntaxErrorf(p.src, it.pos, "%s is neither an aggregate nor in GROUP BY", what)
			}
		}
		if !it.aliased {
			it.name = "$" + strconv.Itoa(i+1)
			if pe, ok := it.expr.(*pathExpr); ok && !pe.segs[len(pe.segs)-1].isIdx {
				it.name = pe.segs[len(pe.segs)-1].name
			}
		}
		if names[it.name] {
			return syntaxErrorf(p.src, it.pos, "two SELECT items are named '%s' (name one with AS)", it.name)
		}
		names[it.name] = true
	}
	return nil
}

// grouped reports whether the path is one of the GROUP BY paths.
func (q *Query) grouped(pe *pathExpr) bool {
	for _, g := range q.groupBy {
		if strings.EqualFold(g.String(), pe.String()) {
			return true
		}
	}
	return false
}

package kql

import (
	"strings"
)

// MaxDepth bounds how deeply expressions and pipelines may nest.
const MaxDepth = 64

// Parse parses a query. Errors are [*Error] values naming the line and column.
func Parse(src string) (*Query, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	q, err := p.query()
	if err != nil {
		return nil, err
	}
	return q, nil
}

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) peekAt(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) advance() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tPunct && t.text == s
}

func (p *parser) isWord(w string) bool {
	t := p.peek()
	return t.kind == tIdent && t.text == w
}

func (p *parser) acceptPunct(s string) bool {
	if p.isPunct(s) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) acceptWord(w string) bool {
	if p.isWord(w) {
		p.advance()
		return true
	}
	return false
}

func (p *parser) expectPunct(s string, what string) (token, error) {
	if !p.isPunct(s) {
		return token{}, p.unexpected("'" + s + "'" + what)
	}
	return p.advance(), nil
}

func (p *parser) unexpected(want string) *Error {
	t := p.peek()
	return errorf(t.pos, "expected %s, found %s", want, t.describe())
}

// adjacent reports whether token j starts right where token j-1 ends (no space between), which
// is how project-away, !contains and in~ are spelled.
func (p *parser) adjacent(j int) bool {
	return j > 0 && j < len(p.toks) && p.toks[j].off == p.toks[j-1].end
}

func (p *parser) enter(pos Pos) error {
	p.depth++
	if p.depth > MaxDepth {
		return errorf(pos, "the query nests more than %d levels deep", MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) query() (*Query, error) {
	q := &Query{}
	for p.isWord("let") {
		lp := p.advance().pos
		name := p.peek()
		if name.kind != tIdent {
			return nil, p.unexpected("a name after let")
		}
		p.advance()
		if _, err := p.expectPunct("=", " after the let name"); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expectPunct(";", " after a let statement"); err != nil {
			return nil, err
		}
		q.Lets = append(q.Lets, &Let{Pos: lp, Name: name.text, Value: v})
	}
	body, err := p.pipeline()
	if err != nil {
		return nil, err
	}
	q.Body = body
	for p.acceptPunct(";") {
	}
	if p.peek().kind != tEOF {
		return nil, p.unexpected("'|' or the end of the query")
	}
	return q, nil
}

func (p *parser) pipeline() (*Pipeline, error) {
	if err := p.enter(p.peek().pos); err != nil {
		return nil, err
	}
	defer p.leave()
	src, err := p.source()
	if err != nil {
		return nil, err
	}
	pl := &Pipeline{Source: src}
	for p.acceptPunct("|") {
		op, err := p.operator()
		if err != nil {
			return nil, err
		}
		pl.Ops = append(pl.Ops, op)
	}
	return pl, nil
}

func (p *parser) source() (Source, error) {
	t := p.peek()
	switch {
	case t.kind == tPunct && t.text == "(":
		p.advance()
		body, err := p.pipeline()
		if err != nil {
			return nil, err
		}
		if _, err := p.expectPunct(")", " to close the sub-query"); err != nil {
			return nil, err
		}
		return &SubPipeline{Pos: t.pos, Body: body}, nil
	case t.kind != tIdent:
		return nil, p.unexpected("a table name, search, union or print")
	case t.text == "search":
		p.advance()
		return p.searchSource(t.pos)
	case t.text == "union":
		p.advance()
		s := &SearchSource{Pos: t.pos, Union: true}
		for {
			n := p.peek()
			if n.kind != tIdent {
				return nil, p.unexpected("a table name")
			}
			p.advance()
			s.Tables = append(s.Tables, TableRef{Pos: n.pos, Name: n.text})
			if !p.acceptPunct(",") {
				return s, nil
			}
		}
	case t.text == "print":
		p.advance()
		items, err := p.namedList(false)
		if err != nil {
			return nil, err
		}
		return &PrintSource{Pos: t.pos, Items: items}, nil
	}
	p.advance()
	return &TableRef{Pos: t.pos, Name: t.text}, nil
}

// searchSource parses what follows search as a source: [kind=...] [in (T, ...)] Pred.
func (p *parser) searchSource(pos Pos) (Source, error) {
	s := &SearchSource{Pos: pos}
	cs, err := p.searchKind()
	if err != nil {
		return nil, err
	}
	s.CaseSensitive = cs
	if p.isWord("in") && p.peekAt(1).kind == tPunct && p.peekAt(1).text == "(" {
		p.advance()
		p.advance()
		for {
			n := p.peek()
			if n.kind != tIdent {
				return nil, p.unexpected("a table name")
			}
			p.advance()
			s.Tables = append(s.Tables, TableRef{Pos: n.pos, Name: n.text})
			if p.acceptPunct(")") {
				break
			}
			if _, err := p.expectPunct(",", " or ')' in the table list"); err != nil {
				return nil, err
			}
		}
	}
	pred, err := p.searchPred()
	if err != nil {
		return nil, err
	}
	s.Pred = pred
	return s, nil
}

func (p *parser) searchKind() (bool, error) {
	if !p.isWord("kind") || !(p.peekAt(1).kind == tPunct && p.peekAt(1).text == "=") {
		return false, nil
	}
	p.advance()
	p.advance()
	k := p.peek()
	if k.kind != tIdent || (k.text != "case_sensitive" && k.text != "case_insensitive") {
		return false, p.unexpected("case_sensitive or case_insensitive")
	}
	p.advance()
	return k.text == "case_sensitive", nil
}

// searchPred parses * or a predicate; nil means every row.
func (p *parser) searchPred() (Expr, error) {
	if p.isPunct("*") {
		n := p.peekAt(1)
		if n.kind == tEOF || n.kind == tPunct && (n.text == "|" || n.text == ")" || n.text == ";") {
			p.advance()
			return nil, nil
		}
	}
	return p.expr()
}

var operatorWords = "where, filter, project, project-away, project-rename, extend, summarize, " +
	"order by, sort by, top, take, limit, distinct, count, search, getschema, render"

func (p *parser) operator() (Op, error) {
	t := p.peek()
	if t.kind != tIdent {
		return nil, p.unexpected("an operator (" + operatorWords + ")")
	}
	p.advance()
	switch t.text {
	case "where", "filter":
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &WhereOp{Pos: t.pos, Pred: e}, nil
	case "search":
		cs, err := p.searchKind()
		if err != nil {
			return nil, err
		}
		e, err := p.searchPred()
		if err != nil {
			return nil, err
		}
		return &SearchOp{Pos: t.pos, Pred: e, CaseSensitive: cs}, nil
	case "project":
		if p.isPunct("-") && p.adjacent(p.i) && p.peekAt(1).kind == tIdent && p.adjacent(p.i+1) {
			p.advance()
			sub := p.advance()
			switch sub.text {
			case "away":
				names, err := p.namePatterns(true)
				if err != nil {
					return nil, err
				}
				return &ProjectAwayOp{Pos: t.pos, Names: names}, nil
			case "rename":
				return p.projectRename(t.pos)
			}
			return nil, errorf(sub.pos, "project-%s is not supported (project, project-away, project-rename are)", sub.text)
		}
		items, err := p.namedList(false)
		if err != nil {
			return nil, err
		}
		return &ProjectOp{Pos: t.pos, Items: items}, nil
	case "extend":
		items, err := p.namedList(false)
		if err != nil {
			return nil, err
		}
		return &ProjectOp{Pos: t.pos, Extend: true, Items: items}, nil
	case "summarize":
		return p.summarize(t.pos)
	case "order", "sort":
		if !p.acceptWord("by") {
			return nil, p.unexpected("'by' after " + t.text)
		}
		keys, err := p.sortKeys()
		if err != nil {
			return nil, err
		}
		return &SortOp{Pos: t.pos, Keys: keys}, nil
	case "top":
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if !p.acceptWord("by") {
			return nil, p.unexpected("'by' after the count of top")
		}
		keys, err := p.sortKeys()
		if err != nil {
			return nil, err
		}
		if len(keys) != 1 {
			return nil, errorf(t.pos, "top takes one sort expression")
		}
		return &TopOp{Pos: t.pos, N: n, Key: keys[0]}, nil
	case "take", "limit":
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		return &TakeOp{Pos: t.pos, N: n}, nil
	case "distinct":
		if p.isPunct("*") {
			p.advance()
			return &DistinctOp{Pos: t.pos, Star: true}, nil
		}
		items, err := p.namedList(false)
		if err != nil {
			return nil, err
		}
		return &DistinctOp{Pos: t.pos, Items: items}, nil
	case "count":
		return &CountOp{Pos: t.pos}, nil
	case "getschema":
		return &GetSchemaOp{Pos: t.pos}, nil
	case "render":
		// Rendering is the front end's business; skip its arguments.
		for p.peek().kind != tEOF && !p.isPunct("|") && !p.isPunct(";") && !p.isPunct(")") {
			p.advance()
		}
		return &RenderOp{Pos: t.pos}, nil
	case "mv", "parse", "join", "lookup", "make", "evaluate", "as", "invoke", "serialize", "sample",
		"range", "fork", "facet", "partition", "scan":
		return nil, errorf(t.pos, "the %s operator is not supported; Roost supports %s", t.text, operatorWords)
	}
	return nil, errorf(t.pos, "unknown operator '%s'; Roost supports %s", t.text, operatorWords)
}

func (p *parser) projectRename(pos Pos) (Op, error) {
	op := &ProjectRenameOp{Pos: pos}
	for {
		n := p.peek()
		if n.kind != tIdent {
			return nil, p.unexpected("a new column name")
		}
		p.advance()
		if _, err := p.expectPunct("=", " in project-rename"); err != nil {
			return nil, err
		}
		o := p.peek()
		if o.kind != tIdent {
			return nil, p.unexpected("the column to rename")
		}
		p.advance()
		op.Pairs = append(op.Pairs, [2]NamePat{{Pos: n.pos, Name: n.text}, {Pos: o.pos, Name: o.text}})
		if !p.acceptPunct(",") {
			return op, nil
		}
	}
}

// namePatterns parses a comma-separated list of column names; with wildcards, a name may be
// followed or made of '*'.
func (p *parser) namePatterns(wildcards bool) ([]NamePat, error) {
	var out []NamePat
	for {
		t := p.peek()
		switch {
		case t.kind == tIdent:
			p.advance()
			name := t.text
			if wildcards && p.isPunct("*") && p.adjacent(p.i) {
				p.advance()
				name += "*"
			}
			out = append(out, NamePat{Pos: t.pos, Name: name})
		case wildcards && t.kind == tPunct && t.text == "*":
			p.advance()
			out = append(out, NamePat{Pos: t.pos, Name: "*"})
		default:
			return nil, p.unexpected("a column name")
		}
		if !p.acceptPunct(",") {
			return out, nil
		}
	}
}

// namedList parses [Name =] expr, ... ; with multi, (a, b) = expr is allowed.
func (p *parser) namedList(multi bool) ([]NamedExpr, error) {
	var out []NamedExpr
	for {
		ne, err := p.namedExpr(multi)
		if err != nil {
			return nil, err
		}
		out = append(out, ne)
		if !p.acceptPunct(",") {
			return out, nil
		}
	}
}

func (p *parser) namedExpr(multi bool) (NamedExpr, error) {
	t := p.peek()
	if t.kind == tIdent && p.peekAt(1).kind == tPunct && p.peekAt(1).text == "=" {
		p.advance()
		p.advance()
		e, err := p.expr()
		if err != nil {
			return NamedExpr{}, err
		}
		return NamedExpr{Name: t.text, Expr: e}, nil
	}
	if multi && t.kind == tPunct && t.text == "(" {
		// (a, b) = arg_max(...)
		save := p.i
		p.advance()
		var names []string
		ok := true
		for {
			n := p.peek()
			if n.kind != tIdent {
				ok = false
				break
			}
			p.advance()
			names = append(names, n.text)
			if p.acceptPunct(")") {
				break
			}
			if !p.acceptPunct(",") {
				ok = false
				break
			}
		}
		if ok && p.acceptPunct("=") {
			e, err := p.expr()
			if err != nil {
				return NamedExpr{}, err
			}
			return NamedExpr{Names: names, Expr: e}, nil
		}
		p.i = save
	}
	e, err := p.expr()
	if err != nil {
		return NamedExpr{}, err
	}
	return NamedExpr{Expr: e}, nil
}

func (p *parser) summarize(pos Pos) (Op, error) {
	op := &SummarizeOp{Pos: pos}
	if !p.isWord("by") || p.peekAt(1).kind == tPunct && p.peekAt(1).text == "=" {
		if p.peek().kind != tEOF && !p.isPunct("|") {
			aggs, err := p.namedList(true)
			if err != nil {
				return nil, err
			}
			op.Aggs = aggs
		}
	}
	if p.acceptWord("by") {
		by, err := p.namedList(false)
		if err != nil {
			return nil, err
		}
		op.By = by
	}
	if len(op.Aggs) == 0 && len(op.By) == 0 {
		return nil, errorf(pos, "summarize needs an aggregation or a 'by' clause")
	}
	return op, nil
}

func (p *parser) sortKeys() ([]SortKey, error) {
	var keys []SortKey
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		k := SortKey{Expr: e}
		switch {
		case p.acceptWord("asc"):
			k.Asc = true
		case p.acceptWord("desc"):
		}
		if p.acceptWord("nulls") {
			switch {
			case p.acceptWord("first"):
				k.NullsFirst, k.NullsSet = true, true
			case p.acceptWord("last"):
				k.NullsSet = true
			default:
				return nil, p.unexpected("first or last after nulls")
			}
		}
		keys = append(keys, k)
		if !p.acceptPunct(",") {
			return keys, nil
		}
	}
}

// Expressions, lowest precedence first.

func (p *parser) expr() (Expr, error) {
	if err := p.enter(p.peek().pos); err != nil {
		return nil, err
	}
	defer p.leave()
	return p.orExpr()
}

func (p *parser) orExpr() (Expr, error) {
	x, err := p.andExpr()
	if err != nil {
		return nil, err
	}
	for p.isWord("or") {
		t := p.advance()
		y, err := p.andExpr()
		if err != nil {
			return nil, err
		}
		x = &Binary{Pos: t.pos, Op: "or", X: x, Y: y}
	}
	return x, nil
}

func (p *parser) andExpr() (Expr, error) {
	x, err := p.cmpExpr()
	if err != nil {
		return nil, err
	}
	for p.isWord("and") {
		t := p.advance()
		y, err := p.cmpExpr()
		if err != nil {
			return nil, err
		}
		x = &Binary{Pos: t.pos, Op: "and", X: x, Y: y}
	}
	return x, nil
}

// stringOps are the word operators that compare strings.
var stringOps = map[string]bool{
	"contains": true, "contains_cs": true, "has": true, "has_cs": true,
	"startswith": true, "startswith_cs": true, "endswith": true, "endswith_cs": true,
	"hasprefix": true, "hasprefix_cs": true, "hassuffix": true, "hassuffix_cs": true,
}

var cmpPuncts = map[string]bool{"==": true, "!=": true, "<>": true, "<": true, "<=": true, ">": true, ">=": true, "=~": true, "!~": true}

func (p *parser) cmpExpr() (Expr, error) {
	x, err := p.addExpr()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	switch {
	case t.kind == tPunct && cmpPuncts[t.text]:
		p.advance()
		y, err := p.addExpr()
		if err != nil {
			return nil, err
		}
		op := t.text
		if op == "<>" {
			op = "!="
		}
		return &Binary{Pos: t.pos, Op: op, X: x, Y: y}, nil
	case t.kind == tPunct && t.text == "!" && p.peekAt(1).kind == tIdent && p.adjacent(p.i+1):
		word := p.peekAt(1).text
		switch {
		case stringOps[word]:
			p.advance()
			p.advance()
			y, err := p.addExpr()
			if err != nil {
				return nil, err
			}
			return &Binary{Pos: t.pos, Op: "!" + word, X: x, Y: y}, nil
		case word == "in":
			p.advance()
			p.advance()
			return p.inList(t.pos, x, true)
		case word == "between":
			p.advance()
			p.advance()
			return p.between(t.pos, x, true)
		}
	case t.kind == tIdent:
		switch {
		case stringOps[t.text]:
			p.advance()
			y, err := p.addExpr()
			if err != nil {
				return nil, err
			}
			return &Binary{Pos: t.pos, Op: t.text, X: x, Y: y}, nil
		case t.text == "in":
			p.advance()
			return p.inList(t.pos, x, false)
		case t.text == "between":
			p.advance()
			return p.between(t.pos, x, false)
		case t.text == "has_any" || t.text == "has_all":
			p.advance()
			list, err := p.parenList()
			if err != nil {
				return nil, err
			}
			return &Call{Pos: t.pos, Name: "$" + t.text, Args: append([]Expr{x}, list...)}, nil
		case t.text == "matches":
			p.advance()
			if !p.acceptWord("regex") {
				return nil, p.unexpected("'regex' after matches")
			}
			y, err := p.addExpr()
			if err != nil {
				return nil, err
			}
			return &Binary{Pos: t.pos, Op: "matches regex", X: x, Y: y}, nil
		}
	}
	return x, nil
}

func (p *parser) inList(pos Pos, x Expr, not bool) (Expr, error) {
	fold := false
	if p.isPunct("~") && p.adjacent(p.i) {
		p.advance()
		fold = true
	}
	list, err := p.parenList()
	if err != nil {
		return nil, err
	}
	return &InExpr{Pos: pos, X: x, List: list, Not: not, CaseFold: fold}, nil
}

func (p *parser) parenList() ([]Expr, error) {
	if _, err := p.expectPunct("(", " before the list"); err != nil {
		return nil, err
	}
	var list []Expr
	if p.acceptPunct(")") {
		return list, nil
	}
	for {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		list = append(list, e)
		if p.acceptPunct(")") {
			return list, nil
		}
		if _, err := p.expectPunct(",", " or ')' in the list"); err != nil {
			return nil, err
		}
	}
}

func (p *parser) between(pos Pos, x Expr, not bool) (Expr, error) {
	if _, err := p.expectPunct("(", " after between"); err != nil {
		return nil, err
	}
	lo, err := p.addExpr()
	if err != nil {
		return nil, err
	}
	if _, err := p.expectPunct("..", " between the bounds of between"); err != nil {
		return nil, err
	}
	hi, err := p.addExpr()
	if err != nil {
		return nil, err
	}
	if _, err := p.expectPunct(")", " after the bounds of between"); err != nil {
		return nil, err
	}
	return &BetweenExpr{Pos: pos, X: x, Lo: lo, Hi: hi, Not: not}, nil
}

func (p *parser) addExpr() (Expr, error) {
	x, err := p.mulExpr()
	if err != nil {
		return nil, err
	}
	for p.isPunct("+") || p.isPunct("-") {
		t := p.advance()
		y, err := p.mulExpr()
		if err != nil {
			return nil, err
		}
		x = &Binary{Pos: t.pos, Op: t.text, X: x, Y: y}
	}
	return x, nil
}

func (p *parser) mulExpr() (Expr, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.isPunct("*") || p.isPunct("/") || p.isPunct("%") {
		t := p.advance()
		y, err := p.unary()
		if err != nil {
			return nil, err
		}
		x = &Binary{Pos: t.pos, Op: t.text, X: x, Y: y}
	}
	return x, nil
}

func (p *parser) unary() (Expr, error) {
	if p.isPunct("-") || p.isPunct("+") {
		t := p.advance()
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		defer p.leave()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if lit, ok := x.(*Literal); ok && t.text == "-" {
			switch lit.Val.K {
			case Long, Int, TimeSpan:
				return &Literal{Pos: t.pos, Val: Value{K: lit.Val.K, I: -lit.Val.I}}, nil
			case Real:
				return &Literal{Pos: t.pos, Val: RealValue(-lit.Val.F)}, nil
			}
		}
		return &Unary{Pos: t.pos, Op: t.text, X: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (Expr, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.isPunct("."):
			t := p.advance()
			n := p.peek()
			if n.kind != tIdent {
				return nil, p.unexpected("a property name after '.'")
			}
			p.advance()
			x = &Member{Pos: t.pos, X: x, Name: n.text}
		case p.isPunct("["):
			t := p.advance()
			if p.peek().kind == tString && p.peekAt(1).kind == tPunct && p.peekAt(1).text == "]" {
				name := p.advance().text
				p.advance()
				x = &Member{Pos: t.pos, X: x, Name: name}
				continue
			}
			idx, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expectPunct("]", " after the index"); err != nil {
				return nil, err
			}
			x = &Member{Pos: t.pos, X: x, Index: idx}
		default:
			return x, nil
		}
	}
}

func (p *parser) primary() (Expr, error) {
	t := p.peek()
	switch t.kind {
	case tString:
		p.advance()
		return &Literal{Pos: t.pos, Val: StringValue(t.text)}, nil
	case tNumber, tSpan:
		p.advance()
		return &Literal{Pos: t.pos, Val: t.val}, nil
	case tLiteral:
		p.advance()
		v, err := parseLiteral(t)
		if err != nil {
			return nil, err
		}
		return &Literal{Pos: t.pos, Val: v}, nil
	case tIdent:
		p.advance()
		switch t.text {
		case "true":
			return &Literal{Pos: t.pos, Val: BoolValue(true)}, nil
		case "false":
			return &Literal{Pos: t.pos, Val: BoolValue(false)}, nil
		}
		if p.isPunct("(") {
			p.advance()
			call := &Call{Pos: t.pos, Name: t.text}
			if p.acceptPunct(")") {
				return call, nil
			}
			for {
				var arg Expr
				if p.isPunct("*") && (p.peekAt(1).kind == tPunct && (p.peekAt(1).text == ")" || p.peekAt(1).text == ",")) {
					arg = &Star{Pos: p.advance().pos}
				} else {
					e, err := p.expr()
					if err != nil {
						return nil, err
					}
					arg = e
				}
				call.Args = append(call.Args, arg)
				if p.acceptPunct(")") {
					return call, nil
				}
				if _, err := p.expectPunct(",", " or ')' after a function argument"); err != nil {
					return nil, err
				}
			}
		}
		return &Ident{Pos: t.pos, Name: t.text}, nil
	case tPunct:
		switch t.text {
		case "(":
			p.advance()
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expectPunct(")", " to close the parenthesis"); err != nil {
				return nil, err
			}
			return &Paren{Pos: t.pos, X: x}, nil
		case "*":
			p.advance()
			return &Star{Pos: t.pos}, nil
		}
	}
	return nil, p.unexpected("an expression")
}

// parseLiteral turns datetime(...), timespan(...) and dynamic(...) into values.
func parseLiteral(t token) (Value, error) {
	body := strings.TrimSpace(t.text)
	if body == "null" {
		switch t.word {
		case "datetime":
			return Value{}, nil
		case "dynamic":
			return DynamicValue(nil), nil
		}
		return Value{}, nil
	}
	switch t.word {
	case "datetime":
		s := strings.Trim(body, `"'`)
		tm, ok := parseDateTime(s)
		if !ok {
			return Value{}, errorf(t.pos, "datetime(%s) is not a date: use forms like datetime(2025-03-04), datetime(2025-03-04 10:15) or datetime(2025-03-04T10:15:02Z)", body)
		}
		return TimeValue(tm), nil
	case "timespan", "time":
		d, ok := parseSpanText(strings.Trim(body, `"'`))
		if !ok {
			return Value{}, errorf(t.pos, "%s(%s) is not a timespan: use forms like 1d, 2h, 30m, 10s or 01:30:00", t.word, body)
		}
		return SpanValue(d), nil
	case "dynamic":
		v, err := parseDynamicLiteral(body)
		if err != nil {
			return Value{}, errorf(t.pos, "dynamic(%s) is not a JSON value: %v", truncate(body, 40), err)
		}
		return DynamicValue(v), nil
	}
	return Value{}, errorf(t.pos, "unknown literal %s", t.word)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

package kql

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Pos is a position in the query text: 1-based line and column (in characters).
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("line %d, column %d", p.Line, p.Col) }

// Error is a query error with the position it concerns. Parse errors and errors found while
// binding names (an unknown column or function) carry the position of the offending token.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	if e.Pos.Line == 0 {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

func errorf(p Pos, format string, args ...any) *Error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, args...)}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber   // long or real
	tSpan     // number with a timespan suffix
	tLiteral  // datetime(...), timespan(...), dynamic(...): Text holds the raw inside
	tPunct    // operators and punctuation; Text holds them
	tBadToken // for error messages only
)

type token struct {
	kind tokKind
	text string // identifier name, decoded string, punctuation, number text, raw literal body
	word string // for tLiteral: the literal's keyword (datetime, timespan, time, dynamic)
	pos  Pos
	off  int // byte offset of the token's start
	end  int // byte offset after the token
	// For numbers: the parsed value.
	val Value
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "the end of the query"
	case tIdent:
		return "'" + t.text + "'"
	case tString:
		return "a string"
	case tNumber, tSpan:
		return "'" + t.text + "'"
	case tLiteral:
		return t.word + "(...)"
	}
	return "'" + t.text + "'"
}

// MaxQueryLength is the longest query accepted, in bytes.
const MaxQueryLength = 64 << 10

// lex splits a query into tokens.
func lex(src string) ([]token, error) {
	if len(src) > MaxQueryLength {
		return nil, errorf(Pos{1, 1}, "the query is %d bytes long; the limit is %d", len(src), MaxQueryLength)
	}
	if !utf8.ValidString(src) {
		return nil, errorf(Pos{1, 1}, "the query is not valid UTF-8")
	}
	l := &lexer{src: src, line: 1, lineStart: 0}
	var out []token
	for {
		// After something that ends an expression, '[' indexes it; elsewhere ['name'] is a
		// bracketed identifier.
		l.afterOperand = false
		if n := len(out); n > 0 {
			p := out[n-1]
			l.afterOperand = p.kind == tIdent || p.kind == tString || p.kind == tNumber || p.kind == tSpan ||
				p.kind == tLiteral || p.kind == tPunct && (p.text == ")" || p.text == "]")
		}
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		if t.kind == tEOF {
			return out, nil
		}
	}
}

type lexer struct {
	afterOperand bool
	src          string
	off          int
	line         int
	lineStart    int
}

func (l *lexer) pos(off int) Pos {
	return Pos{Line: l.line, Col: utf8.RuneCountInString(l.src[l.lineStart:off]) + 1}
}

func (l *lexer) skipSpace() {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == '\n':
			l.off++
			l.line++
			l.lineStart = l.off
		case c == ' ' || c == '\t' || c == '\r':
			l.off++
		case c == '/' && l.off+1 < len(l.src) && l.src[l.off+1] == '/':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.off++
			}
		default:
			if c >= 0x80 {
				r, n := utf8.DecodeRuneInString(l.src[l.off:])
				if r == '\u00a0' || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
					l.off += n
					continue
				}
			}
			return
		}
	}
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// threeChar and twoChar are the multi-character operators, longest first.
var multiPunct = []string{"!~", "==", "!=", "<>", "<=", ">=", "=~", ".."}

func (l *lexer) next() (token, error) {
	l.skipSpace()
	start := l.off
	p := l.pos(start)
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: p, off: start, end: start}, nil
	}
	c := l.src[l.off]
	mk := func(kind tokKind, text string) token {
		return token{kind: kind, text: text, pos: p, off: start, end: l.off}
	}
	switch {
	case (c == '@' || c == 'h' || c == 'H') && l.off+1 < len(l.src) && (l.src[l.off+1] == '"' || l.src[l.off+1] == '\''):
		verbatim := c == '@'
		l.off++
		s, err := l.str(verbatim)
		if err != nil {
			return token{}, err
		}
		return mk(tString, s), nil
	case (c == 'h' || c == 'H') && l.off+2 < len(l.src) && l.src[l.off+1] == '@' && (l.src[l.off+2] == '"' || l.src[l.off+2] == '\''):
		l.off += 2
		s, err := l.str(true)
		if err != nil {
			return token{}, err
		}
		return mk(tString, s), nil
	case c == '"' || c == '\'':
		s, err := l.str(false)
		if err != nil {
			return token{}, err
		}
		return mk(tString, s), nil
	case c == '`' && strings.HasPrefix(l.src[l.off:], "```"):
		end := strings.Index(l.src[l.off+3:], "```")
		if end < 0 {
			return token{}, errorf(p, "a ``` string is not closed")
		}
		s := l.src[l.off+3 : l.off+3+end]
		for _, ch := range s {
			if ch == '\n' {
				l.line++
			}
		}
		if i := strings.LastIndexByte(s, '\n'); i >= 0 {
			l.lineStart = l.off + 3 + i + 1
		}
		l.off += 3 + end + 3
		return mk(tString, s), nil
	case isDigit(c) || c == '.' && l.off+1 < len(l.src) && isDigit(l.src[l.off+1]):
		return l.number(p)
	case isIdentStart(c):
		for l.off < len(l.src) && isIdentChar(l.src[l.off]) {
			l.off++
		}
		word := l.src[start:l.off]
		switch word {
		case "datetime", "timespan", "time", "dynamic":
			// A literal: the raw text up to the matching parenthesis.
			save := l.off
			saveLine, saveLS := l.line, l.lineStart
			l.skipSpace()
			if l.off < len(l.src) && l.src[l.off] == '(' {
				body, err := l.rawParens()
				if err != nil {
					return token{}, err
				}
				t := mk(tLiteral, body)
				t.word = word
				return t, nil
			}
			l.off, l.line, l.lineStart = save, saveLine, saveLS
		}
		return mk(tIdent, word), nil
	case c == '[' && !l.afterOperand && l.off+1 < len(l.src) && (l.src[l.off+1] == '\'' || l.src[l.off+1] == '"'):
		// ['column name'] is an identifier.
		l.off++
		s, err := l.str(false)
		if err != nil {
			return token{}, err
		}
		l.skipSpace()
		if l.off >= len(l.src) || l.src[l.off] != ']' {
			return token{}, errorf(l.pos(l.off), "expected ']' after a bracketed name")
		}
		l.off++
		return mk(tIdent, s), nil
	}
	for _, op := range multiPunct {
		if strings.HasPrefix(l.src[l.off:], op) {
			l.off += len(op)
			return mk(tPunct, op), nil
		}
	}
	if strings.IndexByte("|(),.[]=<>+-*/%!~;:{}", c) >= 0 {
		l.off++
		return mk(tPunct, string(c)), nil
	}
	r, _ := utf8.DecodeRuneInString(l.src[l.off:])
	return token{}, errorf(p, "unexpected character %q", r)
}

// str reads a quoted string; the lexer is at the opening quote.
func (l *lexer) str(verbatim bool) (string, error) {
	p := l.pos(l.off)
	q := l.src[l.off]
	l.off++
	var sb strings.Builder
	for {
		if l.off >= len(l.src) || l.src[l.off] == '\n' {
			return "", errorf(p, "the string is not closed")
		}
		c := l.src[l.off]
		if c == q {
			if verbatim && l.off+1 < len(l.src) && l.src[l.off+1] == q {
				sb.WriteByte(q)
				l.off += 2
				continue
			}
			l.off++
			return sb.String(), nil
		}
		if c == '\\' && !verbatim {
			if l.off+1 >= len(l.src) {
				return "", errorf(p, "the string is not closed")
			}
			e := l.src[l.off+1]
			l.off += 2
			switch e {
			case 'n':
				sb.WriteByte('\n')
			case 't':
				sb.WriteByte('\t')
			case 'r':
				sb.WriteByte('\r')
			case '\\', '"', '\'':
				sb.WriteByte(e)
			case '0':
				sb.WriteByte(0)
			case 'u':
				if l.off+4 > len(l.src) {
					return "", errorf(l.pos(l.off-2), "bad \\u escape")
				}
				n, err := strconv.ParseUint(l.src[l.off:l.off+4], 16, 32)
				if err != nil {
					return "", errorf(l.pos(l.off-2), "bad \\u escape")
				}
				sb.WriteRune(rune(n))
				l.off += 4
			default:
				return "", errorf(l.pos(l.off-2), "unknown escape \\%c", e)
			}
			continue
		}
		sb.WriteByte(c)
		l.off++
	}
}

// rawParens reads "( ... )" with nesting and quoted strings, returning the inside.
func (l *lexer) rawParens() (string, error) {
	p := l.pos(l.off)
	depth := 0
	start := l.off + 1
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				if c != ')' {
					return "", errorf(p, "unbalanced brackets in the literal")
				}
				body := l.src[start:l.off]
				l.off++
				return strings.TrimSpace(body), nil
			}
		case '"', '\'':
			if _, err := l.str(false); err != nil {
				return "", err
			}
			continue
		case '\n':
			l.line++
			l.lineStart = l.off + 1
		}
		l.off++
	}
	return "", errorf(p, "the literal's parenthesis is not closed")
}

// spanUnits maps timespan suffixes to their length.
var spanUnits = map[string]float64{
	"d": 24 * 3600e9, "day": 24 * 3600e9, "days": 24 * 3600e9,
	"h": 3600e9, "hr": 3600e9, "hrs": 3600e9, "hour": 3600e9, "hours": 3600e9,
	"m": 60e9, "min": 60e9, "minute": 60e9, "minutes": 60e9,
	"s": 1e9, "sec": 1e9, "second": 1e9, "seconds": 1e9,
	"ms": 1e6, "milli": 1e6, "millis": 1e6, "millisecond": 1e6, "milliseconds": 1e6,
	"microsecond": 1e3, "microseconds": 1e3, "tick": 100, "ticks": 100,
}

func (l *lexer) number(p Pos) (token, error) {
	start := l.off
	isReal := false
	for l.off < len(l.src) && isDigit(l.src[l.off]) {
		l.off++
	}
	if l.off < len(l.src) && l.src[l.off] == '.' && !(l.off+1 < len(l.src) && l.src[l.off+1] == '.') {
		isReal = true
		l.off++
		for l.off < len(l.src) && isDigit(l.src[l.off]) {
			l.off++
		}
	}
	if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
		j := l.off + 1
		if j < len(l.src) && (l.src[j] == '+' || l.src[j] == '-') {
			j++
		}
		if j < len(l.src) && isDigit(l.src[j]) {
			isReal = true
			l.off = j
			for l.off < len(l.src) && isDigit(l.src[l.off]) {
				l.off++
			}
		}
	}
	numText := l.src[start:l.off]
	sufStart := l.off
	for l.off < len(l.src) && (l.src[l.off] >= 'a' && l.src[l.off] <= 'z' || l.src[l.off] >= 'A' && l.src[l.off] <= 'Z') {
		l.off++
	}
	suffix := l.src[sufStart:l.off]
	t := token{pos: p, off: start, end: l.off, text: l.src[start:l.off]}
	if suffix != "" {
		unit, ok := spanUnits[strings.ToLower(suffix)]
		if !ok {
			return token{}, errorf(p, "%q is not a number or a timespan (units: d, h, m, s, ms, microsecond, tick)", t.text)
		}
		f, err := strconv.ParseFloat(numText, 64)
		if err != nil || f*unit > 9.2e18 {
			return token{}, errorf(p, "timespan %q is out of range", t.text)
		}
		t.kind = tSpan
		t.val = SpanValue(timeDuration(f * unit))
		return t, nil
	}
	t.kind = tNumber
	if isReal {
		f, err := strconv.ParseFloat(numText, 64)
		if err != nil {
			return token{}, errorf(p, "bad number %q", numText)
		}
		t.val = RealValue(f)
		return t, nil
	}
	n, err := strconv.ParseInt(numText, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(numText, 64)
		if ferr != nil {
			return token{}, errorf(p, "bad number %q", numText)
		}
		t.val = RealValue(f)
		return t, nil
	}
	t.val = LongValue(n)
	return t, nil
}

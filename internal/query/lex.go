package query

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token.
type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tLParen   // (
	tRParen   // )
	tLBracket // [
	tRBracket // ]
	tComma    // ,
	tDot      // .
	tStar     // *
	tPlus     // +
	tMinus    // -
	tSlash    // /
	tPercent  // %
	tEq       // =
	tNe       // != or <>
	tLt       // <
	tLe       // <=
	tGt       // >
	tGe       // >=
)

var tokNames = [...]string{
	tEOF: "end of query", tIdent: "name", tNumber: "number", tString: "string",
	tLParen: "'('", tRParen: "')'", tLBracket: "'['", tRBracket: "']'", tComma: "','", tDot: "'.'",
	tStar: "'*'", tPlus: "'+'", tMinus: "'-'", tSlash: "'/'", tPercent: "'%'", tEq: "'='",
	tNe: "'!='", tLt: "'<'", tLe: "'<='", tGt: "'>'", tGe: "'>='",
}

// token is one lexical token. pos is its byte offset in the query text.
type token struct {
	kind tokKind
	pos  int
	text string  // identifier as written; string literal after unescaping
	num  float64 // tNumber
}

// describe names a token for an error message.
func (t token) describe() string {
	switch t.kind {
	case tIdent:
		return "'" + t.text + "'"
	case tNumber:
		return "number " + strconv.FormatFloat(t.num, 'g', -1, 64)
	case tString:
		return "string literal"
	}
	return tokNames[t.kind]
}

// is reports whether t is the keyword kw (keywords are case-insensitive).
func (t token) is(kw string) bool { return t.kind == tIdent && strings.EqualFold(t.text, kw) }

// lexer turns a query into tokens.
type lexer struct {
	src string
	off int
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '$'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// letterAt reports whether a non-ASCII letter or digit starts at off: twin property names are
// UTF-8, so names such as tags.größe are paths too.
func (l *lexer) letterAt(off int) bool {
	r, _ := utf8.DecodeRuneInString(l.src[off:])
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// next returns the next token, or a syntax error.
func (l *lexer) next() (token, error) {
	for l.off < len(l.src) {
		switch l.src[l.off] {
		case ' ', '\t', '\r', '\n', '\f', '\v':
			l.off++
			continue
		}
		break
	}
	start := l.off
	if l.off >= len(l.src) {
		return token{kind: tEOF, pos: start}, nil
	}
	c := l.src[l.off]
	switch {
	case isIdentStart(c) || c >= utf8.RuneSelf && l.letterAt(l.off):
		for l.off < len(l.src) {
			if c := l.src[l.off]; c < utf8.RuneSelf {
				if !isIdentPart(c) {
					break
				}
				l.off++
				continue
			}
			if !l.letterAt(l.off) {
				break
			}
			_, n := utf8.DecodeRuneInString(l.src[l.off:])
			l.off += n
		}
		return token{kind: tIdent, pos: start, text: l.src[start:l.off]}, nil
	case isDigit(c):
		return l.number()
	case c == '\'' || c == '"':
		return l.str()
	}
	l.off++
	one := func(k tokKind) (token, error) { return token{kind: k, pos: start}, nil }
	two := func(k tokKind) (token, error) { l.off++; return token{kind: k, pos: start}, nil }
	peek := byte(0)
	if l.off < len(l.src) {
		peek = l.src[l.off]
	}
	switch c {
	case '(':
		return one(tLParen)
	case ')':
		return one(tRParen)
	case '[':
		return one(tLBracket)
	case ']':
		return one(tRBracket)
	case ',':
		return one(tComma)
	case '.':
		return one(tDot)
	case '*':
		return one(tStar)
	case '+':
		return one(tPlus)
	case '-':
		return one(tMinus)
	case '/':
		return one(tSlash)
	case '%':
		return one(tPercent)
	case '=':
		return one(tEq)
	case '!':
		if peek == '=' {
			return two(tNe)
		}
	case '<':
		switch peek {
		case '=':
			return two(tLe)
		case '>':
			return two(tNe)
		}
		return one(tLt)
	case '>':
		if peek == '=' {
			return two(tGe)
		}
		return one(tGt)
	}
	r, _ := utf8.DecodeRuneInString(l.src[start:])
	return token{}, syntaxErrorf(l.src, start, "unexpected character %s", quoteRune(r))
}

func quoteRune(r rune) string {
	if r == utf8.RuneError {
		return "(invalid UTF-8)"
	}
	return strconv.QuoteRune(r)
}

// number scans a decimal literal (digits, fraction, exponent) or a hexadecimal one (0x...).
func (l *lexer) number() (token, error) {
	start := l.off
	s := l.src
	if s[l.off] == '0' && l.off+1 < len(s) && (s[l.off+1] == 'x' || s[l.off+1] == 'X') {
		l.off += 2
		digits := l.off
		for l.off < len(s) && isHex(s[l.off]) {
			l.off++
		}
		if l.off == digits {
			return token{}, syntaxErrorf(s, start, "hexadecimal number needs digits after 0x")
		}
		if l.off < len(s) && isIdentPart(s[l.off]) {
			return token{}, syntaxErrorf(s, l.off, "unexpected character %q in number", s[l.off])
		}
		u, err := strconv.ParseUint(s[digits:l.off], 16, 64)
		if err != nil || u > 1<<53 {
			return token{}, syntaxErrorf(s, start, "number %s is too large", s[start:l.off])
		}
		return token{kind: tNumber, pos: start, num: float64(u)}, nil
	}
	for l.off < len(s) && isDigit(s[l.off]) {
		l.off++
	}
	if l.off < len(s) && s[l.off] == '.' && l.off+1 < len(s) && isDigit(s[l.off+1]) {
		l.off++
		for l.off < len(s) && isDigit(s[l.off]) {
			l.off++
		}
	}
	if l.off < len(s) && (s[l.off] == 'e' || s[l.off] == 'E') {
		e := l.off + 1
		if e < len(s) && (s[e] == '+' || s[e] == '-') {
			e++
		}
		if e < len(s) && isDigit(s[e]) {
			l.off = e
			for l.off < len(s) && isDigit(s[l.off]) {
				l.off++
			}
		}
	}
	if l.off < len(s) && isIdentPart(s[l.off]) {
		return token{}, syntaxErrorf(s, l.off, "unexpected character %q in number", s[l.off])
	}
	f, err := strconv.ParseFloat(s[start:l.off], 64)
	if err != nil {
		return token{}, syntaxErrorf(s, start, "number %s is out of range", s[start:l.off])
	}
	return token{kind: tNumber, pos: start, num: f}, nil
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// str scans a string literal in single or double quotes. Escapes: \' \" \\ \/ \b \f \n \r \t
// and \uXXXX.
func (l *lexer) str() (token, error) {
	s := l.src
	start := l.off
	quote := s[l.off]
	l.off++
	var b strings.Builder
	for {
		if l.off >= len(s) {
			return token{}, syntaxErrorf(s, start, "string literal not terminated")
		}
		c := s[l.off]
		switch {
		case c == quote:
			l.off++
			return token{kind: tString, pos: start, text: b.String()}, nil
		case c == '\\':
			esc := l.off
			l.off++
			if l.off >= len(s) {
				return token{}, syntaxErrorf(s, start, "string literal not terminated")
			}
			e := s[l.off]
			l.off++
			switch e {
			case '\'', '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if l.off+4 > len(s) {
					return token{}, syntaxErrorf(s, esc, "escape \\u needs 4 hexadecimal digits")
				}
				v, err := strconv.ParseUint(s[l.off:l.off+4], 16, 32)
				if err != nil {
					return token{}, syntaxErrorf(s, esc, "escape \\u needs 4 hexadecimal digits")
				}
				l.off += 4
				b.WriteRune(rune(v))
			default:
				r, _ := utf8.DecodeRuneInString(s[l.off-1:])
				return token{}, syntaxErrorf(s, esc, "unknown escape \\%c in string literal", r)
			}
		default:
			b.WriteByte(c)
			l.off++
		}
	}
}

package query

import (
	"fmt"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/errcode"
)

// SyntaxError says what is wrong with a query and where. Every error [Parse] returns is an
// [*errcode.Error] with code 400004 ArgumentInvalid whose cause is a *SyntaxError.
type SyntaxError struct {
	// Offset is the byte offset of the offending token in the query text.
	Offset int
	// Line and Column are 1-based; Column counts characters, not bytes.
	Line, Column int
	// Msg says what is wrong.
	Msg string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// position turns a byte offset into a 1-based line and character column.
func position(src string, off int) (line, col int) {
	if off > len(src) {
		off = len(src)
	}
	line, col = 1, 1
	for i := 0; i < off; {
		r, n := utf8.DecodeRuneInString(src[i:])
		i += n
		if r == '\n' {
			line++
			col = 1
			continue
		}
		col++
	}
	return line, col
}

// syntaxErrorf builds the error returned for a problem at byte offset off of src.
func syntaxErrorf(src string, off int, format string, args ...any) error {
	line, col := position(src, off)
	se := &SyntaxError{Offset: off, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
	return errcode.Wrap(errcode.ArgumentInvalid, se, "The query is invalid: %s", se.Error())
}

// invalidf builds an error about the request rather than a place in the query text.
func invalidf(format string, args ...any) error {
	return errcode.New(errcode.ArgumentInvalid, format, args...)
}

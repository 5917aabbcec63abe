package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/query"
)

// FuzzQuery feeds arbitrary text to the parser and runs whatever parses over the script tests'
// twins, page by page. A query either fails with 400004 and a position inside the text, or
// pages to the end with results that encode as JSON; it never panics or loops.
func FuzzQuery(f *testing.F) {
	docs, cases := loadScript(f)
	for _, c := range cases {
		f.Add(c.query)
	}
	for _, s := range []string{
		"SELECT * FROM devices WHERE tags.x = 'abc",
		"SELECT * FROM devices WHERE (((((((x)))))))",
		"SELECT TOP 1 * FROM devices.modules WHERE deviceId NOT IN ['a', -1, 0x1F, null, true, [1]]",
		"SELECT a.b[3]['c'], COUNT(x) AS n FROM devices GROUP BY a.b[3]['c']",
		"SELECT * FROM devices WHERE tags.x = '\\u00e9\\'\\\"'",
		"select count() as n from devices where not not not true",
	} {
		f.Add(s)
	}
	src := memSource(docs)
	f.Fuzz(func(t *testing.T, text string) {
		q, err := query.Parse(text)
		if err != nil {
			e := errcode.As(err)
			if e.Code != errcode.ArgumentInvalid {
				t.Fatalf("Parse(%q): code %d, want 400004", text, e.Code)
			}
			var se *query.SyntaxError
			if errors.As(err, &se) && (se.Offset < 0 || se.Offset > len(text) || se.Line < 1 || se.Column < 1) {
				t.Fatalf("Parse(%q): position %+v outside the text", text, se)
			}
			return
		}
		if utf8.RuneCountInString(text) > query.MaxQueryLength {
			t.Fatalf("Parse accepted %d characters", utf8.RuneCountInString(text))
		}
		token := ""
		for pages := 0; ; pages++ {
			if pages > len(docs)+2 {
				t.Fatalf("%q: more pages than documents", text)
			}
			p, err := q.Page(context.Background(), src, 2, token)
			if err != nil {
				t.Fatalf("%q: page %d: %v", text, pages, err)
			}
			if _, err := json.Marshal(p.Items); err != nil {
				t.Fatalf("%q: results do not encode: %v", text, err)
			}
			if p.Continuation == "" {
				return
			}
			token = p.Continuation
		}
	})
}

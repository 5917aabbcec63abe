package query_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/query"
)

// memSource serves twin documents from memory, as the twin store's Scan does from the engine.
func memSource(docs []map[string]any) query.Source {
	return func(ctx context.Context, modules bool, fn func(map[string]any) bool) error {
		for _, d := range docs {
			if _, isModule := d["moduleId"]; isModule != modules {
				continue
			}
			if !fn(d) {
				return nil
			}
		}
		return nil
	}
}

// runAll runs a query to its last page and returns every item, checking the paging contract:
// the same item type on every page and a continuation token exactly when more items follow.
func runAll(t *testing.T, src query.Source, text string, pageSize int) ([]any, string, error) {
	t.Helper()
	var (
		all      []any
		itemType string
		token    string
	)
	for page := 0; ; page++ {
		if page > 10000 {
			t.Fatalf("%s: more than 10000 pages", text)
		}
		p, err := query.Run(context.Background(), src, query.Request{Query: text, PageSize: pageSize, Continuation: token})
		if err != nil {
			return nil, "", err
		}
		if page > 0 && p.ItemType != itemType {
			t.Fatalf("%s: item type changed from %s to %s", text, itemType, p.ItemType)
		}
		if p.Items == nil {
			t.Fatalf("%s: nil items", text)
		}
		if p.Continuation != "" && len(p.Items) == 0 {
			t.Fatalf("%s: empty page with a continuation token", text)
		}
		itemType = p.ItemType
		all = append(all, p.Items...)
		if p.Continuation == "" {
			return all, itemType, nil
		}
		token = p.Continuation
	}
}

// normalize round-trips results through JSON, as they travel to a client.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("results do not encode as JSON: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(items []any) string {
	var out []string
	for _, it := range items {
		m, _ := it.(map[string]any)
		id, _ := m["deviceId"].(string)
		if mid, ok := m["moduleId"].(string); ok {
			id += "/" + mid
		}
		out = append(out, id)
	}
	return strings.Join(out, " ")
}

type scriptCase struct {
	line  int
	query string
	ids   *string
	rows  string
	typ   string
	err   string
}

// loadScript reads testdata/queries.txt: the documents and the cases.
func loadScript(t testing.TB) ([]map[string]any, []scriptCase) {
	t.Helper()
	f, err := os.Open("testdata/queries.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		docs  []map[string]any
		cases []scriptCase
		cur   *scriptCase
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "doc":
			var d map[string]any
			if err := json.Unmarshal([]byte(arg), &d); err != nil {
				t.Fatalf("queries.txt:%d: %v", n, err)
			}
			docs = append(docs, d)
		case "query":
			cases = append(cases, scriptCase{line: n, query: arg})
			cur = &cases[len(cases)-1]
		case "ids", "rows", "type", "error":
			if cur == nil {
				t.Fatalf("queries.txt:%d: %s before any query", n, cmd)
			}
			switch cmd {
			case "ids":
				cur.ids = &arg
			case "rows":
				cur.rows = arg
			case "type":
				cur.typ = arg
			case "error":
				cur.err = arg
			}
		default:
			t.Fatalf("queries.txt:%d: unknown command %q", n, cmd)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return docs, cases
}

// TestQueryScript runs the script tests in testdata/queries.txt.
func TestQueryScript(t *testing.T) {
	t.Parallel()
	docs, cases := loadScript(t)
	src := memSource(docs)
	for _, c := range cases {
		t.Run(strconv.Itoa(c.line), func(t *testing.T) {
			t.Parallel()
			got, typ, err := runAll(t, src, c.query, query.MaxPageSize)
			if c.err != "" {
				if err == nil {
					t.Fatalf("queries.txt:%d: %s\ngot results, want error %q", c.line, c.query, c.err)
				}
				e := errcode.As(err)
				if e.Code != errcode.ArgumentInvalid || !strings.Contains(e.Msg, c.err) {
					t.Fatalf("queries.txt:%d: %s\ngot error %d %q, want 400004 containing %q", c.line, c.query, e.Code, e.Msg, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("queries.txt:%d: %s\nunexpected error: %v", c.line, c.query, err)
			}
			if c.ids != nil {
				if g := ids(got); g != *c.ids {
					t.Errorf("queries.txt:%d: %s\ngot ids  %q\nwant ids %q", c.line, c.query, g, *c.ids)
				}
			}
			if c.rows != "" {
				var want any
				if err := json.Unmarshal([]byte(c.rows), &want); err != nil {
					t.Fatalf("queries.txt:%d: bad rows: %v", c.line, err)
				}
				if d := cmp.Diff(want, normalize(t, got)); d != "" {
					t.Errorf("queries.txt:%d: %s\nrows (-want +got):\n%s", c.line, c.query, d)
				}
			}
			if c.typ != "" && typ != c.typ {
				t.Errorf("queries.txt:%d: %s\ngot item type %s, want %s", c.line, c.query, typ, c.typ)
			}
			// Small pages must give the same results.
			for _, size := range []int{1, 2} {
				paged, _, err := runAll(t, src, c.query, size)
				if err != nil {
					t.Fatalf("page size %d: %v", size, err)
				}
				if !reflect.DeepEqual(normalize(t, paged), normalize(t, got)) {
					t.Errorf("queries.txt:%d: %s\npage size %d gives %v, want %v", c.line, c.query, size, ids(paged), ids(got))
				}
			}
		})
	}
}

// marker is where a syntax error is expected in the error tests' queries.
const marker = "«"

// TestQuerySyntaxErrors checks the message and the position of each error. The query text
// marks the position the error must point at with «.
func TestQuerySyntaxErrors(t *testing.T) {
	t.Parallel()
	deep := "SELECT * FROM devices WHERE " + strings.Repeat("(", query.MaxDepth) + marker + strings.Repeat("(", 40) + "x" + strings.Repeat(")", query.MaxDepth+39)
	tests := []struct{ query, msg string }{
		{"SELECT * FROM devices WHERE " + marker, "expected an expression, found end of query"},
		{"SELECT * " + marker + "FORM devices", "expected FROM, found 'FORM'"},
		{marker + "SELEC * FROM devices", "expected SELECT, found 'SELEC'"},
		{"SELECT * FROM " + marker + "things", "expected devices, devices.modules or devices.jobs after FROM, found 'things'"},
		{"SELECT * FROM devices." + marker + "foo", "expected modules or jobs after 'devices.', found 'foo'"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "'abc", "string literal not terminated"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "'abc\\", "string literal not terminated"},
		{"SELECT * FROM devices WHERE tags.x = 'a" + marker + "\\q'", "unknown escape \\q in string literal"},
		{"SELECT * FROM devices WHERE tags.x = 'a" + marker + "\\u12'", "escape \\u needs 4 hexadecimal digits"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "1e999", "number 1e999 is out of range"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "0x", "hexadecimal number needs digits after 0x"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "0x1FFFFFFFFFFFFFFFFF", "is too large"},
		{"SELECT * FROM devices WHERE tags.x = 12" + marker + "abc", "unexpected character 'a' in number"},
		{"SELECT * FROM devices WHERE tags.x = " + marker + "#", "unexpected character '#'"},
		{"SELECT * FROM devices WHERE tags.x " + marker + "! 1", "unexpected character '!'"},
		{"SELECT * FROM devices WHERE tags.x = 1 " + marker + "= 2", "expected end of query, found '='"},
		{"SELECT * FROM devices WHERE (tags.x = 1" + marker, "expected ')', found end of query"},
		{"SELECT * FROM devices WHERE deviceId IN " + marker + "'a'", "expected an array constant such as ['a', 'b'] after IN"},
		{"SELECT * FROM devices WHERE deviceId IN ['a', " + marker + "tags.x]", "expected a constant in the array"},
		{"SELECT * FROM devices WHERE deviceId IN ['a' " + marker + "'b']", "expected ',' or ']' in the array"},
		{"SELECT * FROM devices WHERE tags.x = 1 " + marker + "ORDER BY deviceId", "ORDER BY is not supported"},
		{"SELECT * FROM devices WHERE " + marker + "FOO(deviceId)", "unknown function 'FOO'"},
		{"SELECT * FROM devices WHERE " + marker + "STARTSWITH(deviceId)", "STARTSWITH takes 2 arguments, not 1"},
		{"SELECT * FROM devices WHERE " + marker + "CONCAT('a')", "CONCAT takes at least 2 arguments, not 1"},
		{"SELECT * FROM devices WHERE " + marker + "SUBSTRING('a')", "SUBSTRING takes 2 or 3 arguments, not 1"},
		{"SELECT * FROM devices WHERE IS_DEFINED(tags.x" + marker, "expected ',' or ')' in the arguments of IS_DEFINED"},
		{"SELECT * FROM devices WHERE " + marker + "COUNT() > 1", "the aggregate COUNT is allowed only as a whole SELECT item"},
		{"SELECT COUNT() " + marker + "+ 1 AS n FROM devices", "an aggregate must be a whole SELECT item"},
		{"SELECT SUM(" + marker + ") AS n FROM devices", "SUM needs an argument"},
		{"SELECT SUM(tags.x " + marker + "AS n FROM devices", "expected ')' after the argument of SUM"},
		{marker + "deviceId, COUNT() AS n FROM devices", "expected SELECT"},
		{"SELECT " + marker + "deviceId, COUNT() AS n FROM devices", "deviceId is neither an aggregate nor in GROUP BY"},
		{"SELECT tags.a.x, " + marker + "tags.b.x FROM devices", "two SELECT items are named 'x'"},
		{"SELECT " + marker + "deviceId FROM devices.jobs", "queries on devices.jobs support only SELECT *"},
		{"SELECT * FROM devices.jobs GROUP BY " + marker + "status", "queries on devices.jobs do not support GROUP BY"},
		{"SELECT * FROM devices WHERE " + marker + "select = 1", "expected an expression, found keyword SELECT"},
		{"SELECT TOP " + marker + "-1 * FROM devices", "expected a whole number after TOP, found '-'"},
		{"SELECT TOP " + marker + "1.5 * FROM devices", "expected a whole number after TOP"},
		{"SELECT deviceId AS " + marker + "from FROM devices", "expected a name after AS"},
		{"SELECT status FROM devices GROUP BY " + marker + "LOWER(status)", "GROUP BY needs a property path"},
		{"SELECT * FROM devices WHERE tags." + marker + "1 = 1", "expected a property name after '.'"},
		{"SELECT * FROM devices WHERE tags[" + marker + "-1] = 1", "expected a property name in quotes or an array index"},
		{"SELECT * FROM devices WHERE tags['a' " + marker + "= 1", "expected ']'"},
		{"SELECT *\nFROM devices\nWHERE tags.x =\n  " + marker + ")", "line 4, column 3: expected an expression, found ')'"},
		{"SELECT * FROM devices WHERE tags.ä = 'ö' " + marker + ")", "line 1, column 42: expected end of query"},
		{deep, "the query is nested more than 64 levels deep"},
		{"SELECT * FROM devices WHERE " + strings.Repeat("NOT ", query.MaxDepth-1) + marker + strings.Repeat("NOT ", 10) + "true", "nested more than 64 levels"},
		{"SELECT * FROM devices WHERE " + strings.Repeat("-", query.MaxDepth-1) + marker + strings.Repeat("-", 10) + "x = 1", "nested more than 64 levels"},
		{"SELECT * FROM devices WHERE tags.x IN " + strings.Repeat("[", query.MaxDepth-1) + marker + strings.Repeat("[", 10) + "1" + strings.Repeat("]", query.MaxDepth+9), "nested more than 64 levels"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			off := strings.Index(tc.query, marker)
			if off < 0 {
				t.Fatal("test query has no « marker")
			}
			text := strings.Replace(tc.query, marker, "", 1)
			_, err := query.Parse(text)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want error %q", text, tc.msg)
			}
			e := errcode.As(err)
			if e.Code != errcode.ArgumentInvalid {
				t.Fatalf("code %d, want 400004: %v", e.Code, err)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
			var se *query.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error has no *SyntaxError cause: %v", err)
			}
			if se.Offset != off {
				t.Errorf("error at offset %d (%s), want %d:\n%s\n%s^", se.Offset, se.Error(), off, text, strings.Repeat(" ", len([]rune(text[:off]))))
			}
			if !strings.HasPrefix(e.Msg, "The query is invalid: line ") {
				t.Errorf("message %q does not start with the position", e.Msg)
			}
		})
	}
}

// TestQueryLimits checks the errors for queries that are too long or empty and that a long IN
// list (as long as the length limit allows) is accepted and fast.
func TestQueryLimits(t *testing.T) {
	t.Parallel()
	long := "SELECT * FROM devices WHERE deviceId = '" + strings.Repeat("é", query.MaxQueryLength) + "'"
	for _, tc := range []struct{ text, msg string }{
		{long, "The query is invalid: it is 8233 characters long, more than the 8192 allowed"},
		{"", "The query is invalid: it is empty"},
		{" \n\t", "The query is invalid: it is empty"},
	} {
		_, err := query.Parse(tc.text)
		if e := errcode.As(err); err == nil || e.Code != errcode.ArgumentInvalid || e.Msg != tc.msg {
			t.Errorf("Parse(%.40q...): got %v, want 400004 %q", tc.text, err, tc.msg)
		}
	}
	// Exactly at the limit is fine: a list of 1600 ids.
	var b strings.Builder
	b.WriteString("SELECT * FROM devices WHERE deviceId IN [")
	for i := 0; b.Len() < query.MaxQueryLength-10; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("'" + strconv.Itoa(i) + "'")
	}
	b.WriteString("]")
	docs, _ := loadScript(t)
	docs = append(docs, map[string]any{"deviceId": "42"})
	items, _, err := runAll(t, memSource(docs), b.String(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if ids(items) != "42" {
		t.Fatalf("got %q, want 42", ids(items))
	}

	// CONCAT stops at 64 KiB, so many arguments cannot make each twin cost megabytes.
	big := memSource([]map[string]any{{"deviceId": "big", "tags": map[string]any{"s": strings.Repeat("x", 4096)}}})
	for n, want := range map[int]string{10: "big", 20: ""} {
		text := "SELECT * FROM devices WHERE IS_DEFINED(CONCAT(" + strings.TrimSuffix(strings.Repeat("tags.s,", n), ",") + "))"
		items, _, err := runAll(t, big, text, 10)
		if err != nil || ids(items) != want {
			t.Errorf("CONCAT of %d x 4 KB: got %q %v, want %q", n, ids(items), err, want)
		}
	}
}

// TestQueryConditions checks the bare conditions of jobs and configurations.
func TestQueryConditions(t *testing.T) {
	t.Parallel()
	docs, _ := loadScript(t)
	for _, tc := range []struct{ cond, want string }{
		{"*", "d1 d2 d3 d4 dev-5 x-6"},
		{"deviceId IN ['d1', 'd3']", "d1 d3"},
		{"tags.location.region = 'US' AND status = 'enabled'", "d1 d2"},
		{"properties.reported.temp > 20", "d1 dev-5"},
	} {
		c, err := query.ParseCondition(tc.cond)
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		var got []any
		for _, d := range docs {
			_, mod := d["moduleId"]
			_, row := d["jobId"]
			if !mod && !row && c.Match(d) {
				got = append(got, d)
			}
		}
		if ids(got) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.cond, ids(got), tc.want)
		}
	}
	for _, bad := range []string{"", "* AND x", "deviceId = ", "SELECT * FROM devices"} {
		if _, err := query.ParseCondition(bad); errcode.As(err).Code != errcode.ArgumentInvalid {
			t.Errorf("ParseCondition(%q): got %v, want 400004", bad, err)
		}
	}
}

// TestQueryGroupOrder checks that groups come in the order of their values: numbers
// numerically, then strings, then the group of twins without the property.
func TestQueryGroupOrder(t *testing.T) {
	t.Parallel()
	var docs []map[string]any
	for i, v := range []any{10.0, 2.0, -1.0, 1.5, "b", "a", nil, true, 2.0} {
		docs = append(docs, map[string]any{"deviceId": fmt.Sprint(i), "tags": map[string]any{"v": v}})
	}
	docs = append(docs, map[string]any{"deviceId": "none", "tags": map[string]any{}})
	got, _, err := runAll(t, memSource(docs), "SELECT tags.v AS v, COUNT() AS n FROM devices GROUP BY tags.v", 3)
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"n":1,"v":null},{"n":1,"v":true},{"n":1,"v":-1},{"n":1,"v":1.5},{"n":2,"v":2},{"n":1,"v":10},{"n":1,"v":"a"},{"n":1,"v":"b"},{"n":1}]`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("groups\n got %s\nwant %s", b, want)
	}
}

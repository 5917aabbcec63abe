// Package kqltest runs KQL script tests: files that define tables, run queries and state the
// expected result, in the spirit of Prometheus's promqltest.
//
//	# a comment
//	now 2025-03-04T13:00:00Z
//
//	table Events
//	Name:string | Count:long | TimeGenerated:datetime
//	a | 1 | 2025-03-04T10:00:00Z
//	b | null | 2025-03-04T11:00:00Z
//	end
//
//	query
//	Events | where Count > 0 | project Name
//	expect
//	Name:string
//	a
//	end
//
//	query
//	Events | where Nope == 1
//	expect error line 1, column 16: unknown column
//
// Cells are separated by " | "; null is written null and the empty string "". Rows must come
// in the order given unless the block starts with "expect unordered". "expect rows N" only
// counts rows. An error expectation matches when the error's text contains the given text.
// Blocks "query" may be preceded by "timespan FROM TO" (RFC 3339) to set the query's time
// range for the next query only. Run with -update to rewrite the expectations in place.
package kqltest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/kql"
)

var update = flag.Bool("update", false, "rewrite the expectations of KQL script tests")

// Options shape how scripts run.
type Options struct {
	// Catalog holds tables the scripts can query besides the ones they define.
	Catalog kql.Catalog
	// Explain backs the explain() function.
	Explain kql.Explainer
}

// RunFile runs one script file as subtests named after each query's line.
func RunFile(t *testing.T, path string, opts Options) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	s := &script{t: t, path: path, lines: lines, cat: append(kql.Catalog(nil), opts.Catalog...), explain: opts.Explain}
	s.run()
	if *update && s.changed {
		if err := os.WriteFile(path, []byte(strings.Join(s.lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type script struct {
	t        *testing.T
	path     string
	lines    []string
	i        int
	cat      kql.Catalog
	now      time.Time
	from, to time.Time
	explain  kql.Explainer
	changed  bool
}

func (s *script) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.path, s.i+1, fmt.Sprintf(format, args...))
}

func (s *script) run() {
	for s.i < len(s.lines) {
		line := strings.TrimSpace(s.lines[s.i])
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			s.i++
		case strings.HasPrefix(line, "now "):
			t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(line[4:]))
			if err != nil {
				s.fatalf("bad now: %v", err)
			}
			s.now = t
			s.i++
		case strings.HasPrefix(line, "timespan "):
			f := strings.Fields(line)
			if len(f) != 3 {
				s.fatalf("timespan FROM TO")
			}
			var err1, err2 error
			s.from, err1 = time.Parse(time.RFC3339Nano, f[1])
			s.to, err2 = time.Parse(time.RFC3339Nano, f[2])
			if err1 != nil || err2 != nil {
				s.fatalf("bad timespan")
			}
			s.i++
		case strings.HasPrefix(line, "table "):
			s.table(strings.TrimSpace(line[6:]))
		case line == "query":
			s.query()
		default:
			s.fatalf("unexpected line %q", line)
		}
	}
}

func parseKind(s string) (kql.Kind, bool) {
	for k := kql.Bool; k <= kql.Dynamic; k++ {
		if k.String() == s {
			return k, true
		}
	}
	return 0, false
}

func splitCells(line string) []string {
	parts := strings.Split(line, " | ")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

func (s *script) table(name string) {
	s.i++
	if s.i >= len(s.lines) {
		s.fatalf("table %s has no header", name)
	}
	var cols []kql.Column
	for _, h := range splitCells(s.lines[s.i]) {
		n, typ, ok := strings.Cut(h, ":")
		k, kok := parseKind(typ)
		if !ok || !kok {
			s.fatalf("column %q must be name:type", h)
		}
		cols = append(cols, kql.Column{Name: n, Type: k})
	}
	s.i++
	mt := &kql.MemTable{TableName: name, Cols: cols}
	for ; s.i < len(s.lines) && strings.TrimSpace(s.lines[s.i]) != "end"; s.i++ {
		cells := splitCells(s.lines[s.i])
		if len(cells) != len(cols) {
			s.fatalf("row has %d cells, want %d", len(cells), len(cols))
		}
		row := make(kql.Row, len(cols))
		for j, c := range cells {
			v, err := parseCell(c, cols[j].Type)
			if err != nil {
				s.fatalf("cell %q: %v", c, err)
			}
			row[j] = v
		}
		mt.Rows = append(mt.Rows, row)
	}
	s.i++
	s.cat = append(s.cat, mt)
}

func parseCell(c string, k kql.Kind) (kql.Value, error) {
	if c == "null" {
		return kql.Value{}, nil
	}
	if c == `""` {
		c = ""
	}
	switch k {
	case kql.String:
		return kql.StringValue(c), nil
	case kql.Long, kql.Int:
		n, err := strconv.ParseInt(c, 10, 64)
		return kql.Value{K: k, I: n}, err
	case kql.Real:
		f, err := strconv.ParseFloat(c, 64)
		return kql.RealValue(f), err
	case kql.Bool:
		b, err := strconv.ParseBool(c)
		return kql.BoolValue(b), err
	case kql.DateTime:
		t, err := time.Parse(time.RFC3339Nano, c)
		return kql.TimeValue(t), err
	case kql.TimeSpan:
		d, err := time.ParseDuration(c)
		return kql.SpanValue(d), err
	case kql.Dynamic:
		return kql.ParseJSON(c), nil
	}
	return kql.Value{}, fmt.Errorf("unsupported type %s", k)
}

// cell renders a value for comparison.
func cell(v kql.Value) string {
	if v.K == kql.Null || v.K == kql.Dynamic && v.D == nil {
		return "null"
	}
	s := v.String()
	if s == "" {
		return `""`
	}
	return s
}

func (s *script) query() {
	start := s.i
	s.i++
	var q []string
	for ; s.i < len(s.lines) && !strings.HasPrefix(strings.TrimSpace(s.lines[s.i]), "expect"); s.i++ {
		q = append(q, s.lines[s.i])
	}
	if s.i >= len(s.lines) {
		s.fatalf("query without expect")
	}
	query := strings.Join(q, "\n")
	exp := strings.TrimSpace(s.lines[s.i])
	name := fmt.Sprintf("line%d", start+1)
	opts := kql.Options{Now: s.now, From: s.from, To: s.to, Explain: s.explain}
	s.from, s.to = time.Time{}, time.Time{}
	res, err := kql.Run(context.Background(), s.cat, query, opts)
	switch {
	case strings.HasPrefix(exp, "expect error"):
		want := strings.TrimSpace(strings.TrimPrefix(exp, "expect error"))
		s.i++
		s.t.Run(name, func(t *testing.T) {
			if err == nil {
				t.Errorf("%s:%d: query succeeded, want error %q\n%s", s.path, start+1, want, query)
			} else if !strings.Contains(err.Error(), want) {
				t.Errorf("%s:%d: error %q, want it to contain %q", s.path, start+1, err, want)
			}
		})
	case strings.HasPrefix(exp, "expect rows "):
		n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(exp, "expect rows ")))
		s.i++
		s.t.Run(name, func(t *testing.T) {
			if err != nil {
				t.Errorf("%s:%d: %v", s.path, start+1, err)
			} else if len(res.Rows) != n {
				t.Errorf("%s:%d: got %d rows, want %d", s.path, start+1, len(res.Rows), n)
			}
		})
	case exp == "expect" || exp == "expect unordered":
		unordered := exp == "expect unordered"
		expStart := s.i + 1
		s.i++
		var want []string
		for ; s.i < len(s.lines) && strings.TrimSpace(s.lines[s.i]) != "end"; s.i++ {
			want = append(want, strings.TrimSpace(s.lines[s.i]))
		}
		expEnd := s.i
		s.i++
		var got []string
		if err == nil {
			got = render(res)
		}
		if *update && err == nil {
			if !equalLines(got, want, unordered) {
				s.lines = append(s.lines[:expStart], append(append([]string(nil), got...), s.lines[expEnd:]...)...)
				s.i += len(got) - len(want)
				s.changed = true
			}
			return
		}
		s.t.Run(name, func(t *testing.T) {
			if err != nil {
				t.Errorf("%s:%d: %v\n%s", s.path, start+1, err, query)
				return
			}
			if !equalLines(got, want, unordered) {
				t.Errorf("%s:%d: result differs\n--- got\n%s\n--- want\n%s", s.path, start+1, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	default:
		s.fatalf("expected expect, expect unordered, expect rows N or expect error")
	}
}

func render(res *kql.Result) []string {
	var out []string
	hdr := make([]string, len(res.Columns))
	for i, c := range res.Columns {
		hdr[i] = c.Name + ":" + c.Type.String()
	}
	out = append(out, strings.Join(hdr, " | "))
	for _, row := range res.Rows {
		cells := make([]string, len(row))
		for i, v := range row {
			cells[i] = cell(v)
		}
		out = append(out, strings.Join(cells, " | "))
	}
	return out
}

func equalLines(got, want []string, unordered bool) bool {
	if len(got) != len(want) {
		return false
	}
	if unordered && len(got) > 1 {
		g := append([]string(nil), got[1:]...)
		w := append([]string(nil), want[1:]...)
		sort.Strings(g)
		sort.Strings(w)
		got = append([]string{got[0]}, g...)
		want = append([]string{want[0]}, w...)
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

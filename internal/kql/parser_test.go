package kql

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// errorCases hold queries with an /*ERROR "regexp"*/ marker placed right before the token the
// error must point at, as go/parser's tests do. The marker is removed before the query runs.
var errorCases = []string{
	`AzureDiagnostics | /*ERROR "expected an operator"*/`,
	`AzureDiagnostics | where Category == /*ERROR "expected an expression, found '\|'"*/| count`,
	`AzureDiagnostics
| where ( Category == "Connections" and Level == "Error" /*ERROR "expected '\)' to close"*/| count`,
	`AzureDiagnostics | /*ERROR "unknown operator 'wher'"*/wher Level == "Error"`,
	`AzureDiagnostics | where /*ERROR "unknown column or name 'Nope'"*/Nope == 1`,
	`/*ERROR "unknown table or operator 'AzureDiag'"*/AzureDiag | count`,
	`/*ERROR "did you mean 'AzureDiagnostics'"*/azurediagnostics | count`,
	`AzureDiagnostics | where Category == /*ERROR "the string is not closed"*/"Connections`,
	`AzureDiagnostics | where TimeGenerated > /*ERROR "is not a number or a timespan"*/1x`,
	`AzureDiagnostics | where TimeGenerated > /*ERROR "is not a date"*/datetime(yesterday)`,
	`AzureDiagnostics | extend x = /*ERROR "unknown function 'pars_json'"*/pars_json(properties_s)`,
	`AzureDiagnostics | extend x = /*ERROR "takes 1 arguments, got 2"*/tostring(1, 2)`,
	`AzureDiagnostics | summarize /*ERROR "is not an aggregation"*/tostring(Level)`,
	`AzureDiagnostics | where /*ERROR "is an aggregation"*/count() > 1`,
	`AzureDiagnostics | where ResultType matches regex /*ERROR "bad regular expression"*/"(["`,
	`AzureDiagnostics | order /*ERROR "expected 'by' after order"*/Level`,
	`AzureDiagnostics | project-away /*ERROR "unknown column or name 'Nope'"*/Nope`,
	`AzureDiagnostics | take /*ERROR "constant number of rows"*/DurationMs`,
	`AzureDiagnostics | /*ERROR "join operator is not supported"*/join (AzureMetrics) on Resource`,
	`AzureDiagnostics | where Level == "Error"
	| extend d = /*ERROR "unknown column or name 'propertie_s'"*/propertie_s`,
	`AzureDiagnostics | where Level in /*ERROR "expected '\(' before the list"*/"Error"`,
	`AzureDiagnostics | where x /*ERROR "unexpected character"*/# 1`,
	`let /*ERROR "expected a name after let"*/= 1; AzureDiagnostics`,
	`AzureDiagnostics | count /*ERROR "expected '\|' or the end of the query"*/foo`,
}

var errMarker = regexp.MustCompile(`/\*ERROR "((?:[^"\\]|\\.)*)"\*/`)

func TestParseErrorPositions(t *testing.T) {
	t.Parallel()
	cat := Catalog{&MemTable{TableName: "AzureDiagnostics", Cols: []Column{
		{"TimeGenerated", DateTime}, {"Category", String}, {"Level", String}, {"ResultType", String},
		{"DurationMs", Long}, {"properties_s", String},
	}}, &MemTable{TableName: "AzureMetrics"}}
	for _, src := range errorCases {
		m := errMarker.FindStringSubmatchIndex(src)
		if m == nil {
			t.Fatalf("no ERROR marker in %q", src)
		}
		query := src[:m[0]] + src[m[1]:]
		want := regexp.MustCompile(src[m[2]:m[3]])
		before := src[:m[0]]
		line := strings.Count(before, "\n") + 1
		col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
		_, err := Run(context.Background(), cat, query, Options{})
		if err == nil {
			t.Errorf("%q: no error, want %q at %d:%d", query, want, line, col)
			continue
		}
		e, ok := err.(*Error)
		if !ok {
			t.Errorf("%q: error %T %v is not positioned", query, err, err)
			continue
		}
		if e.Pos.Line != line || e.Pos.Col != col {
			t.Errorf("%q: error at %d:%d, want %d:%d (%v)", query, e.Pos.Line, e.Pos.Col, line, col, e)
		}
		if !want.MatchString(e.Msg) {
			t.Errorf("%q: error %q does not match %q", query, e.Msg, want)
		}
	}
}

func TestParseDepthLimit(t *testing.T) {
	t.Parallel()
	deep := "print x = " + strings.Repeat("(", 10000) + "1" + strings.Repeat(")", 10000)
	_, err := Parse(deep)
	if err == nil || !strings.Contains(err.Error(), "nests more than") {
		t.Fatalf("deep nesting: %v", err)
	}
	neg := "print x = " + strings.Repeat("-", 10000) + "1"
	if _, err := Parse(neg); err == nil {
		t.Fatal("deep unary nesting must fail, not overflow the stack")
	}
	long := strings.Repeat("x", MaxQueryLength+1)
	if _, err := Parse(long); err == nil {
		t.Fatal("over-long query must fail")
	}
}

func TestGuideQueriesParse(t *testing.T) {
	t.Parallel()
	// The troubleshooting guide's query, verbatim, including its spacing.
	q := "search *\n| where ( Type == \"AzureDiagnostics\" and ResourceType == \"IOTHUBS\")\n| where ( Category == \"Connections\" and Level == \"Error\")"
	parsed, err := Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	src, ok := parsed.Body.Source.(*SearchSource)
	if !ok || src.Pred != nil || len(parsed.Body.Ops) != 2 {
		t.Fatalf("parsed %+v", parsed.Body)
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	mt := &MemTable{TableName: "T", Cols: []Column{{"K", String}}}
	for i := range 20000 {
		mt.Rows = append(mt.Rows, Row{StringValue(strings.Repeat("k", 100) + string(rune('a'+i%26)) + time.Duration(i).String())})
	}
	_, err := Run(context.Background(), Catalog{mt}, "T | summarize count() by K", Options{MaxMemory: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "more memory") {
		t.Fatalf("got %v, want a memory limit error", err)
	}
	res, err := Run(context.Background(), Catalog{mt}, "T | summarize count() by K | count", Options{})
	if err != nil || res.Rows[0][0].I != 20000 {
		t.Fatalf("without a tight limit: %v %v", res, err)
	}
}

// slowTable never ends on its own: only the context stops it.
type slowTable struct{}

func (slowTable) Name() string      { return "Slow" }
func (slowTable) Columns() []Column { return []Column{{"N", Long}} }
func (slowTable) Scan(ctx context.Context, _ ScanRequest, fn func(Row) bool) error {
	for i := int64(0); ; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if !fn(Row{LongValue(i)}) {
			return nil
		}
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := Run(context.Background(), Catalog{slowTable{}}, "Slow | where N < 0 | count", Options{Timeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "ran out of time") {
		t.Fatalf("got %v, want a timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("timeout took %s", time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Catalog{slowTable{}}, "Slow | count", Options{}); err == nil {
		t.Fatal("a cancelled context must stop the query")
	}
	// take stops an endless source.
	res, err := Run(context.Background(), Catalog{slowTable{}}, "Slow | take 5", Options{})
	if err != nil || len(res.Rows) != 5 {
		t.Fatalf("take on an endless table: %v %v", res, err)
	}
}

func TestPushdown(t *testing.T) {
	t.Parallel()
	rec := &recordingTable{}
	now := time.Date(2025, 3, 4, 13, 0, 0, 0, time.UTC)
	_, err := Run(context.Background(), Catalog{rec}, `search *
| where ( Type == "AzureDiagnostics" and ResourceType == "IOTHUBS")
| where ( Category == "Connections" and Level == "Error") and TimeGenerated > ago(1h)`, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 1 {
		t.Fatalf("scans: %d", len(rec.reqs))
	}
	req := rec.reqs[0]
	if !req.From.Equal(now.Add(-time.Hour)) || !req.To.IsZero() {
		t.Errorf("time range %v..%v", req.From, req.To)
	}
	for col, want := range map[string]string{"Type": "AzureDiagnostics", "ResourceType": "IOTHUBS", "Category": "Connections", "Level": "Error"} {
		if got := req.Equals[col]; len(got) != 1 || got[0] != want {
			t.Errorf("Equals[%s] = %v, want [%s]", col, got, want)
		}
	}
	// An or of equalities on one column narrows the scan too.
	rec3 := &recordingTable{}
	if _, err := Run(context.Background(), Catalog{rec3}, `AzureDiagnostics | where Level == "Error" or Level == "Critical" | where Category == "A" or Level == "x"`, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := rec3.reqs[0].Equals["Level"]; len(got) != 2 || got[0] != "Error" || got[1] != "Critical" || rec3.reqs[0].Equals["Category"] != nil {
		t.Errorf("or pushdown: %v", rec3.reqs[0].Equals)
	}
	// A table without the filtered column is not scanned at all.
	rec2 := &recordingTable{}
	other := &recordingTable{name: "Other", cols: []Column{{"TimeGenerated", DateTime}, {"MetricName", String}}}
	if _, err := Run(context.Background(), Catalog{rec2, other}, `search * | where Category == "Connections"`, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(other.reqs) != 0 || len(rec2.reqs) != 1 {
		t.Errorf("scans: %d of the table with the column, %d of the one without", len(rec2.reqs), len(other.reqs))
	}
}

type recordingTable struct {
	name string
	cols []Column
	reqs []ScanRequest
}

func (r *recordingTable) Name() string {
	if r.name == "" {
		return "AzureDiagnostics"
	}
	return r.name
}
func (r *recordingTable) Columns() []Column {
	if r.cols != nil {
		return r.cols
	}
	return []Column{{"TimeGenerated", DateTime}, {"Type", String}, {"ResourceType", String}, {"Category", String}, {"Level", String}}
}
func (r *recordingTable) Scan(_ context.Context, req ScanRequest, _ func(Row) bool) error {
	r.reqs = append(r.reqs, req)
	return nil
}

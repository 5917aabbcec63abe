package kql

import (
	"context"
	"testing"
	"time"
)

// FuzzQuery feeds arbitrary text to the lexer, parser and evaluator: any input must give a
// result or an error, never a panic or a hang.
func FuzzQuery(f *testing.F) {
	seeds := []string{
		"search *\n| where ( Type == \"AzureDiagnostics\" and ResourceType == \"IOTHUBS\")\n| where ( Category == \"Connections\" and Level == \"Error\")",
		"T | where ResultType == \"429001\" | extend DeviceId = tostring(parse_json(properties_s).deviceId) | summarize count() by DeviceId, Category | order by count_ desc",
		"T | summarize max(TimeGenerated) by bin(TimeGenerated, 5m)",
		"T | where TimeGenerated between (datetime(2025-01-01) .. 1d) | top 3 by DurationMs asc nulls first",
		"print x = dynamic({'a': [1, 2, {\"b\": null}]}), y = timespan(1.02:03:04.5), z = @\"c:\\x\"\"y\"",
		"let n = 3; T | take n | project-away Time* | project-rename A = Category",
		"T | where Category in~ (\"a\", dynamic([\"b\"])) and Level !in (\"x\") and properties_s matches regex \"^a+$\"",
		"T | summarize arg_max(TimeGenerated, *), make_set(Level, 2), dcount(Category) by Level | distinct *",
		"union T, T | search kind=case_sensitive \"Error\" | getschema",
		"T | where * has \"x\" | count | render timechart",
		"['T'] | extend ['a b'] = 1",
		"T | where properties_s has_any (\"a\", \"b\") and Category !startswith_cs \"c\"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	cols := []Column{{"TimeGenerated", DateTime}, {"Category", String}, {"Level", String}, {"ResultType", String},
		{"DurationMs", Long}, {"properties_s", String}}
	rows := []Row{
		{TimeValue(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), StringValue("Connections"), StringValue("Error"), StringValue("404104"), Value{}, StringValue(`{"deviceId":"d1"}`)},
		{TimeValue(time.Date(2025, 1, 1, 1, 0, 0, 0, time.UTC)), StringValue("Routes"), StringValue("Information"), StringValue(""), LongValue(4), StringValue(`not json`)},
	}
	cat := Catalog{&MemTable{TableName: "T", Cols: cols, Rows: rows}}
	f.Fuzz(func(t *testing.T, q string) {
		res, err := Run(context.Background(), cat, q, Options{Timeout: 2 * time.Second, MaxMemory: 16 << 20, MaxRows: 1000,
			Now: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			if e, ok := err.(*Error); ok && e.Pos.Line == 0 && e.Msg == "" {
				t.Fatalf("empty error for %q", q)
			}
			return
		}
		for _, r := range res.Rows {
			if len(r) != len(res.Columns) {
				t.Fatalf("row of %d values for %d columns: %q", len(r), len(res.Columns), q)
			}
		}
		_ = res.LogAnalytics()
	})
}

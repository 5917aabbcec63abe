package kql

import (
	"context"
	"time"
)

// Column is a named, typed column.
type Column struct {
	Name string `json:"name"`
	Type Kind   `json:"-"`
}

// Row is one row; its values line up with its table's columns.
type Row []Value

// ScanRequest tells a [Table] which rows the query can possibly use, so that it reads no more
// than it must. It is a hint: a table may return more rows, never fewer, since every predicate
// is evaluated again on the rows returned.
type ScanRequest struct {
	// From and To bound TimeGenerated (inclusive). Zero means unbounded on that side.
	From, To time.Time
	// Equals holds, per column, the only values a row may have (exact, case-sensitive string
	// comparison) for the query to keep it.
	Equals map[string][]string
}

// Table is a source of rows.
type Table interface {
	// Name is the table's name in queries (AzureDiagnostics).
	Name() string
	// Columns lists the table's columns; rows passed to Scan's callback line up with them.
	Columns() []Column
	// Scan calls fn with each row the request allows, until fn returns false or the rows run
	// out. The row is only valid during the call: fn copies what it keeps. Scan returns ctx's
	// error if the context ends.
	Scan(ctx context.Context, req ScanRequest, fn func(Row) bool) error
}

// Catalog is the set of tables a query can name.
type Catalog []Table

func (c Catalog) lookup(name string) Table {
	for _, t := range c {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// MemTable is a table held in memory, for tests and small sources.
type MemTable struct {
	TableName string
	Cols      []Column
	Rows      []Row
}

// Name implements [Table].
func (m *MemTable) Name() string { return m.TableName }

// Columns implements [Table].
func (m *MemTable) Columns() []Column { return m.Cols }

// Scan implements [Table]: every row, filtered by the request's time range when the table has
// a TimeGenerated column.
func (m *MemTable) Scan(ctx context.Context, req ScanRequest, fn func(Row) bool) error {
	tcol := -1
	for i, c := range m.Cols {
		if c.Name == "TimeGenerated" && c.Type == DateTime {
			tcol = i
		}
	}
	for i, r := range m.Rows {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if tcol >= 0 && !inRange(r[tcol], req.From, req.To) {
			continue
		}
		if !fn(r) {
			return nil
		}
	}
	return nil
}

// inRange reports whether a datetime is within [from, to] (zero bounds are open). Null is out
// of any bounded range.
func inRange(v Value, from, to time.Time) bool {
	if from.IsZero() && to.IsZero() {
		return true
	}
	if v.K != DateTime {
		return false
	}
	if !from.IsZero() && v.I < from.UnixNano() {
		return false
	}
	if !to.IsZero() && v.I > to.UnixNano() {
		return false
	}
	return true
}

// Result is a query's answer.
type Result struct {
	Columns []Column
	Rows    []Row
	// Truncated is set when the result had more rows than the limit and was cut.
	Truncated bool
	// Warnings are notes about the query that did not stop it (a column name matched only
	// without regard to case, say).
	Warnings []string
	// Stats describe the run.
	Stats Stats
}

// Stats describe a query run.
type Stats struct {
	// RowsScanned counts the rows the tables returned.
	RowsScanned int64
	// Duration is how long the query took.
	Duration time.Duration
}

// ColumnIndex returns the index of the named column, or -1.
func (r *Result) ColumnIndex(name string) int {
	for i, c := range r.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// LogAnalyticsTable is one table of a Log Analytics query API answer.
type LogAnalyticsTable struct {
	Name    string               `json:"name"`
	Columns []LogAnalyticsColumn `json:"columns"`
	Rows    [][]any              `json:"rows"`
}

// LogAnalyticsColumn is a column of a Log Analytics answer.
type LogAnalyticsColumn struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// LogAnalytics is the Log Analytics query API's answer shape:
// {"tables":[{"name":"PrimaryResult","columns":[{"name","type"}],"rows":[[...]]}]}.
type LogAnalytics struct {
	Tables []LogAnalyticsTable `json:"tables"`
}

// LogAnalytics returns the result in the Log Analytics query API's shape.
func (r *Result) LogAnalytics() LogAnalytics {
	t := LogAnalyticsTable{Name: "PrimaryResult", Columns: make([]LogAnalyticsColumn, len(r.Columns)), Rows: make([][]any, len(r.Rows))}
	for i, c := range r.Columns {
		t.Columns[i] = LogAnalyticsColumn{Name: c.Name, Type: c.Type.String()}
		if c.Type == Null {
			t.Columns[i].Type = "string"
		}
	}
	for i, row := range r.Rows {
		out := make([]any, len(row))
		for j, v := range row {
			out[j] = v.JSON()
		}
		t.Rows[i] = out
	}
	return LogAnalytics{Tables: []LogAnalyticsTable{t}}
}

// Objects returns the rows as objects keyed by column name, dynamic values kept structured.
func (r *Result) Objects() []map[string]any {
	out := make([]map[string]any, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]any, len(row))
		for j, v := range row {
			m[r.Columns[j].Name] = v.Native()
		}
		out[i] = m
	}
	return out
}

package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/kql"
)

// adminFlags are the flags of commands that use the hub's admin listener.
type adminFlags struct {
	clientFlags
	addr  string
	token string
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	f.clientFlags.register(fs)
	fs.StringVar(&f.addr, "admin-addr", envOr("ROOST_ADMIN_ADDR", ""), "the hub's admin listener, host:port (default: the local hub's)")
	fs.StringVar(&f.token, "admin-token", envOr("ROOST_ADMIN_TOKEN", ""), "admin bearer token (default: sign with the service connection string)")
}

// admin builds an admin client from the flags, falling back on the local hub's data dir.
func (f *adminFlags) admin() (*client.Admin, error) {
	cfg := client.AdminConfig{Address: f.addr, Token: f.token, ConnectionString: f.connStr}
	if cfg.Address == "" || cfg.Token == "" && cfg.ConnectionString == "" {
		lf, err := readLocal(f.dataDir)
		if err != nil {
			if cfg.Address == "" {
				return nil, fmt.Errorf("%w (or pass --admin-addr)", err)
			}
			return nil, err
		}
		if cfg.Address == "" {
			if lf.AdminAddr == "" {
				return nil, errors.New("the local hub runs without an admin listener (start it with --admin-addr)")
			}
			cfg.Address = dialable(lf.AdminAddr)
		}
		if cfg.Token == "" && cfg.ConnectionString == "" {
			cs, err := policyConnectionString(lf, "iothubowner")
			if err != nil {
				return nil, err
			}
			cfg.ConnectionString = cs
		}
	}
	return client.NewAdmin(cfg)
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*m = append(*m, s)
		}
	}
	return nil
}

const logsUsage = `Usage:
  roost logs query [--file PATH]... [--timespan PT1H] [--explain] [--output table|list|json] '<kql>'
  roost logs tail [--category C]... [--level Error] [--output json]
  roost logs explain [--file PATH]... [--timespan P7D] [--output json]
  roost logs categories

query runs KQL over the hub's AzureDiagnostics and AzureMetrics tables, or, with --file, over
diagnostic logs exported from an IoT hub (files or directories of {"records":[...]} batches or
JSON lines); no hub needs to run for that. explain summarizes the errors found, by code, with
cause and fix.`

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, logsUsage)
		return 2
	}
	switch args[0] {
	case "query":
		return runLogsQuery(ctx, args[1:], stdout, stderr)
	case "tail":
		return runLogsTail(ctx, args[1:], stdout, stderr)
	case "explain":
		return runLogsExplain(ctx, args[1:], stdout, stderr)
	case "categories":
		return runLogsCategories(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, logsUsage)
		return 0
	}
	fmt.Fprintf(stderr, "roost logs: unknown command %q\n%s\n", args[0], logsUsage)
	return 2
}

// table is a query result in a shape the printers share.
type table struct {
	cols  []string
	types []string
	rows  [][]any
}

func tableFromResult(res *kql.Result) table {
	t := table{}
	la := res.LogAnalytics().Tables[0]
	for _, c := range la.Columns {
		t.cols = append(t.cols, c.Name)
		t.types = append(t.types, c.Type)
	}
	t.rows = la.Rows
	return t
}

func tableFromClient(res *client.QueryResult) table {
	t := table{}
	if len(res.Tables) == 0 {
		return t
	}
	for _, c := range res.Tables[0].Columns {
		t.cols = append(t.cols, c.Name)
		t.types = append(t.types, c.Type)
	}
	t.rows = res.Tables[0].Rows
	return t
}

func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// print writes the table as a table, a list of records or a JSON array of objects keyed by
// column name (dynamic columns decoded).
func (t table) print(w io.Writer, format string, width int) error {
	switch format {
	case "json":
		out := make([]map[string]any, 0, len(t.rows))
		for _, row := range t.rows {
			m := make(map[string]any, len(row))
			for i, v := range row {
				if t.types[i] == "dynamic" {
					if s, ok := v.(string); ok {
						var d any
						if json.Unmarshal([]byte(s), &d) == nil {
							v = d
						}
					}
				}
				m[t.cols[i]] = v
			}
			out = append(out, m)
		}
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "list":
		wide := 0
		for _, c := range t.cols {
			wide = max(wide, len(c))
		}
		for i, row := range t.rows {
			if i > 0 {
				fmt.Fprintln(w)
			}
			for j, v := range row {
				fmt.Fprintf(w, "%-*s  %s\n", wide, t.cols[j], cellText(v))
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.cols, "\t"))
	for _, row := range t.rows {
		cells := make([]string, len(row))
		for i, v := range row {
			s := strings.Map(func(r rune) rune {
				if r == '\t' || r == '\n' || r == '\r' {
					return ' '
				}
				return r
			}, cellText(v))
			if width > 0 && len([]rune(s)) > width {
				s = string([]rune(s)[:width-1]) + "…"
			}
			cells[i] = s
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func runLogsQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newFlagSet("logs query", stderr, "roost logs query [--file PATH]... [--timespan PT1H] [--explain] [--output table|list|json] '<kql>'")
	af.register(fs)
	var files multiFlag
	fs.Var(&files, "file", "query these exported log files or directories instead of a hub (repeatable)")
	timespan := fs.String("timespan", "", "limit TimeGenerated: an ISO 8601 duration back from now (PT1H, P7D) or start/end")
	explain := fs.Bool("explain", false, "add Cause and Resolution columns for each row's ResultType")
	maxRows := fs.Int("max-rows", 0, "cut the result to this many rows (default: the hub's limit, 30000)")
	width := fs.Int("width", 60, "table output: cut cells to this many characters (0: no limit)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "roost logs query: give exactly one query (quote it)")
		return 2
	}
	switch af.output {
	case "table", "json", "list":
	default:
		fmt.Fprintf(stderr, "roost logs query: --output %q: use table, list or json\n", af.output)
		return 2
	}
	query := pos[0]
	var t table
	var warnings []string
	if len(files) > 0 {
		ft, err := diag.OpenFiles(files...)
		if err != nil {
			return fail(stderr, "logs query", err)
		}
		now := time.Now()
		from, to, err := kql.ParseTimespan(*timespan, now)
		if err != nil {
			return fail(stderr, "logs query", err)
		}
		res, err := kql.Run(ctx, kql.Catalog{ft}, query, kql.Options{Now: now, From: from, To: to, MaxRows: *maxRows, Explain: diag.Explain, Timeout: 10 * time.Minute})
		if err != nil {
			return failQuery(stderr, query, err)
		}
		if *explain {
			diag.AddExplanations(res)
		}
		t, warnings = tableFromResult(res), res.Warnings
		if res.Truncated {
			warnings = append(warnings, fmt.Sprintf("the result was cut to %d rows", len(res.Rows)))
		}
	} else {
		ad, err := af.admin()
		if err != nil {
			return fail(stderr, "logs query", err)
		}
		res, err := ad.Query(ctx, query, *timespan, *explain, *maxRows)
		if err != nil {
			return failQuery(stderr, query, err)
		}
		t, warnings = tableFromClient(res), res.Warnings
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err := t.print(stdout, af.output, *width); err != nil {
		return fail(stderr, "logs query", err)
	}
	return 0
}

// failQuery prints a query error with a caret under the position it names.
func failQuery(stderr io.Writer, query string, err error) int {
	line, col := 0, 0
	var qe *kql.Error
	var ae *client.AdminError
	switch {
	case errors.As(err, &qe):
		line, col = qe.Pos.Line, qe.Pos.Col
	case errors.As(err, &ae):
		line, col = ae.Inner.Line, ae.Inner.Pos
	}
	fmt.Fprintf(stderr, "roost logs query: %v\n", err)
	lines := strings.Split(query, "\n")
	if line > 0 && line <= len(lines) && col > 0 {
		fmt.Fprintf(stderr, "  %s\n  %s^\n", lines[line-1], strings.Repeat(" ", col-1))
	}
	return 1
}

func runLogsTail(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newFlagSet("logs tail", stderr, "roost logs tail [--category C]... [--level Error]... [--output json]")
	af.register(fs)
	var cats, levels multiFlag
	fs.Var(&cats, "category", "only this category (repeatable)")
	fs.Var(&levels, "level", "only this level: Information, Warning, Error, Critical (repeatable)")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "logs tail", err)
	}
	fmt.Fprintln(stderr, "Following new diagnostic records, ctrl-c to stop...")
	err = ad.Tail(ctx, cats, levels, func(w diag.Wire) error {
		if af.output == "json" {
			b, _ := json.Marshal(w)
			_, err := fmt.Fprintln(stdout, string(b))
			return err
		}
		var props map[string]any
		_ = json.Unmarshal([]byte(w.Properties), &props)
		dev, _ := props["deviceId"].(string)
		code := w.ResultType
		if code != "" {
			code += " " + w.ResultDescription
		}
		_, err := fmt.Fprintf(stdout, "%s  %-24s %-18s %-11s %s %s\n", w.Time, w.Category, w.OperationName, w.Level, dev, code)
		return err
	})
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fail(stderr, "logs tail", errors.New("the hub ended the stream (is it shutting down?)"))
	}
	if err != nil {
		return fail(stderr, "logs tail", err)
	}
	return 0
}

func runLogsExplain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newFlagSet("logs explain", stderr, "roost logs explain [--file PATH]... [--timespan P7D] [--output json]")
	af.register(fs)
	var files multiFlag
	fs.Var(&files, "file", "summarize these exported log files or directories instead of a hub (repeatable)")
	timespan := fs.String("timespan", "", "limit TimeGenerated: an ISO 8601 duration back from now (P7D) or start/end")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	var sums []diag.ErrorSummary
	if len(files) > 0 {
		ft, err := diag.OpenFiles(files...)
		if err != nil {
			return fail(stderr, "logs explain", err)
		}
		now := time.Now()
		from, to, err := kql.ParseTimespan(*timespan, now)
		if err != nil {
			return fail(stderr, "logs explain", err)
		}
		sums, err = diag.Summarize(ctx, kql.Catalog{ft}, kql.Options{Now: now, From: from, To: to, Timeout: 10 * time.Minute})
		if err != nil {
			return fail(stderr, "logs explain", err)
		}
	} else {
		ad, err := af.admin()
		if err != nil {
			return fail(stderr, "logs explain", err)
		}
		res, err := ad.Query(ctx, diag.SummaryQuery, *timespan, false, 0)
		if err != nil {
			return fail(stderr, "logs explain", err)
		}
		sums = summariesFromClient(res)
	}
	if af.output == "json" {
		if sums == nil {
			sums = []diag.ErrorSummary{}
		}
		printJSON(stdout, sums)
		return 0
	}
	printSummaries(stdout, sums)
	return 0
}

// summariesFromClient rebuilds error summaries from a hub's answer to diag.SummaryQuery.
func summariesFromClient(res *client.QueryResult) []diag.ErrorSummary {
	t := tableFromClient(res)
	kr := &kql.Result{}
	for i, c := range t.cols {
		k := kql.String
		switch t.types[i] {
		case "long":
			k = kql.Long
		case "dynamic":
			k = kql.Dynamic
		}
		kr.Columns = append(kr.Columns, kql.Column{Name: c, Type: k})
	}
	for _, row := range t.rows {
		r := make(kql.Row, len(row))
		for i, v := range row {
			switch kr.Columns[i].Type {
			case kql.Long:
				if f, ok := v.(float64); ok {
					r[i] = kql.LongValue(int64(f))
				}
			case kql.Dynamic:
				if s, ok := v.(string); ok {
					r[i] = kql.ParseJSON(s)
				}
			default:
				r[i] = kql.StringValue(cellText(v))
			}
		}
		kr.Rows = append(kr.Rows, r)
	}
	return diag.SummariesFromResult(kr)
}

func printSummaries(w io.Writer, sums []diag.ErrorSummary) {
	if len(sums) == 0 {
		fmt.Fprintln(w, "No errors found.")
		return
	}
	var total int64
	for _, s := range sums {
		total += s.Count
	}
	fmt.Fprintf(w, "%d errors of %d kinds\n", total, len(sums))
	for _, s := range sums {
		times := "times"
		if s.Count == 1 {
			times = "time"
		}
		fmt.Fprintf(w, "\n%s %s: %d %s", s.Code, s.Name, s.Count, times)
		if s.Devices > 0 {
			fmt.Fprintf(w, ", %d device(s): %s", s.Devices, strings.Join(s.SampleDevices, ", "))
			if s.Devices > int64(len(s.SampleDevices)) {
				fmt.Fprint(w, ", ...")
			}
		}
		fmt.Fprintf(w, "\n  where:  %s / %s\n", strings.Join(s.Categories, ", "), strings.Join(s.Operations, ", "))
		fmt.Fprintf(w, "  seen:   %s to %s\n", s.FirstSeen, s.LastSeen)
		if s.Cause != "" {
			fmt.Fprintf(w, "  cause:  %s\n", s.Cause)
		}
		if s.Resolution != "" {
			fmt.Fprintf(w, "  fix:    %s\n", s.Resolution)
		}
		if s.Cause == "" && s.Resolution == "" {
			fmt.Fprintln(w, "  (no explanation in the catalog; roost errors lists the codes)")
		}
	}
}

func runLogsCategories(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("logs categories", stderr, "roost logs categories [--output json]")
	output := fs.String("output", "table", "table or json")
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	cats := diag.Categories()
	if *output == "json" {
		printJSON(stdout, cats)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CATEGORY\tOPERATIONS\tDESCRIPTION")
	for _, c := range cats {
		var ops []string
		for _, op := range c.Operations {
			n := op.Name
			if !op.Documented {
				n += "*"
			}
			ops = append(ops, n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, strings.Join(ops, " "), c.Description)
	}
	_ = tw.Flush()
	fmt.Fprintln(stdout, "\n* Roost's name: IoT Hub's documents do not give one.")
	return 0
}

func runMetrics(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var af adminFlags
	fs := newFlagSet("metrics", stderr, "roost metrics [--output json]")
	af.register(fs)
	if _, err := parseArgs(fs, args); err != nil {
		return 2
	}
	ad, err := af.admin()
	if err != nil {
		return fail(stderr, "metrics", err)
	}
	var cur []struct {
		Name    string  `json:"name"`
		Display string  `json:"displayName"`
		Unit    string  `json:"unit"`
		Prom    string  `json:"prometheusName"`
		Value   float64 `json:"value"`
		Count   float64 `json:"count"`
	}
	if err := ad.Do(ctx, "GET", "/diagnostics/metrics", nil, &cur); err != nil {
		return fail(stderr, "metrics", err)
	}
	if af.output == "json" {
		printJSON(stdout, cur)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tUNIT\tDESCRIPTION\tPROMETHEUS")
	for _, c := range cur {
		v := strconv.FormatFloat(c.Value, 'f', -1, 64)
		if c.Count > 0 || c.Unit != "Count" && c.Value != 0 {
			v += fmt.Sprintf(" (%g observed)", c.Count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, v, c.Unit, c.Display, c.Prom)
	}
	_ = tw.Flush()
	fmt.Fprintln(stdout, "\nValues are this node's since it started (sizes: the sum of the sizes observed).")
	fmt.Fprintln(stdout, "Per-minute history for the whole hub: roost logs query 'AzureMetrics | where TimeGenerated > ago(1h)'")
	return 0
}

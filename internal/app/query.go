package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/roost-iot/roost/internal/client"
)

const queryUsage = `Usage: roost query "SELECT ..." [--page-size N] [--output table|json]

Runs an IoT Hub query over the device or module twins and prints every page of results, as
az iot hub query does:

  roost query "SELECT * FROM devices WHERE tags.location.region = 'US'"
  roost query "SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices GROUP BY properties.reported.fw"
  roost query "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'" --output json

--page-size asks the hub for pages of N items (1 to 1000; default: the hub's, 100). The table
shows one row per twin (device, module, status, connection state, tags) or per result row;
--output json prints the results as one JSON array.

Common flags: --connection-string, --data-dir, --server, --ca-file
`

func runQueryCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, queryUsage)
		return 0
	}
	var cf clientFlags
	fs := newFlagSet("query", stderr, `roost query "SELECT ..." [flags]`)
	cf.register(fs)
	pageSize := fs.Int("page-size", 0, "items per page, 1 to 1000 (default: the hub's)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || strings.TrimSpace(pos[0]) == "" {
		fmt.Fprint(stderr, queryUsage)
		return 2
	}
	if *pageSize < 0 || *pageSize > 1000 {
		fmt.Fprintln(stderr, "roost query: --page-size must be between 1 and 1000")
		return 2
	}
	c, err := cf.client()
	if err != nil {
		return fail(stderr, "query", err)
	}
	var (
		items    []json.RawMessage
		itemType string
		token    string
		jsonOut  = cf.output == "json"
		started  bool
	)
	for {
		p, err := c.Query(ctx, pos[0], *pageSize, token)
		if err != nil {
			if started {
				fmt.Fprintln(stdout, "\n]")
			}
			return fail(stderr, "query", err)
		}
		itemType = p.ItemType
		if jsonOut { // stream, so that a large hub is not held in memory
			for _, it := range p.Items {
				sep := ",\n"
				if !started {
					sep, started = "[\n", true
				}
				var buf bytes.Buffer
				_ = json.Indent(&buf, it, "  ", "  ")
				fmt.Fprint(stdout, sep+"  "+buf.String())
			}
		} else {
			items = append(items, p.Items...)
		}
		if p.Continuation == "" {
			break
		}
		token = p.Continuation
	}
	if jsonOut {
		if !started {
			fmt.Fprintln(stdout, "[]")
		} else {
			fmt.Fprintln(stdout, "\n]")
		}
		return 0
	}
	printQueryTable(stdout, itemType, items)
	return 0
}

// printQueryTable prints twins as one row each (device, module, status, connection, tags), and
// other results with one column per property.
func printQueryTable(w io.Writer, itemType string, items []json.RawMessage) {
	if len(items) == 0 {
		fmt.Fprintln(w, "(no results)")
		return
	}
	rows := make([]map[string]any, 0, len(items))
	for _, it := range items {
		var m map[string]any
		if json.Unmarshal(it, &m) != nil {
			m = map[string]any{"value": json.RawMessage(it)}
		}
		rows = append(rows, m)
	}
	var cols []string
	if itemType == client.ItemTwin {
		cols = []string{"deviceId"}
		for _, r := range rows {
			if _, ok := r["moduleId"]; ok {
				cols = append(cols, "moduleId")
				break
			}
		}
		cols = append(cols, "status", "connectionState", "lastActivityTime", "tags")
	} else {
		for _, r := range rows {
			keys := make([]string, 0, len(r))
			for k := range r {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				if !slices.Contains(cols, k) {
					cols = append(cols, k)
				}
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(r[c])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%d results\n", len(rows))
}

// cell shows a value in a table: strings as they are, anything else as compact JSON.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	}
	b, _ := json.Marshal(v)
	return string(b)
}

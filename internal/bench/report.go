package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteTable prints results as one table, a row per run and phase. For bulk deletes the
// latencies are of requests carrying BulkSize devices each.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENTS\tPHASE\tOPS\tOPS/S\tP50 ms\tP90 ms\tP99 ms\tERRORS\tCONNS\tCLIENT CPU")
	for _, r := range results {
		for _, p := range r.Phases {
			name := p.Name
			if p.Name == "delete" && r.DeleteMode == DeleteBulk {
				name += fmt.Sprintf(" (%d/req)", BulkSize)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.2f\n",
				r.Clients, name, p.Ops, p.OpsPerSec, p.Latency.P50, p.Latency.P90, p.Latency.P99,
				p.Errors, p.Conns, p.ClientCPU)
		}
	}
	return tw.Flush()
}

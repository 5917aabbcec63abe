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

// WriteTelemetryTable prints telemetry results, a row per run: publishing runs with their rate
// and PUBACK latencies, idle runs with their connect rate and the server's memory.
func WriteTelemetryTable(w io.Writer, results []TelemetryResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var pub, idle []TelemetryResult
	for _, r := range results {
		if r.Mode == ModeIdle {
			idle = append(idle, r)
		} else {
			pub = append(pub, r)
		}
	}
	if len(pub) > 0 {
		fmt.Fprintln(tw, "TARGET\tCONNS\tPAYLOAD\tRATE\tMSGS/S\tP50 ms\tP90 ms\tP99 ms\tMAX ms\tUNACKED\tERRORS\tCONN/S\tCLIENT CPU\tSERVER CPU\tSERVER us/MSG\tLOAD")
		for _, r := range pub {
			rate := "max"
			if r.Rate > 0 {
				rate = fmt.Sprintf("%.0f", r.Rate)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.1f\t%s\n",
				r.Target, r.Connected, r.PayloadBytes, rate, r.MsgsPerSec, r.Latency.P50, r.Latency.P90,
				r.Latency.P99, r.Latency.Max, r.Unacked, r.Errors, r.ConnectsPerSec, r.ClientCPU,
				r.ServerCPU, r.ServerCPUPerMsgUs, r.LoadAvg)
		}
	}
	if len(idle) > 0 {
		if len(pub) > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintln(tw, "TARGET\tCONNS\tCONNECTED\tALIVE\tCONN/S\tCONNECT P50 ms\tP99 ms\tCLIENT CPU\tSERVER CPU ms/CONN\tRSS BEFORE MiB\tRSS AFTER MiB\tKiB/CONN\tERRORS\tLOAD")
		for _, r := range idle {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.3f\t%.1f\t%.1f\t%.1f\t%d\t%s\n",
				r.Target, r.Connections, r.Connected, r.Alive, r.ConnectsPerSec, r.ConnectLatency.P50,
				r.ConnectLatency.P99, r.ConnectClientCPU, r.ServerCPUPerConnectMs, float64(r.ServerRSSBefore)/(1<<20), float64(r.ServerRSSAfter)/(1<<20),
				r.RSSPerConnKB, r.Errors, r.LoadAvg)
		}
	}
	return tw.Flush()
}

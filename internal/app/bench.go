package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/roost-iot/roost/internal/bench"
	"github.com/roost-iot/roost/internal/client"
)

const benchUsage = `Usage: roost bench registry|telemetry [flags]

roost bench telemetry --help describes the MQTT telemetry benchmark.

Measures a running hub's identity registry over its REST API: creates --devices devices spread
over --clients concurrent clients (each with its own keep-alive connection), reads random ones
for --duration, then deletes them. Reports ops/s, latency percentiles and errors per phase.
--clients takes a list (1,4,16,64) to run once per count against the same hub.

Common flags: --connection-string, --data-dir, --server, --ca-file, --output table|json
`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stderr, benchUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "telemetry" {
		if len(args) > 1 && (args[1] == "help" || args[1] == "--help" || args[1] == "-h") {
			fmt.Fprint(stderr, benchTelemetryUsage)
			return 0
		}
		return runBenchTelemetry(ctx, args[1:], stdout, stderr)
	}
	if args[0] != "registry" {
		fmt.Fprintf(stderr, "roost bench: unknown benchmark %q\n\n%s", args[0], benchUsage)
		return 2
	}
	var cf clientFlags
	fs := newFlagSet("bench registry", stderr, "roost bench registry [--clients 16] [--devices 2000] [--duration 10s]")
	cf.register(fs)
	clients := fs.String("clients", "16", "concurrent HTTPS clients; a comma-separated list runs once per count")
	devices := fs.Int("devices", 2000, "devices to create (and delete) per run")
	duration := fs.Duration("duration", 10*time.Second, "how long the get phase runs")
	deleteMode := fs.String("delete", bench.DeleteBulk, "how devices are deleted: bulk (100 per request) or single")
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fs.Usage()
		return 2
	}
	counts, err := bench.ParseCounts(*clients)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "roost bench: --clients: %v\n", err)
		return 2
	case *devices <= 0:
		fmt.Fprintln(stderr, "roost bench: --devices must be positive")
		return 2
	case *duration <= 0:
		fmt.Fprintln(stderr, "roost bench: --duration must be positive")
		return 2
	case *deleteMode != bench.DeleteBulk && *deleteMode != bench.DeleteSingle:
		fmt.Fprintln(stderr, "roost bench: --delete must be bulk or single")
		return 2
	case cf.output != "table" && cf.output != "json":
		fmt.Fprintln(stderr, "roost bench: --output must be table or json")
		return 2
	}
	// Fail early on a bad connection string or unreachable data dir, before starting clients.
	if _, err := cf.client(); err != nil {
		return fail(stderr, "bench", err)
	}

	var results []bench.Result
	for _, n := range counts {
		res, err := bench.Registry(ctx, bench.RegistryConfig{
			NewClient:  func() (*client.Client, error) { return cf.client() },
			Clients:    n,
			Devices:    *devices,
			Duration:   *duration,
			DeleteMode: *deleteMode,
			Errors:     stderr,
			Progress:   stderr,
		})
		if err != nil {
			return fail(stderr, "bench", err)
		}
		results = append(results, res)
		if ctx.Err() != nil {
			break
		}
	}
	if cf.output == "json" {
		printJSON(stdout, results)
	} else if err := bench.WriteTable(stdout, results); err != nil {
		return fail(stderr, "bench", err)
	}
	errs := 0
	for _, r := range results {
		for _, p := range r.Phases {
			errs += p.Errors
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "roost bench: interrupted")
		return 1
	}
	if errs > 0 {
		fmt.Fprintf(stderr, "roost bench: %d operations failed (the first ones are printed above)\n", errs)
		return 1
	}
	return 0
}

// Package bench is Roost's load generator: it drives a running hub over its service REST API,
// as the Azure service SDKs would, and measures throughput and latency.
//
// [Registry] exercises the identity registry in three phases — create devices, read random
// devices for a fixed time, delete them — with a number of concurrent clients, each with its own
// keep-alive connection:
//
//	res, err := bench.Registry(ctx, bench.RegistryConfig{
//		NewClient: func() (*client.Client, error) { return client.New(cfg) },
//		Clients:   16,
//		Devices:   2000,
//		Duration:  10 * time.Second,
//	})
//	bench.WriteTable(os.Stdout, []bench.Result{res})
//
// The numbers describe one machine at one moment; they are for comparing builds and settings,
// not pass/fail tests. docs/BENCHMARKS.md has the commands and the measured results.
package bench

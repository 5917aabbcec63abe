// Package bench is Roost's load generator: it drives a running hub over its service REST API,
// as the Azure service SDKs would, or over MQTT, as devices would, and measures throughput and
// latency.
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
// [Telemetry] is the device side instead: it opens TLS connections as MQTT 3.1.1 devices with
// a lean client of its own (mqttclient.go) and publishes QoS 1 telemetry with a window of
// unacknowledged messages per connection, measuring msgs/s and PUBACK latency, or holds the
// connections idle and measures the connect rate and the server's memory per connection. It
// speaks to any broker, so Roost and another broker can be measured by the same generator:
//
//	res, err := bench.Telemetry(ctx, bench.TelemetryConfig{
//		Addr:       "127.0.0.1:8883",
//		TLS:        &tls.Config{ServerName: "localhost", RootCAs: pool},
//		Identities: ids, // one per connection: client id, user name, SAS token, topic
//		Duration:   10 * time.Second,
//	})
//	bench.WriteTelemetryTable(os.Stdout, []bench.TelemetryResult{res})
//
// The numbers describe one machine at one moment; they are for comparing builds and settings,
// not pass/fail tests. docs/BENCHMARKS.md has the commands and the measured results.
package bench

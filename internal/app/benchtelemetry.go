package app

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/bench"
	"github.com/roost-iot/roost/internal/sas"
)

const benchTelemetryUsage = `Usage: roost bench telemetry [flags]

Opens --devices TLS device connections and publishes --payload-byte QoS 1 telemetry on all of
them for --duration, at most --inflight unacknowledged per connection, as fast as the server
acknowledges or at a total --rate; reports msgs/s and PUBACK latency percentiles. With
--mode idle it opens --connections connections instead, holds them idle for --duration, and
reports the connect rate and the server's RSS per connection (--server-pid, else the hub's
admin /metrics).

--target roost (the default) registers the devices through the REST API (the usual client
flags find the hub), connects each with a SAS token signed with its own key and deletes the
devices afterwards. --target mqtt connects to any MQTT 3.1.1 broker at --mqtt-addr, trusting
--ca-file, with --username and --password when given, to compare with another broker.
`

func runBenchTelemetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cf clientFlags
	fs := newFlagSet("bench telemetry", stderr, "roost bench telemetry [--target roost|mqtt] [--mode throughput|idle] [--devices 100] [--duration 10s]")
	cf.register(fs)
	target := fs.String("target", "roost", "roost (devices created over REST, SAS tokens) or mqtt (a generic broker at --mqtt-addr)")
	mode := fs.String("mode", bench.ModeThroughput, "throughput (publish QoS 1) or idle (hold connections open)")
	mqttAddr := fs.String("mqtt-addr", "", "MQTT over TLS address, host:port (default: the local hub's MQTT listener)")
	serverName := fs.String("tls-server-name", "", "name to check the server certificate against (default: the hub's host name, or --mqtt-addr's host)")
	devices := fs.Int("devices", 100, "publishing connections (throughput mode), one device each")
	connections := fs.Int("connections", 1000, "connections to hold open (idle mode), one device each")
	payload := fs.Int("payload", 256, "telemetry payload in bytes")
	duration := fs.Duration("duration", 10*time.Second, "how long to publish (throughput) or hold the connections (idle)")
	rate := fs.Float64("rate", 0, "total messages per second over all connections; 0 is as fast as the server acknowledges")
	inflight := fs.Int("inflight", 64, "unacknowledged QoS 1 messages per connection")
	concurrency := fs.Int("connect-concurrency", 32, "connections being set up at once")
	keepAlive := fs.Duration("keep-alive", 300*time.Second, "MQTT keep-alive sent in CONNECT")
	username := fs.String("username", "", "with --target mqtt: user name for every connection")
	password := fs.String("password", "", "with --target mqtt: password for every connection")
	serverPID := fs.Int("server-pid", 0, "process id of the server, to read its RSS from /proc (idle mode)")
	label := fs.String("label", "", "name of the target in the report (default: --target)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 0 {
		fs.Usage()
		return 2
	}
	n := *devices
	if *mode == bench.ModeIdle {
		n = *connections
	}
	switch {
	case *target != "roost" && *target != "mqtt":
		fmt.Fprintln(stderr, "roost bench: --target must be roost or mqtt")
		return 2
	case *mode != bench.ModeThroughput && *mode != bench.ModeIdle:
		fmt.Fprintln(stderr, "roost bench: --mode must be throughput or idle")
		return 2
	case n <= 0:
		fmt.Fprintln(stderr, "roost bench: --devices and --connections must be positive")
		return 2
	case *payload < 0 || *duration <= 0 || *rate < 0 || *inflight <= 0 || *inflight > 65535 || *concurrency <= 0:
		fmt.Fprintln(stderr, "roost bench: --payload, --duration, --rate, --inflight (1 to 65535) and --connect-concurrency must be positive")
		return 2
	case *target == "mqtt" && *mqttAddr == "":
		fmt.Fprintln(stderr, "roost bench: --target mqtt needs --mqtt-addr")
		return 2
	case cf.output != "table" && cf.output != "json":
		fmt.Fprintln(stderr, "roost bench: --output must be table or json")
		return 2
	}
	if limit, err := bench.RaiseFileLimit(); err != nil {
		fmt.Fprintf(stderr, "roost bench: cannot raise the open-file limit: %v\n", err)
	} else if limit > 0 && uint64(n)+64 > limit {
		fmt.Fprintf(stderr, "roost bench: warning: %d connections but this process may open only %d files (raise the hard limit with ulimit -Hn)\n", n, limit)
	}

	cfg := bench.TelemetryConfig{
		Target: *target, Addr: *mqttAddr, Mode: *mode, Payload: *payload, Duration: *duration,
		Rate: *rate, Inflight: *inflight, KeepAlive: *keepAlive, ConnectConcurrency: *concurrency,
		Errors: stderr, Progress: stderr,
	}
	if *label != "" {
		cfg.Target = *label
	}
	if *serverPID > 0 {
		pid := *serverPID
		cfg.ServerRSS = func(context.Context) (int64, error) { return procRSS(pid) }
		cfg.ServerCPU = func(context.Context) (time.Duration, error) { return procCPU(pid) }
	}
	runID := randomRunID()

	if *target == "mqtt" {
		host, _, err := net.SplitHostPort(*mqttAddr)
		if err != nil {
			return fail(stderr, "bench", fmt.Errorf("--mqtt-addr: %w", err))
		}
		name := *serverName
		if name == "" {
			name = host
		}
		if cfg.TLS, err = benchTLS(cf.caFile, name); err != nil {
			return fail(stderr, "bench", err)
		}
		for i := range n {
			id := fmt.Sprintf("bench-%s-%06d", runID, i)
			cfg.Identities = append(cfg.Identities, bench.Identity{
				ClientID: id, Username: *username, Password: *password, Topic: "devices/" + id + "/messages/events/",
			})
		}
		return reportTelemetry(ctx, cfg, cf.output, stdout, stderr, nil)
	}

	c, err := cf.client()
	if err != nil {
		return fail(stderr, "bench", err)
	}
	host := c.HostName()
	lf, lerr := readLocal(cf.dataDir)
	local := lerr == nil && lf.HostName == host
	if cfg.Addr == "" {
		switch {
		case local && lf.MQTTAddr != "":
			cfg.Addr = dialable(lf.MQTTAddr)
		case local:
			return fail(stderr, "bench", errors.New("the local hub has no MQTT listener (started with --mqtt-addr \"\"?), or predates this command: restart it, or pass --mqtt-addr"))
		default:
			cfg.Addr = net.JoinHostPort(host, "8883")
		}
	}
	caFile := cf.caFile
	if caFile == "" && local {
		caFile = lf.CAFile
	}
	name := *serverName
	if name == "" {
		name = host
	}
	if cfg.TLS, err = benchTLS(caFile, name); err != nil {
		return fail(stderr, "bench", err)
	}
	if cfg.ServerRSS == nil && local && lf.AdminAddr != "" {
		admin := dialable(lf.AdminAddr)
		cfg.ServerRSS = func(ctx context.Context) (int64, error) {
			v, err := metricsValue(ctx, admin, "process_resident_memory_bytes")
			return int64(v), err
		}
		cfg.ServerCPU = func(ctx context.Context) (time.Duration, error) {
			v, err := metricsValue(ctx, admin, "process_cpu_seconds_total")
			return time.Duration(v * float64(time.Second)), err
		}
	}

	fmt.Fprintf(stderr, "bench: registering %d devices (run %s)\n", n, runID)
	devs, err := bench.ProvisionDevices(ctx, c, runID, n)
	cleanup := func() {
		if len(devs) == 0 {
			return
		}
		fmt.Fprintf(stderr, "bench: deleting %d devices\n", len(devs))
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := bench.DeleteDevices(dctx, c, devs); err != nil {
			fmt.Fprintf(stderr, "roost bench: deleting the devices: %v\n", err)
		}
	}
	if err != nil {
		cleanup()
		return fail(stderr, "bench", err)
	}
	expiry := time.Now().Add(24 * time.Hour)
	for _, d := range devs {
		tok, err := sas.Sign(sas.DeviceResource(host, d.ID, ""), d.Key, "", expiry)
		if err != nil {
			cleanup()
			return fail(stderr, "bench", err)
		}
		cfg.Identities = append(cfg.Identities, bench.DeviceIdentity(host, d, tok))
	}
	return reportTelemetry(ctx, cfg, cf.output, stdout, stderr, cleanup)
}

// reportTelemetry runs the benchmark, cleans up and prints the result.
func reportTelemetry(ctx context.Context, cfg bench.TelemetryConfig, output string, stdout, stderr io.Writer, cleanup func()) int {
	res, err := bench.Telemetry(ctx, cfg)
	if cleanup != nil {
		cleanup()
	}
	if err != nil {
		return fail(stderr, "bench", err)
	}
	if output == "json" {
		printJSON(stdout, res)
	} else if err := bench.WriteTelemetryTable(stdout, []bench.TelemetryResult{res}); err != nil {
		return fail(stderr, "bench", err)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "roost bench: interrupted")
		return 1
	case res.Errors > 0 || res.Connected < res.Connections:
		fmt.Fprintf(stderr, "roost bench: %d errors, %d of %d connections (the first errors are printed above)\n", res.Errors, res.Connected, res.Connections)
		return 1
	}
	return 0
}

// benchTLS is the generator's client TLS configuration: the system roots plus caFile, no session
// cache (every connection makes a full handshake), and the key exchanges devices offer today,
// X25519 and P-256. Go's default would put the post-quantum X25519MLKEM768 first, which costs
// both sides more than a device's handshake and which OpenSSL 3.0 brokers do not speak, so
// the comparison would not be like for like.
func benchTLS(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: serverName, MinVersion: tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
	}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// procRSS reads a process's resident memory from /proc/<pid>/status.
func procRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// procCPU reads a process's user plus system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const ticksPerSecond = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// metricsValue reads one unlabelled metric from a hub's admin /metrics.
func metricsValue(ctx context.Context, adminAddr, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", name, v, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("the hub's /metrics has no %s", name)
}

// randomRunID is a short random id that keeps one run's device ids apart from another's.
func randomRunID() string {
	return strconv.FormatInt(time.Now().UnixNano()%(36*36*36*36*36*36), 36)
}

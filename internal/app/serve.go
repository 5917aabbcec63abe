package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roost-iot/roost/internal/auth"
	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/c2d"
	"github.com/roost-iot/roost/internal/certs"
	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/jobs"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/mqtt"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/regjobs"
	"github.com/roost-iot/roost/internal/sas"
	"github.com/roost-iot/roost/internal/telemetry"
	"github.com/roost-iot/roost/internal/throttle"
	"github.com/roost-iot/roost/internal/twin"
	"github.com/roost-iot/roost/internal/upload"
)

// nodeID returns the configured node id, or the one kept in the data dir (made on first start),
// so a node keeps its name across restarts and can clear the connections it left behind.
func nodeID(cfg config.Config) (string, error) {
	if cfg.NodeID != "" {
		return cfg.NodeID, nil
	}
	path := filepath.Join(cfg.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var rb [6]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return "", err
	}
	id := "node-" + hex.EncodeToString(rb[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return id, nil
}

// Hub is a running Roost node: its engine, domain services and listeners.
type Hub struct {
	Config    config.Config
	Engine    *engine.Engine
	Registry  *registry.Registry
	Policies  *auth.Store
	Diag      *diag.Writer
	TLS       *certs.Material
	Metrics   *metrics.Metrics
	Telemetry *telemetry.Pipeline
	MQTT      *mqtt.Server
	Methods   *methods.Service
	Twins     *twin.Store
	C2D       *c2d.Service
	Uploads   *upload.Service
	Blobs     *blob.Local // the built-in blob store; nil with --blob-connection-string
	Jobs      *jobs.Service
	NodeID    string
	HTTPSAddr string // the bound address, useful with port 0
	MQTTAddr  string
	AdminAddr string
	// Throttle enforces the IoT Hub tier; nil with --sku unlimited.
	Throttle *throttle.Throttler
	// RegJobs runs import/export jobs (POST /jobs/create).
	RegJobs *regjobs.Service

	deviceLimits *throttle.DeviceLimits // per-device caps (--device-max-sends ...); nil: none

	trouble *troubleshooting // fault injection, metrics history, exports, alerts, events

	log     *slog.Logger
	servers []*http.Server
	done    chan struct{}
	errc    chan error
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Start opens the engine, the domain services and the listeners. The hub serves until ctx ends
// or Shutdown is called.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (*Hub, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	h := &Hub{Config: cfg, log: log, done: make(chan struct{}), errc: make(chan error, 4)}
	ok := false
	defer func() {
		if !ok {
			h.close()
		}
	}()
	var err error
	h.Engine, err = engine.Open(ctx, engine.Config{
		DataDir:    cfg.DataDir,
		NATSURLs:   cfg.NATSURLs,
		Replicas:   cfg.Replicas,
		SyncAlways: cfg.Sync == "always",
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	h.Policies, _, err = auth.Open(ctx, h.Engine, auth.Config{HostName: cfg.HostName})
	if err != nil {
		return nil, err
	}
	h.Metrics = metrics.New()
	if h.NodeID, err = nodeID(cfg); err != nil {
		return nil, err
	}
	// The registry closes a disabled or deleted device's connections through the MQTT server,
	// which starts later.
	revoke := func(dev, mod string, code errcode.Code, msg string) {
		if h.MQTT != nil {
			_ = h.MQTT.Revoke(dev, mod, code, msg)
		}
	}
	// A deleted identity's twin goes with it, whichever node deletes it.
	onDelete := func(dev, mod string) {
		if mod == "" {
			h.dropC2D(dev)
		}
		if h.Twins != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Twins.Delete(dctx, dev, mod); err != nil {
				log.Warn("could not delete the twin of a deleted identity", "device", dev, "module", mod, "err", err)
			}
		}
	}
	if h.Registry, err = registry.New(ctx, h.Engine, registry.Config{Revoke: revoke, OnDelete: onDelete, QueueDepth: h.queueDepth}); err != nil {
		return nil, err
	}
	if h.Twins, err = twin.Open(ctx, h.Engine, twin.Config{Registry: h.Registry}); err != nil {
		return nil, err
	}
	if h.Telemetry, err = telemetry.Open(ctx, h.Engine, telemetry.Config{
		Partitions: cfg.Partitions, Retention: cfg.TelemetryRetention, Logger: log,
	}); err != nil {
		return nil, err
	}
	if h.Diag, err = diag.NewWriter(ctx, h.Engine, diag.Config{
		ResourceID: diag.ResourceID("00000000-0000-0000-0000-000000000000", "ROOST", hubName(cfg.HostName)),
		Retention:  cfg.DiagRetention,
		MaxBytes:   cfg.DiagMaxBytes,
		Logger:     log,
	}); err != nil {
		return nil, err
	}
	if h.trouble, err = newTroubleshooting(ctx, h); err != nil {
		return nil, err
	}
	if err := h.openC2D(ctx, log); err != nil {
		return nil, err
	}
	if err := h.openThrottle(ctx, log); err != nil {
		return nil, err
	}
	h.TLS, err = certs.Load(certs.Options{
		Dir:       filepath.Join(cfg.DataDir, "tls"),
		Hostnames: append([]string{cfg.HostName}, cfg.TLSSANs...),
		CertFile:  cfg.TLSCert,
		KeyFile:   cfg.TLSKey,
	})
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}

	if h.MQTT, err = mqtt.New(ctx, mqtt.Config{
		HostName: cfg.HostName, Engine: h.Engine, Registry: h.Registry, Policies: h.Policies,
		Telemetry: h.Telemetry, Diag: h.Diag, Metrics: h.Metrics, Logger: log, NodeID: h.NodeID,
		Faults: h.trouble.faultInjector(), OnThrottled: h.trouble.throttled,
		Twins: h.Twins, C2D: h.C2D, Throttle: h.Throttle, DeviceLimits: h.deviceLimits,
	}); err != nil {
		return nil, err
	}
	if cfg.MQTTAddr != "" {
		mqttLn, err := listen(cfg.MQTTAddr, "mqtt-addr")
		if err != nil {
			return nil, err
		}
		h.MQTTAddr = mqttLn.Addr().String()
		go func() {
			if err := h.MQTT.Serve(tls.NewListener(mqttLn, h.TLS.Config)); err != nil {
				h.errc <- err
			}
		}()
	}

	if h.Methods, err = methods.New(methods.Config{Engine: h.Engine, Registry: h.Registry, Metrics: h.Metrics, Logger: log}); err != nil {
		return nil, err
	}
	if err := h.openUploads(ctx); err != nil {
		return nil, err
	}
	if err := h.openJobs(ctx); err != nil {
		return nil, err
	}
	if err := h.openRegJobs(ctx); err != nil {
		return nil, err
	}
	api := httpapi.New(httpapi.Config{Registry: h.Registry, Policies: h.Policies, Diag: h.Diag, Logger: log, Faults: h.trouble.faultInjector(), QuerySource: h.Twins.Scan,
		WebSocket: h.MQTT.WebSocketHandler(), Telemetry: h.Telemetry, Metrics: h.Metrics, Methods: h.Methods,
		Twins:   h.Twins,
		Uploads: h.Uploads, BlobStore: h.Blobs, C2D: h.C2D, RegJobs: h.RegJobs,
		Throttle: h.Throttle, OnTelemetryThrottled: h.trouble.throttled, DeviceLimits: h.deviceLimits,
		Jobs: h.Jobs, JobRows: h.jobRows()})
	httpsLn, err := listen(cfg.HTTPSAddr, "https-addr")
	if err != nil {
		return nil, err
	}
	h.HTTPSAddr = httpsLn.Addr().String()
	tlsCfg := h.TLS.Config.Clone()
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	h.serve(&http.Server{
		Handler:           api,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}, tls.NewListener(httpsLn, tlsCfg))

	if cfg.AdminAddr != "" {
		adminLn, err := listen(cfg.AdminAddr, "admin-addr")
		if err != nil {
			return nil, err
		}
		h.AdminAddr = adminLn.Addr().String()
		h.serve(&http.Server{Handler: h.adminHandler(), ReadHeaderTimeout: 10 * time.Second}, adminLn)
	}
	if err := h.writeLocal(); err != nil {
		return nil, err
	}
	h.trouble.start()
	ok = true
	return h, nil
}

// hubName is the first DNS label of the host name, upper-cased as IoT Hub writes it in ids.
func hubName(host string) string {
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			return host[:i]
		}
	}
	return host
}

// listen binds addr and turns a refused low port into advice.
func listen(addr, flagName string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	if errors.Is(err, syscall.EACCES) && port > 0 && port < 1024 {
		return nil, fmt.Errorf(`cannot listen on %s: ports below 1024 need privileges. Either
  - run roost as root, or
  - allow the binary to bind low ports: sudo setcap cap_net_bind_service=+ep $(command -v roost), or
  - lower the limit: sudo sysctl net.ipv4.ip_unprivileged_port_start=0, or
  - use another port with --%s (clients that dial fixed ports, like the Node SDKs on 443, then cannot reach it)`,
			addr, flagName)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("cannot listen on %s: the address is in use (is another roost running? change it with --%s)", addr, flagName)
	}
	return nil, fmt.Errorf("cannot listen on %s (--%s): %w", addr, flagName, err)
}

func (h *Hub) serve(srv *http.Server, ln net.Listener) {
	h.servers = append(h.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.errc <- err
		}
	}()
}

// Err reports a listener that failed while serving.
func (h *Hub) Err() <-chan error { return h.errc }

// Shutdown stops accepting requests, waits for those in flight until ctx ends, then flushes the
// diagnostic records and closes the engine.
func (h *Hub) Shutdown(ctx context.Context) error {
	var errs []error
	if h.Telemetry != nil {
		h.Telemetry.CloseReaders() // event streams never end by themselves
	}
	h.trouble.closeStreams() // nor do diagnostic tails
	if h.Methods != nil {
		h.Methods.Close() // calls waiting for a device to connect
	}
	if h.MQTT != nil {
		if err := h.MQTT.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range h.servers {
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = s.Close()
		}
	}
	h.close()
	return errors.Join(errs...)
}

func (h *Hub) close() {
	h.closeRegJobs()
	h.closeJobs()
	h.closeUploads()
	if h.Telemetry != nil {
		h.Telemetry.Close()
		h.Telemetry = nil
	}
	h.trouble.close()
	h.trouble = nil
	h.closeC2D()
	h.closeThrottle()
	if h.Diag != nil {
		h.Diag.Close()
		h.Diag = nil
	}
	if h.Engine != nil {
		_ = h.Engine.Close()
		h.Engine = nil
	}
}

// ConnectionString returns a service connection string for the named policy.
func (h *Hub) ConnectionString(ctx context.Context, policy string) (string, error) {
	p, ok, err := h.Policies.Policy(ctx, policy)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no shared access policy named %q", policy)
	}
	return sas.ConnectionString{HostName: h.Config.HostName, SharedAccessKeyName: p.KeyName, SharedAccessKey: p.PrimaryKey}.String(), nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	start := time.Now()
	cfg := config.Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: roost serve [flags]\n\nRuns the hub. Every flag can also be set as ROOST_<NAME> or in the --config YAML file.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg.RegisterFlags(fs)
	if err := config.Load(&cfg, fs, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "roost serve: %v\n", err)
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "roost serve: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)
	h, err := Start(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "roost serve: %v\n", err)
		return 1
	}
	cs, err := h.ConnectionString(ctx, "iothubowner")
	if err != nil {
		fmt.Fprintf(stderr, "roost serve: %v\n", err)
		_ = h.Shutdown(context.Background())
		return 1
	}
	engineDesc := "embedded NATS JetStream in " + filepath.Join(cfg.DataDir, "engine")
	if len(cfg.NATSURLs) > 0 {
		engineDesc = fmt.Sprintf("external NATS %v (replicas %d)", cfg.NATSURLs, cfg.Replicas)
	}
	fmt.Fprintf(stdout, "Roost is ready (%d ms)\n", time.Since(start).Milliseconds())
	fmt.Fprintf(stdout, "  hub          %s\n", cfg.HostName)
	fmt.Fprintf(stdout, "  https        %s  (REST, MQTT over WebSockets at /$iothub/websocket)\n", h.HTTPSAddr)
	if h.MQTTAddr != "" {
		fmt.Fprintf(stdout, "  mqtt         %s\n", h.MQTTAddr)
	}
	if h.AdminAddr != "" {
		fmt.Fprintf(stdout, "  admin        http://%s  (/healthz, /errors)\n", h.AdminAddr)
	}
	fmt.Fprintf(stdout, "  engine       %s\n", engineDesc)
	fmt.Fprintf(stdout, "  uploads      %s\n", h.uploadsDesc())
	if h.TLS.CAFile != "" {
		fmt.Fprintf(stdout, "  CA           %s  (Node: export NODE_EXTRA_CA_CERTS=%s)\n", h.TLS.CAFile, h.TLS.CAFile)
	}
	fmt.Fprintf(stdout, "  connection   %s\n", cs)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-h.Err():
		log.Error("listener failed", "err", err)
		_ = h.Shutdown(context.Background())
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}

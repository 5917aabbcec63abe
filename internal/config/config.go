// Package config is Roost's one configuration: defaults, an optional YAML file, ROOST_*
// environment variables and command-line flags, in that order of precedence (flags win), with a
// Validate that reports every problem at once and says where each bad value came from.
//
//	cfg := config.Default()
//	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
//	cfg.RegisterFlags(fs)
//	if err := config.Load(&cfg, fs, args, os.LookupEnv); err != nil { ... }
//
// Every setting has one name. The flag is --name, the environment variable ROOST_NAME with
// dashes as underscores, and the YAML key the same name as the flag (data-dir: ./roost-data).
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config holds every setting of `roost serve`.
type Config struct {
	// DataDir holds the embedded engine's files, the TLS material and the local credentials file.
	DataDir string
	// HostName is the hub's name: the HostName of connection strings, the resource of SAS tokens
	// and a name in the server certificate.
	HostName string
	// TLSSANs are extra names or addresses for the generated server certificate.
	TLSSANs []string
	// TLSCert and TLSKey are the operator's own certificate and key files (PEM). Both or neither.
	TLSCert, TLSKey string
	// HTTPSAddr is where the HTTPS listener binds (REST and WebSockets).
	HTTPSAddr string
	// MQTTAddr is where the MQTT-over-TLS listener binds. Empty disables it.
	MQTTAddr string
	// NodeID names this node among the nodes sharing an engine. Empty means the id kept in the
	// data dir (made on first start).
	NodeID string
	// AdminAddr is where the plain-HTTP admin listener binds (/healthz, /metrics, /errors).
	// Empty disables it.
	AdminAddr string
	// NATSURLs selects an external NATS cluster instead of the embedded engine.
	NATSURLs []string
	// Replicas is the replica count of streams and buckets on an external cluster.
	Replicas int
	// Sync is "interval" (the engine's default: acknowledged writes survive a crash of Roost, not a
	// power cut) or "always" (fsync every write, about 10x slower).
	Sync string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string
	// DiagRetention is how long diagnostic records are kept.
	DiagRetention time.Duration
	// DiagMaxBytes caps the stored diagnostic records.
	DiagMaxBytes int64
	// Partitions is the number of device-to-cloud telemetry partitions (1 to 32). It is fixed
	// when the hub's telemetry is first created; a hub refuses to start with another count.
	Partitions int
	// TelemetryRetention is how long device-to-cloud messages are kept.
	TelemetryRetention time.Duration
	// FileUploadSASTTL is how long a file upload's SAS URI, and the upload's place among the
	// device's 10 concurrent uploads, stays valid (IoT Hub's sasTtlAsIso8601).
	FileUploadSASTTL time.Duration
	// FileUploadNotifications queues a notification for the service side when a device reports
	// a successful upload (IoT Hub's enableFileUploadNotifications).
	FileUploadNotifications bool
	// FileNotificationTTL is how long a file upload notification waits to be read.
	FileNotificationTTL time.Duration
	// FileNotificationLock is how long a received file upload notification stays locked.
	FileNotificationLock time.Duration
	// FileNotificationMaxDelivery is how often a notification is handed out before it is dropped.
	FileNotificationMaxDelivery int
	// BlobConnectionString, when set, makes devices upload to that Azure Storage account (or
	// Azurite) instead of the built-in blob store. It holds the account key: keep it secret.
	BlobConnectionString string
	// BlobContainer is the blob container uploads go to.
	BlobContainer string
	// BlobHost is the host[:port] devices are told to upload to when the built-in store is used.
	// Empty means HostName.
	BlobHost string

	// Trouble holds the troubleshooting settings (admin token, exports, alerts, faults).
	Trouble Troubleshooting

	// C2D holds the cloud-to-device settings (time to live, delivery count, feedback).
	C2D C2DSettings

	// Throttle holds the IoT Hub tier and traffic shaping settings (--sku, --units).
	Throttle ThrottleSettings

	// Jobs holds the jobs v2 settings (--jobs-max-active, --jobs-retention).
	Jobs JobSettings

	sources map[string]string // setting name -> where its value came from
}

// Default returns the configuration a newcomer gets with no flags.
func Default() Config {
	return Config{
		DataDir:       "./roost-data",
		HostName:      "localhost",
		HTTPSAddr:     ":443",
		MQTTAddr:      ":8883",
		AdminAddr:     "127.0.0.1:8080",
		Replicas:      1,
		Sync:          "interval",
		LogLevel:      "info",
		LogFormat:     "text",
		DiagRetention: 7 * 24 * time.Hour,
		DiagMaxBytes:  1 << 30,

		Partitions:         4,
		TelemetryRetention: 24 * time.Hour,
		Trouble:            defaultTroubleshooting(),
		C2D:                defaultC2D(),
		Throttle:           defaultThrottle(),
		Jobs:               defaultJobs(),

		FileUploadSASTTL:            time.Hour,
		FileUploadNotifications:     true,
		FileNotificationTTL:         time.Hour,
		FileNotificationLock:        time.Minute,
		FileNotificationMaxDelivery: 100,
		BlobContainer:               "fileupload",
	}
}

// setting binds one name to a field.
type setting struct {
	name, usage string
	set         func(c *Config, v string) error
	get         func(c *Config) string
}

func settings() []setting {
	str := func(f func(*Config) *string) (func(*Config, string) error, func(*Config) string) {
		return func(c *Config, v string) error { *f(c) = v; return nil }, func(c *Config) string { return *f(c) }
	}
	list := func(f func(*Config) *[]string) (func(*Config, string) error, func(*Config) string) {
		return func(c *Config, v string) error {
				*f(c) = nil
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						*f(c) = append(*f(c), s)
					}
				}
				return nil
			}, func(c *Config) string {
				return strings.Join(*f(c), ",")
			}
	}
	mk := func(name, usage string, set func(*Config, string) error, get func(*Config) string) setting {
		return setting{name: name, usage: usage, set: set, get: get}
	}
	var out []setting
	add := func(s setting) { out = append(out, s) }
	s, g := str(func(c *Config) *string { return &c.DataDir })
	add(mk("data-dir", "directory for the engine's files, TLS material and local credentials", s, g))
	s, g = str(func(c *Config) *string { return &c.HostName })
	add(mk("hostname", "the hub's host name (connection strings, SAS resources, certificate)", s, g))
	s, g = list(func(c *Config) *[]string { return &c.TLSSANs })
	add(mk("tls-san", "extra comma-separated names or IPs for the generated server certificate", s, g))
	s, g = str(func(c *Config) *string { return &c.TLSCert })
	add(mk("tls-cert", "PEM certificate file to use instead of the generated one", s, g))
	s, g = str(func(c *Config) *string { return &c.TLSKey })
	add(mk("tls-key", "PEM key file for --tls-cert", s, g))
	s, g = str(func(c *Config) *string { return &c.HTTPSAddr })
	add(mk("https-addr", "host:port of the HTTPS listener (REST, WebSockets)", s, g))
	s, g = str(func(c *Config) *string { return &c.MQTTAddr })
	add(mk("mqtt-addr", "host:port of the MQTT-over-TLS listener; empty disables it", s, g))
	s, g = str(func(c *Config) *string { return &c.NodeID })
	add(mk("node-id", "this node's name among nodes sharing a NATS cluster (default: kept in the data dir)", s, g))
	s, g = str(func(c *Config) *string { return &c.AdminAddr })
	add(mk("admin-addr", "host:port of the plain-HTTP admin listener; empty disables it", s, g))
	s, g = list(func(c *Config) *[]string { return &c.NATSURLs })
	add(mk("nats-url", "comma-separated URLs of an external NATS cluster (instead of the embedded engine)", s, g))
	add(mk("replicas", "replica count of streams and buckets on an external cluster",
		func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			c.Replicas = n
			return err
		}, func(c *Config) string { return strconv.Itoa(c.Replicas) }))
	s, g = str(func(c *Config) *string { return &c.Sync })
	add(mk("sync", "engine durability: interval (default) or always (fsync every write)", s, g))
	s, g = str(func(c *Config) *string { return &c.LogLevel })
	add(mk("log-level", "debug, info, warn or error", s, g))
	s, g = str(func(c *Config) *string { return &c.LogFormat })
	add(mk("log-format", "text or json", s, g))
	add(mk("diag-retention", "how long diagnostic records are kept (e.g. 168h)",
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.DiagRetention = d
			return err
		}, func(c *Config) string { return c.DiagRetention.String() }))
	add(mk("diag-max-bytes", "size cap of stored diagnostic records in bytes",
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			c.DiagMaxBytes = n
			return err
		}, func(c *Config) string { return strconv.FormatInt(c.DiagMaxBytes, 10) }))
	add(mk("partitions", "device-to-cloud telemetry partitions, 1 to 32 (fixed when the hub is created)",
		func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			c.Partitions = n
			return err
		}, func(c *Config) string { return strconv.Itoa(c.Partitions) }))
	add(mk("telemetry-retention", "how long device-to-cloud messages are kept (e.g. 24h)",
		func(c *Config, v string) error {
			d, err := time.ParseDuration(v)
			c.TelemetryRetention = d
			return err
		}, func(c *Config) string { return c.TelemetryRetention.String() }))
	out = append(out, uploadSettings()...)
	out = append(out, troubleshootingSettings()...)
	out = append(out, c2dSettings()...)
	out = append(out, throttleSettings()...)
	out = append(out, jobSettings()...)
	return out
}

// EnvName returns the environment variable for a setting: ROOST_ and the name upper-cased with
// dashes as underscores.
func EnvName(name string) string {
	return "ROOST_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagValue adapts a setting to flag.Value, applying values to the config at parse time.
type flagValue struct {
	c *Config
	s setting
}

func (f flagValue) String() string {
	if f.c == nil {
		return ""
	}
	return f.s.get(f.c)
}

func (f flagValue) Set(v string) error { return f.s.set(f.c, v) }

// RegisterFlags adds one flag per setting, plus --config, to fs. Flags are applied by [Load].
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.String("config", "", "optional YAML configuration file (keys are the flag names)")
	for _, s := range settings() {
		fs.Var(flagValue{c: &Config{}, s: s}, s.name, s.usage)
	}
}

// Load applies, in order, the YAML file named by --config (or ROOST_CONFIG), the ROOST_*
// environment variables and the flags in args. It parses args with fs, which must have been
// set up by [Config.RegisterFlags], and records where each value came from for [Config.Validate].
func Load(c *Config, fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.sources = map[string]string{}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })

	byName := map[string]setting{}
	for _, s := range settings() {
		byName[s.name] = s
	}
	file := given["config"]
	if file == "" {
		file, _ = lookupEnv(EnvName("config"))
	}
	var errs []error
	if file != "" {
		if err := c.loadFile(file, byName); err != nil {
			return err
		}
	}
	for _, s := range settings() {
		if v, ok := lookupEnv(EnvName(s.name)); ok {
			if err := s.set(c, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %v", EnvName(s.name), v, err))
			}
			c.sources[s.name] = "environment variable " + EnvName(s.name)
		}
	}
	for name, v := range given {
		s, ok := byName[name]
		if !ok {
			continue
		}
		if err := s.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("--%s=%q: %v", name, v, err))
		}
		c.sources[name] = "flag --" + name
	}
	return errors.Join(errs...)
}

func (c *Config) loadFile(path string, byName map[string]setting) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: the top level must be a mapping of setting: value", path, root.Line)
	}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		s, ok := byName[k.Value]
		if !ok {
			errs = append(errs, fmt.Errorf("%s:%d: unknown setting %q", path, k.Line, k.Value))
			continue
		}
		var val string
		switch v.Kind {
		case yaml.ScalarNode:
			val = v.Value
		case yaml.SequenceNode:
			parts := make([]string, 0, len(v.Content))
			for _, item := range v.Content {
				parts = append(parts, item.Value)
			}
			val = strings.Join(parts, ",")
		default:
			errs = append(errs, fmt.Errorf("%s:%d: %s must be a value or a list", path, v.Line, k.Value))
			continue
		}
		if err := s.set(c, val); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %v", path, v.Line, k.Value, err))
		}
		c.sources[k.Value] = fmt.Sprintf("%s:%d", path, v.Line)
	}
	return errors.Join(errs...)
}

// source says where a setting's value came from.
func (c *Config) source(name string) string {
	if s, ok := c.sources[name]; ok {
		return s
	}
	return "default"
}

// Validate reports every invalid setting, each with where its value came from.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (from %s): %s", name, c.source(name), fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data-dir", "must not be empty (it holds the TLS material and local credentials)")
	}
	if !validHostName(c.HostName) {
		bad("hostname", "%q is not a valid DNS name (letters, digits, '-' and '.', no port)", c.HostName)
	}
	for _, s := range c.TLSSANs {
		if net.ParseIP(s) == nil && !validHostName(s) {
			bad("tls-san", "%q is neither a DNS name nor an IP address", s)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "--tls-cert and --tls-key must be given together")
	}
	for _, a := range []struct{ name, addr string }{{"https-addr", c.HTTPSAddr}, {"mqtt-addr", c.MQTTAddr}, {"admin-addr", c.AdminAddr}} {
		if a.addr == "" && a.name != "https-addr" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			bad(a.name, "%q is not host:port: %v", a.addr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(a.name, "port %q is not a number from 0 to 65535", port)
		}
	}
	for _, u := range c.NATSURLs {
		if !strings.Contains(u, "://") {
			bad("nats-url", "%q is not a URL such as nats://host:4222", u)
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("replicas", "%d is not between 1 and 5", c.Replicas)
	}
	if c.Replicas > 1 && len(c.NATSURLs) == 0 {
		bad("replicas", "more than 1 replica needs an external NATS cluster (--nats-url)")
	}
	switch c.Sync {
	case "interval", "always":
	default:
		bad("sync", "%q is not interval or always", c.Sync)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "%q is not text or json", c.LogFormat)
	}
	if c.DiagRetention < time.Minute {
		bad("diag-retention", "%s is shorter than a minute", c.DiagRetention)
	}
	if c.DiagMaxBytes < 1<<20 {
		bad("diag-max-bytes", "%d is smaller than 1 MiB", c.DiagMaxBytes)
	}
	if c.Partitions < 1 || c.Partitions > 32 {
		bad("partitions", "%d is not between 1 and 32", c.Partitions)
	}
	if c.TelemetryRetention < time.Minute || c.TelemetryRetention > 365*24*time.Hour {
		bad("telemetry-retention", "%s is not between 1m and 8760h (a year)", c.TelemetryRetention)
	}
	c.validateUploads(bad)
	c.validateTroubleshooting(bad)
	c.validateC2D(bad)
	c.validateThrottle(bad)
	c.validateJobs(bad)
	return errors.Join(errs...)
}

// validHostName accepts DNS names made of labels of letters, digits and '-'.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

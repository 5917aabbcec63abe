package config

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// Troubleshooting holds the settings of the troubleshooting surface: admin access, diagnostic
// exports, metrics history, alert rules and fault injection.
type Troubleshooting struct {
	// AdminToken, when set, is a bearer token the admin listener accepts besides service SAS
	// tokens. It is a secret.
	AdminToken string
	// DiagExports are diagnostic settings: DEST[,format=records|lines][,categories=A+B], DEST
	// being stdout, a file path or an http(s) URL.
	DiagExports []string
	// MetricsRetention is how long the one-minute metrics history (AzureMetrics) is kept.
	MetricsRetention time.Duration
	// QueryTimeout bounds one KQL query.
	QueryTimeout time.Duration
	// AlertRules is a YAML or JSON file of alert rules loaded at start.
	AlertRules string
	// FaultInjection enables the fault injection API (faults only ever act when added).
	FaultInjection bool
}

func defaultTroubleshooting() Troubleshooting {
	return Troubleshooting{MetricsRetention: 30 * 24 * time.Hour, QueryTimeout: time.Minute, FaultInjection: true}
}

// troubleshootingSettings are the settings of the troubleshooting surface.
func troubleshootingSettings() []setting {
	dur := func(name, usage string, f func(*Config) *time.Duration) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				*f(c) = d
				return err
			},
			get: func(c *Config) string { return f(c).String() }}
	}
	return []setting{
		{name: "admin-token", usage: "bearer token the admin listener accepts besides service SAS tokens (secret)",
			set: func(c *Config, v string) error { c.Trouble.AdminToken = v; return nil },
			get: func(c *Config) string { return redact(c.Trouble.AdminToken) }},
		{name: "diag-export", usage: "diagnostic settings, comma-separated: DEST[;format=records|lines][;categories=A+B], DEST being stdout, a file path or an http(s) URL",
			set: func(c *Config, v string) error {
				c.Trouble.DiagExports = nil
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						c.Trouble.DiagExports = append(c.Trouble.DiagExports, s)
					}
				}
				return nil
			},
			get: func(c *Config) string { return strings.Join(c.Trouble.DiagExports, ",") }},
		dur("metrics-retention", "how long the one-minute metrics history (AzureMetrics) is kept",
			func(c *Config) *time.Duration { return &c.Trouble.MetricsRetention }),
		dur("query-timeout", "longest a KQL query may run",
			func(c *Config) *time.Duration { return &c.Trouble.QueryTimeout }),
		{name: "alert-rules", usage: "YAML or JSON file of alert rules to load at start",
			set: func(c *Config, v string) error { c.Trouble.AlertRules = v; return nil },
			get: func(c *Config) string { return c.Trouble.AlertRules }},
		{name: "fault-injection", usage: "serve the fault injection API (true or false)",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				c.Trouble.FaultInjection = b
				return err
			},
			get: func(c *Config) string { return strconv.FormatBool(c.Trouble.FaultInjection) }},
	}
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

func (c *Config) validateTroubleshooting(bad func(name, format string, args ...any)) {
	t := c.Trouble
	for _, e := range t.DiagExports {
		dest, _, _ := strings.Cut(e, ";")
		if dest == "" {
			bad("diag-export", "%q has no destination", e)
		}
	}
	if t.MetricsRetention < time.Hour || t.MetricsRetention > 400*24*time.Hour {
		bad("metrics-retention", "%s is not between 1h and 9600h", t.MetricsRetention)
	}
	if t.QueryTimeout < time.Second || t.QueryTimeout > time.Hour {
		bad("query-timeout", "%s is not between 1s and 1h", t.QueryTimeout)
	}
	if t.AlertRules != "" {
		if _, err := os.Stat(t.AlertRules); err != nil {
			bad("alert-rules", "%v", err)
		}
	}
}

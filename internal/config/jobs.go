package config

import (
	"strconv"
	"time"
)

// JobSettings configure jobs v2 (scheduled twin updates and device methods).
type JobSettings struct {
	// MaxActive caps the jobs active at once. Zero means the tier's limit (1 on F1 and S1, 5 on
	// S2, 10 on S3; 1000 on the unlimited hub).
	MaxActive int
	// Retention is how long an ended job and its device rows are kept (IoT Hub: 30 days).
	Retention time.Duration
}

func defaultJobs() JobSettings { return JobSettings{Retention: 30 * 24 * time.Hour} }

// jobSettings are the jobs v2 settings.
func jobSettings() []setting {
	return []setting{
		{name: "jobs-max-active", usage: "most jobs (scheduled twin updates and device methods) active at once; 0: the tier's limit (F1/S1 1, S2 5, S3 10, unlimited 1000)",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				c.Jobs.MaxActive = n
				return err
			},
			get: func(c *Config) string { return strconv.Itoa(c.Jobs.MaxActive) }},
		{name: "jobs-retention", usage: "how long ended jobs and their per-device results are kept (IoT Hub: 720h, 30 days)",
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				c.Jobs.Retention = d
				return err
			},
			get: func(c *Config) string { return c.Jobs.Retention.String() }},
	}
}

func (c *Config) validateJobs(bad func(name, format string, args ...any)) {
	if c.Jobs.MaxActive < 0 || c.Jobs.MaxActive > 1000 {
		bad("jobs-max-active", "%d is not between 0 and 1000", c.Jobs.MaxActive)
	}
	if c.Jobs.Retention < time.Minute {
		bad("jobs-retention", "%s is shorter than a minute", c.Jobs.Retention)
	}
}

package config

import (
	"strconv"
	"strings"
	"time"
)

// ThrottleSettings choose the IoT Hub tier the hub enforces (quotas and throttles) and shape
// its traffic.
type ThrottleSettings struct {
	// SKU is F1, B1, B2, B3, S1, S2, S3 or unlimited (no throttles, no quota: the default).
	SKU string
	// Units is the number of units of the tier: 1 on F1, 1 to 200 on B1/B2/S1/S2, 1 to 10 on
	// B3/S3.
	Units int
	// Burst is how long an operation class may run over its rate before operations queue.
	Burst time.Duration
	// Backlog is the longest an operation waits in the queue before it is refused with 429001.
	Backlog time.Duration
	// DeviceMaxSends caps each device's telemetry messages per second (beyond IoT Hub). Zero
	// means no cap.
	DeviceMaxSends float64
	// DeviceMaxBytes caps each device's telemetry payload bytes per second. Zero means no cap.
	DeviceMaxBytes float64
	// DeviceGroups is a JSON array of caps for groups of devices chosen by a twin condition:
	// [{"condition":"tags.fleet = 'sensors'","sends":50,"bytes":65536,"deviceSends":5,
	// "deviceBytes":8192}]. sends and bytes cap the group's devices all together (across
	// nodes); deviceSends and deviceBytes cap each of them, in place of DeviceMaxSends and
	// DeviceMaxBytes. The first match wins.
	DeviceGroups string
}

func defaultThrottle() ThrottleSettings {
	return ThrottleSettings{SKU: "unlimited", Units: 1, Burst: time.Minute, Backlog: 10 * time.Second}
}

// throttleSettings are the tier and traffic shaping settings.
func throttleSettings() []setting {
	dur := func(name, usage string, f func(*Config) *time.Duration) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				*f(c) = d
				return err
			},
			get: func(c *Config) string { return f(c).String() }}
	}
	num := func(name, usage string, f func(*Config) *float64) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				n, err := strconv.ParseFloat(v, 64)
				*f(c) = n
				return err
			},
			get: func(c *Config) string { return strconv.FormatFloat(*f(c), 'f', -1, 64) }}
	}
	return []setting{
		{name: "sku", usage: "IoT Hub tier to enforce: F1, B1, B2, B3, S1, S2, S3, or unlimited (no throttles or quota)",
			set: func(c *Config, v string) error { c.Throttle.SKU = v; return nil },
			get: func(c *Config) string { return c.Throttle.SKU }},
		{name: "units", usage: "number of units of the tier (F1: 1; B1, B2, S1, S2: 1 to 200; B3, S3: 1 to 10)",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				c.Throttle.Units = n
				return err
			},
			get: func(c *Config) string { return strconv.Itoa(c.Throttle.Units) }},
		num("device-max-sends", "cap on each device's telemetry messages per second, shaped like the hub's throttles (0: none; beyond IoT Hub)",
			func(c *Config) *float64 { return &c.Throttle.DeviceMaxSends }),
		num("device-max-bytes", "cap on each device's telemetry payload bytes per second (0: none; beyond IoT Hub)",
			func(c *Config) *float64 { return &c.Throttle.DeviceMaxBytes }),
		{name: "device-group-limits", usage: `telemetry caps for groups of devices chosen by a twin condition, JSON: [{"condition":"tags.fleet = 'x'","sends":50,"bytes":65536,"deviceSends":5,"deviceBytes":8192}]; sends/bytes per second cap the whole group together, deviceSends/deviceBytes each of its devices (instead of --device-max-*); first match wins`,
			set: func(c *Config, v string) error { c.Throttle.DeviceGroups = v; return nil },
			get: func(c *Config) string { return c.Throttle.DeviceGroups }},
		dur("throttle-burst", "how long an operation class may run over its rate before operations queue (traffic shaping), 1s to 10m",
			func(c *Config) *time.Duration { return &c.Throttle.Burst }),
		dur("throttle-backlog", "longest an operation waits in the throttle queue before 429001 ThrottlingException, 100ms to 5m",
			func(c *Config) *time.Duration { return &c.Throttle.Backlog }),
	}
}

func (c *Config) validateThrottle(bad func(name, format string, args ...any)) {
	t := c.Throttle
	maxUnits := 0
	switch strings.ToUpper(t.SKU) {
	case "UNLIMITED":
	case "F1":
		maxUnits = 1
	case "B1", "B2", "S1", "S2":
		maxUnits = 200
	case "B3", "S3":
		maxUnits = 10
	default:
		bad("sku", "%q is not F1, B1, B2, B3, S1, S2, S3 or unlimited", t.SKU)
	}
	if maxUnits > 0 && (t.Units < 1 || t.Units > maxUnits) {
		bad("units", "%d: the %s tier allows 1 to %d units", t.Units, strings.ToUpper(t.SKU), maxUnits)
	}
	if t.Burst < time.Second || t.Burst > 10*time.Minute {
		bad("throttle-burst", "%s is not between 1s and 10m", t.Burst)
	}
	if t.DeviceMaxSends < 0 {
		bad("device-max-sends", "%v is negative", t.DeviceMaxSends)
	}
	if t.DeviceMaxBytes < 0 {
		bad("device-max-bytes", "%v is negative", t.DeviceMaxBytes)
	}
	if t.Backlog < 100*time.Millisecond || t.Backlog > 5*time.Minute {
		bad("throttle-backlog", "%s is not between 100ms and 5m", t.Backlog)
	}
}

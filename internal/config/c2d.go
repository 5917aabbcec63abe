package config

import (
	"strconv"
	"time"
)

// C2DSettings are the hub's cloud-to-device settings, with IoT Hub's names, defaults and ranges
// (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d#cloud-to-device-configuration-options).
type C2DSettings struct {
	// DefaultTTL is the time to live of a message sent without its own expiry
	// (defaultTtlAsIso8601): 1 minute to 2 days.
	DefaultTTL time.Duration
	// MaxDeliveryCount is how often a message is delivered before it is dead-lettered
	// (maxDeliveryCount): 1 to 100.
	MaxDeliveryCount int
	// FeedbackTTL is how long feedback waits to be read (feedback.ttlAsIso8601): 1 minute to
	// 2 days.
	FeedbackTTL time.Duration
	// FeedbackLock is how long a read feedback batch stays locked
	// (feedback.lockDurationAsIso8601): 5 to 300 seconds.
	FeedbackLock time.Duration
	// FeedbackMaxDeliveryCount is how often a feedback batch is handed out before it is dropped
	// (feedback.maxDeliveryCount): 1 to 100.
	FeedbackMaxDeliveryCount int
}

func defaultC2D() C2DSettings {
	return C2DSettings{
		DefaultTTL:               time.Hour,
		MaxDeliveryCount:         10,
		FeedbackTTL:              time.Hour,
		FeedbackLock:             time.Minute,
		FeedbackMaxDeliveryCount: 10,
	}
}

// c2dSettings are the cloud-to-device settings.
func c2dSettings() []setting {
	dur := func(name, usage string, f func(*Config) *time.Duration) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				*f(c) = d
				return err
			},
			get: func(c *Config) string { return f(c).String() }}
	}
	num := func(name, usage string, f func(*Config) *int) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				*f(c) = n
				return err
			},
			get: func(c *Config) string { return strconv.Itoa(*f(c)) }}
	}
	return []setting{
		dur("c2d-default-ttl", "time to live of a cloud-to-device message sent without its own expiry, 1m to 48h",
			func(c *Config) *time.Duration { return &c.C2D.DefaultTTL }),
		num("c2d-max-delivery-count", "how often a cloud-to-device message is delivered before it is dead-lettered, 1 to 100",
			func(c *Config) *int { return &c.C2D.MaxDeliveryCount }),
		dur("c2d-feedback-ttl", "how long cloud-to-device feedback waits to be read, 1m to 48h",
			func(c *Config) *time.Duration { return &c.C2D.FeedbackTTL }),
		dur("c2d-feedback-lock", "how long a read batch of cloud-to-device feedback stays locked, 5s to 300s",
			func(c *Config) *time.Duration { return &c.C2D.FeedbackLock }),
		num("c2d-feedback-max-delivery-count", "how often a feedback batch is handed out before it is dropped, 1 to 100",
			func(c *Config) *int { return &c.C2D.FeedbackMaxDeliveryCount }),
	}
}

func (c *Config) validateC2D(bad func(name, format string, args ...any)) {
	s := c.C2D
	if s.DefaultTTL < time.Minute || s.DefaultTTL > 48*time.Hour {
		bad("c2d-default-ttl", "%s is not between 1m and 48h", s.DefaultTTL)
	}
	if s.MaxDeliveryCount < 1 || s.MaxDeliveryCount > 100 {
		bad("c2d-max-delivery-count", "%d is not between 1 and 100", s.MaxDeliveryCount)
	}
	if s.FeedbackTTL < time.Minute || s.FeedbackTTL > 48*time.Hour {
		bad("c2d-feedback-ttl", "%s is not between 1m and 48h", s.FeedbackTTL)
	}
	if s.FeedbackLock < 5*time.Second || s.FeedbackLock > 300*time.Second {
		bad("c2d-feedback-lock", "%s is not between 5s and 300s", s.FeedbackLock)
	}
	if s.FeedbackMaxDeliveryCount < 1 || s.FeedbackMaxDeliveryCount > 100 {
		bad("c2d-feedback-max-delivery-count", "%d is not between 1 and 100", s.FeedbackMaxDeliveryCount)
	}
}

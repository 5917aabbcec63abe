package config

import (
	"strings"
	"testing"
	"time"
)

func TestConfigTelemetrySettings(t *testing.T) {
	c, err := load(t, []string{"--partitions", "8"}, map[string]string{"ROOST_TELEMETRY_RETENTION": "72h"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Partitions != 8 || c.TelemetryRetention != 72*time.Hour || c.Validate() != nil {
		t.Fatalf("got partitions %d retention %s (%v)", c.Partitions, c.TelemetryRetention, c.Validate())
	}
	if d := Default(); d.Partitions != 4 || d.TelemetryRetention != 24*time.Hour {
		t.Fatalf("defaults: %d, %s", d.Partitions, d.TelemetryRetention)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--partitions", "0"}, "partitions (from flag --partitions): 0 is not between 1 and 32"},
		{[]string{"--partitions", "33"}, "33 is not between 1 and 32"},
		{[]string{"--telemetry-retention", "30s"}, "telemetry-retention (from flag --telemetry-retention)"},
		{[]string{"--telemetry-retention", "9000h"}, "not between 1m and 8760h"},
	} {
		c, err := load(t, tt.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: Validate() = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
	if _, err := load(t, []string{"--partitions", "four"}, nil); err == nil {
		t.Fatal("--partitions four parsed")
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestConfigThrottleSettings(t *testing.T) {
	d := Default().Throttle
	if d.SKU != "unlimited" || d.Units != 1 || d.Burst != time.Minute || d.Backlog != 10*time.Second || d.DeviceMaxSends != 0 {
		t.Fatalf("defaults: %+v", d)
	}
	c, err := load(t, []string{"--sku", "S2", "--units", "3", "--throttle-burst", "30s", "--device-max-sends", "2.5"},
		map[string]string{"ROOST_THROTTLE_BACKLOG": "2s", "ROOST_DEVICE_MAX_BYTES": "4096"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.Throttle.SKU != "S2" || c.Throttle.Units != 3 || c.Throttle.Burst != 30*time.Second ||
		c.Throttle.Backlog != 2*time.Second || c.Throttle.DeviceMaxSends != 2.5 || c.Throttle.DeviceMaxBytes != 4096 {
		t.Fatalf("%+v %v", c.Throttle, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--sku", "S4"}, `sku (from flag --sku): "S4" is not F1, B1, B2, B3, S1, S2, S3 or unlimited`},
		{[]string{"--sku", "F1", "--units", "2"}, "units (from flag --units): 2: the F1 tier allows 1 to 1 units"},
		{[]string{"--sku", "s3", "--units", "11"}, "the S3 tier allows 1 to 10 units"},
		{[]string{"--sku", "B1", "--units", "0"}, "the B1 tier allows 1 to 200 units"},
		{[]string{"--throttle-burst", "0s"}, "throttle-burst"},
		{[]string{"--throttle-backlog", "6m"}, "throttle-backlog"},
		{[]string{"--device-max-sends", "-1"}, "device-max-sends"},
	} {
		c, err := load(t, tt.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestConfigC2DSettings(t *testing.T) {
	d := Default().C2D
	if d.DefaultTTL != time.Hour || d.MaxDeliveryCount != 10 || d.FeedbackTTL != time.Hour || d.FeedbackLock != time.Minute || d.FeedbackMaxDeliveryCount != 10 {
		t.Fatalf("defaults are not IoT Hub's: %+v", d)
	}
	c, err := load(t, []string{"--c2d-default-ttl", "48h", "--c2d-max-delivery-count", "100"},
		map[string]string{"ROOST_C2D_FEEDBACK_LOCK": "5s", "ROOST_C2D_FEEDBACK_TTL": "1m", "ROOST_C2D_FEEDBACK_MAX_DELIVERY_COUNT": "1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.C2D.DefaultTTL != 48*time.Hour || c.C2D.MaxDeliveryCount != 100 || c.C2D.FeedbackLock != 5*time.Second ||
		c.C2D.FeedbackTTL != time.Minute || c.C2D.FeedbackMaxDeliveryCount != 1 {
		t.Fatalf("%+v %v", c.C2D, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--c2d-default-ttl", "59s"}, "c2d-default-ttl (from flag --c2d-default-ttl): 59s is not between 1m and 48h"},
		{[]string{"--c2d-default-ttl", "49h"}, "not between 1m and 48h"},
		{[]string{"--c2d-max-delivery-count", "0"}, "c2d-max-delivery-count (from flag --c2d-max-delivery-count): 0 is not between 1 and 100"},
		{[]string{"--c2d-max-delivery-count", "101"}, "101 is not between 1 and 100"},
		{[]string{"--c2d-feedback-ttl", "72h"}, "c2d-feedback-ttl"},
		{[]string{"--c2d-feedback-lock", "4s"}, "c2d-feedback-lock (from flag --c2d-feedback-lock): 4s is not between 5s and 300s"},
		{[]string{"--c2d-feedback-lock", "6m"}, "not between 5s and 300s"},
		{[]string{"--c2d-feedback-max-delivery-count", "101"}, "c2d-feedback-max-delivery-count"},
	} {
		c, err := load(t, tt.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: Validate() = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
	if _, err := load(t, []string{"--c2d-max-delivery-count", "ten"}, nil); err == nil {
		t.Fatal("--c2d-max-delivery-count ten parsed")
	}
}

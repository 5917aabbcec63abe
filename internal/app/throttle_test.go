package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/throttle"
)

func TestServeEnforcesTheTier(t *testing.T) {
	t.Parallel()
	plainDir := t.TempDir()
	plain := startTestHub(t, plainDir)
	defer plain.Shutdown(context.Background())
	if plain.Throttle != nil || plain.deviceLimits != nil {
		t.Fatal("the default hub is throttled")
	}

	cfg := config.Default()
	cfg.DataDir, cfg.HostName = t.TempDir(), "hub.test"
	cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Throttle.SKU, cfg.Throttle.Units = "S2", 3
	cfg.Throttle.DeviceMaxSends = 5
	h, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	if h.Throttle.SKU() != "S2" || h.Throttle.Rate(throttle.D2C) != 360 || h.deviceLimits == nil {
		t.Fatalf("tier %s, d2c %v/s", h.Throttle.SKU(), h.Throttle.Rate(throttle.D2C))
	}
	if err := h.Throttle.UseQuota(context.Background(), 10_000); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + h.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "roost_daily_message_quota_used 3\n") {
		t.Fatalf("no dailyMessageQuotaUsed of 3 (a 10,000-byte message is 3 meters of 4 KB) in /metrics")
	}

	out, errs, code := run(t, "throttle", "--data-dir="+cfg.DataDir)
	if code != 0 || !strings.Contains(out, "SKU S2, 3 unit(s)") || !strings.Contains(out, "d2c         360.00") ||
		!strings.Contains(out, "Daily quota: 3 of 18000000") || !strings.Contains(out, "Per-device caps: 5 sends/s") {
		t.Fatalf("roost throttle: %d\n%s%s", code, out, errs)
	}
	out, _, code = run(t, "throttle", "--data-dir="+plainDir)
	if code != 0 || !strings.Contains(out, "SKU unlimited") {
		t.Fatalf("roost throttle on the default hub: %d %s", code, out)
	}

	cfg.DataDir = t.TempDir()
	cfg.Throttle.DeviceGroups = `[{"condition":"tags.x = "}]`
	if h2, err := Start(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "device-group-limits") {
		if h2 != nil {
			h2.Shutdown(context.Background())
		}
		t.Fatalf("a bad group condition: %v", err)
	}
}

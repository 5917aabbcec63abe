package app

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/registry"
)

// TestTroubleshootingAcrossNodes runs two hubs on one standalone nats-server: a fault added on
// one node fails a device connecting to the other, the records either node writes are found
// from both, and exactly one node runs the housekeeping jobs.
func TestTroubleshootingAcrossNodes(t *testing.T) {
	t.Parallel()
	x := enginetest.StartExternal(t)
	start := func(node string) (*Hub, string) {
		dir := t.TempDir()
		cfg := config.Default()
		cfg.DataDir, cfg.HostName, cfg.NodeID = dir, "hub.test", node
		cfg.HTTPSAddr, cfg.MQTTAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.NATSURLs = []string{x.URL}
		h, err := Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
		return h, "--data-dir=" + dir
	}
	a, ddA := start("node-a")
	b, ddB := start("node-b")
	ctx := context.Background()
	dev, err := a.Registry.CreateDevice(ctx, registry.Device{DeviceID: "press-07"})
	if err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "faults", "add", ddA, "--operation", "connect", "--error", "GenericTimeout", "--count", "1"); code != 0 {
		t.Fatalf("faults add on node a: %s", errs)
	}
	time.Sleep(1500 * time.Millisecond) // node b rereads the rules every second
	pass := deviceSAS(t, b, "press-07", dev.Authentication.SymmetricKey.PrimaryKey)
	if _, err := mqttConnect(t, b, "press-07", pass, nil); err == nil {
		t.Fatal("the fault added on node a must fail a connect on node b")
	}
	if _, err := mqttConnect(t, b, "press-07", pass, nil); err != nil {
		t.Fatalf("the fault was spent: %v", err)
	}
	// Node b wrote the record; node a's query finds it.
	rows := queryRows(t, ddA, 1, guideQuery)
	if len(rows) != 1 || rows[0]["ResultType"] != "500008" || rows[0]["ResultDescription"] != "GenericTimeout" {
		t.Fatalf("node a sees %v", rows)
	}
	if out, _, _ := run(t, "faults", "list", ddB); strings.Contains(out, "GenericTimeout") {
		t.Fatalf("the spent rule is gone on both nodes:\n%s", out)
	}
	// One housekeeping node, the same seen from both.
	holder := func(h *Hub) string {
		resp, err := http.Get("http://" + h.AdminAddr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st Health
		_ = json.NewDecoder(resp.Body).Decode(&st)
		hk, _ := st.Checks["housekeeping"].(map[string]any)
		n, _ := hk["node"].(string)
		return n
	}
	ha, hb := holder(a), holder(b)
	if ha == "" || ha != hb || (ha != "node-a" && ha != "node-b") {
		t.Fatalf("housekeeping node seen from a: %q, from b: %q", ha, hb)
	}
}

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/config"
	"github.com/roost-iot/roost/internal/registry"
)

// startTestHub runs a hub on random loopback ports in a temp data dir.
func startTestHub(t *testing.T, dataDir string) *Hub {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.HostName = "hub.test"
	cfg.HTTPSAddr = "127.0.0.1:0"
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	h, err := Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// startCLIHub starts a hub on a data directory of the test's own, shuts it down when the test
// ends, and returns it with the --data-dir flag that points the CLI at it.
func startCLIHub(t *testing.T) (*Hub, string) {
	t.Helper()
	dir := t.TempDir()
	h := startTestHub(t, dir)
	t.Cleanup(func() { _ = h.Shutdown(context.Background()) })
	return h, "--data-dir=" + dir
}

// createDevice adds a device to the hub's registry directly.
func createDevice(t *testing.T, h *Hub, id string) registry.Device {
	t.Helper()
	d, err := h.Registry.CreateDevice(context.Background(), registry.Device{DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestCLIManagesDevicesThroughTheHub(t *testing.T) {
	t.Parallel()
	_, dd := startCLIHub(t)

	out, errs, code := run(t, "device", "create", "cli-dev", dd)
	if code != 0 || !strings.Contains(out, "cli-dev") || !strings.Contains(out, "primaryKey") {
		t.Fatalf("create: %d %s %s", code, out, errs)
	}
	_, errs, code = run(t, "device", "create", "cli-dev", dd)
	if code != 1 || !strings.Contains(errs, "409001 DeviceAlreadyExists") || !strings.Contains(errs, "Tracking ID:") {
		t.Fatalf("duplicate create: %d %s", code, errs)
	}
	out, _, code = run(t, "device", "list", dd, "--output", "json")
	var devs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &devs) != nil || len(devs) != 1 || devs[0]["deviceId"] != "cli-dev" {
		t.Fatalf("list: %d %s", code, out)
	}
	out, _, code = run(t, "device", "disable", "cli-dev", "--status-reason", "stolen", dd, "--output", "json")
	if code != 0 || !strings.Contains(out, `"status": "disabled"`) || !strings.Contains(out, `"statusReason": "stolen"`) {
		t.Fatalf("disable: %d %s", code, out)
	}
	out, _, code = run(t, "sas-token", "--device", "cli-dev", "--duration", "2h", dd)
	if code != 0 || !strings.HasPrefix(out, "SharedAccessSignature sr=hub.test%2Fdevices%2Fcli-dev&sig=") {
		t.Fatalf("sas-token: %d %s", code, out)
	}
	out, _, code = run(t, "connection-string", "--device", "cli-dev", dd)
	if code != 0 || !strings.HasPrefix(out, "HostName=hub.test;DeviceId=cli-dev;SharedAccessKey=") {
		t.Fatalf("device connection string: %d %s", code, out)
	}
	out, _, code = run(t, "connection-string", "--policy", "service", dd)
	if code != 0 || !strings.HasPrefix(out, "HostName=hub.test;SharedAccessKeyName=service;SharedAccessKey=") {
		t.Fatalf("policy connection string: %d %s", code, out)
	}
	out, _, code = run(t, "ca-cert", dd)
	if code != 0 || !strings.HasPrefix(out, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("ca-cert: %d %s", code, out)
	}
	_, errs, code = run(t, "device", "show", "nobody", dd)
	if code != 1 || !strings.Contains(errs, "404001 DeviceNotFound") {
		t.Fatalf("show missing: %d %s", code, errs)
	}
	if _, _, code = run(t, "device", "delete", "cli-dev", dd); code != 0 {
		t.Fatal("delete failed")
	}
	// A connection string from the environment works without the data dir's help for the
	// string itself (the address and CA still come from the data dir).
	cs, _, _ := run(t, "connection-string", "--policy", "registryRead", dd)
	_, errs, code = run(t, "device", "create", "ro", dd, "--connection-string", strings.TrimSpace(cs))
	if code != 1 || !strings.Contains(errs, "401003") {
		t.Fatalf("read-only policy create: %d %s", code, errs)
	}
}

func TestErrorsExplain(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"404104", "DeviceConnectionClosedRemotely", "authenticationfailed", "MessageExpired"} {
		out, errs, code := run(t, "errors", "explain", arg)
		if code != 0 || !strings.Contains(out, "Cause") || !strings.Contains(out, "Resolution") {
			t.Errorf("explain %s: %d %s %s", arg, code, out, errs)
		}
	}
	if _, _, code := run(t, "errors", "explain", "999999"); code != 1 {
		t.Error("unknown code must fail")
	}
	out, _, code := run(t, "errors")
	if code != 0 || !strings.Contains(out, "404103") || !strings.Contains(out, "AuthenticationFailed") {
		t.Errorf("errors list: %d %s", code, out)
	}
}

func TestServeKeepsDataAcrossRestartsAndServesAdmin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startTestHub(t, dir)
	dd := "--data-dir=" + dir
	if _, errs, code := run(t, "device", "create", "keeper", dd); code != 0 {
		t.Fatal(errs)
	}
	resp, err := http.Get("http://" + h.AdminAddr + "/errors/404104")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"resolution"`) {
		t.Fatalf("admin /errors/404104: %d %s", resp.StatusCode, b)
	}
	resp, err = http.Get("http://" + h.AdminAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h2 := startTestHub(t, dir)
	defer h2.Shutdown(context.Background())
	out, errs, code := run(t, "device", "show", "keeper", dd)
	if code != 0 || !strings.Contains(out, "keeper") {
		t.Fatalf("after restart: %d %s %s", code, out, errs)
	}
}

func TestConfigErrorsNameTheirSource(t *testing.T) {
	t.Parallel()
	_, errs, code := run(t, "serve", "--hostname", "bad host", "--sync", "sometimes", "--https-addr", "nope")
	if code != 2 || !strings.Contains(errs, "hostname (from flag --hostname)") || !strings.Contains(errs, "sync (from flag --sync)") || !strings.Contains(errs, "https-addr") {
		t.Fatalf("got %d %s", code, errs)
	}
}

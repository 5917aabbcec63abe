package app

import (
	"context"
	"io"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/client"
	"github.com/roost-iot/roost/internal/registry"
)

// TestCLIContainerSASAndExport: roost files container-sas prints a container SAS URI of the
// built-in store that an export job writes devices.txt into, and that reads it back over the
// hub's blob endpoint.
func TestCLIContainerSASAndExport(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	ctx := context.Background()
	for _, id := range []string{"e1", "e2"} {
		if _, err := h.Registry.CreateDevice(ctx, registry.Device{DeviceID: id}); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code := run(t, "files", "container-sas", "--expiry", "10m", dd)
	uri := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(uri, "https://hub.test") || !strings.Contains(uri, "sr=c") || !strings.Contains(uri, "sp=rcw") {
		t.Fatalf("container-sas: %d %q %s", code, out, errs)
	}
	if _, errs, code := run(t, "files", "container-sas", "--permissions", "rwx", dd); code != 1 || !strings.Contains(errs, "ArgumentInvalid") {
		t.Fatalf("container-sas with a bad permission: %d %s", code, errs)
	}
	cs, _, _ := run(t, "connection-string", dd)
	pem, err := os.ReadFile(h.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{ConnectionString: strings.TrimSpace(cs), Address: h.HTTPSAddr, CAPEM: pem})
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.CreateRegistryJob(ctx, map[string]any{"type": "export", "outputBlobContainerUri": uri, "excludeKeysInExport": true})
	if err != nil || job.Status != "enqueued" {
		t.Fatalf("create: %+v %v", job, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for job.Status != "completed" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if job, err = c.RegistryJob(ctx, job.JobID); err != nil || job.Status == "failed" {
			t.Fatalf("job: %+v %v", job, err)
		}
	}
	dev := newDeviceHTTP(t, h, "e1")
	u, _ := url.Parse(uri)
	resp, err := dev.hc.Get("https://" + h.HTTPSAddr + u.Path + "/devices.txt?" + u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(body), "\n") != 2 || !strings.Contains(string(body), `"id":"e2"`) || !strings.Contains(string(body), `"primaryKey":null`) {
		t.Fatalf("devices.txt: %d %s", resp.StatusCode, body)
	}
}

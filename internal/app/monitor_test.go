package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/telemetry"
)

// TestCLIMonitorEventsShowsDeviceTelemetry drives the whole path: a device posts over HTTPS to
// a real hub, and `roost monitor-events` prints the message as az iot hub monitor-events would.
func TestCLIMonitorEventsShowsDeviceTelemetry(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	if _, errs, code := run(t, "device", "create", "mon-dev", dd); code != 0 {
		t.Fatal(errs)
	}
	tok, errs, code := run(t, "sas-token", "--device", "mon-dev", dd)
	if code != 0 {
		t.Fatal(errs)
	}
	lf, err := readLocal(h.Config.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(lf.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "hub.test"}}}
	req, _ := http.NewRequest("POST", "https://"+dialable(h.HTTPSAddr)+"/devices/mon-dev/messages/events?api-version=2021-04-12",
		strings.NewReader(`{"temperature":21.5,"note":"<ok>"}`))
	req.Header.Set("Authorization", strings.TrimSpace(tok))
	req.Header.Set("iothub-contenttype", "application/json")
	req.Header.Set("iothub-messageid", "m-1")
	req.Header.Set("iothub-app-alert", "false")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("device send: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.Telemetry.Send(ctx, &telemetry.Message{DeviceID: "other", ModuleID: "m", Body: []byte("plain")}); err != nil {
		t.Fatal(err)
	}

	out, errs, code := run(t, "monitor-events", dd, "--from", "start", "--timeout", "1s", "--device", "mon-dev",
		"--properties", "--output", "json")
	if code != 0 {
		t.Fatalf("monitor-events: %d %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one event for mon-dev, got:\n%s", out)
	}
	var ev struct {
		Event struct {
			Origin     string         `json:"origin"`
			Module     string         `json:"module"`
			Payload    map[string]any `json:"payload"`
			Properties struct {
				System      map[string]any    `json:"system"`
				Application map[string]string `json:"application"`
			} `json:"properties"`
			Annotations map[string]any `json:"annotations"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	e := ev.Event
	if e.Origin != "mon-dev" || e.Payload["temperature"] != 21.5 || e.Payload["note"] != "<ok>" ||
		e.Properties.System["message_id"] != "m-1" || e.Properties.System["content_type"] != "application/json" ||
		e.Properties.Application["alert"] != "false" ||
		e.Annotations["iothub-connection-device-id"] != "mon-dev" || e.Annotations["iothub-message-source"] != "Telemetry" ||
		e.Annotations["x-opt-sequence-number"] == nil {
		t.Fatalf("event: %s", lines[0])
	}
	if !strings.Contains(lines[0], `"payload":{"temperature":21.5,"note":"<ok>"}`) {
		t.Fatalf("payload not shown as sent: %s", lines[0])
	}

	// The default output is az's: indented by four spaces, no properties unless asked.
	out, errs, code = run(t, "monitor-events", dd, "--from", "start", "--timeout", "1s")
	if code != 0 {
		t.Fatalf("monitor-events: %d %s", code, errs)
	}
	for _, want := range []string{"{\n    \"event\": {\n        \"origin\": \"mon-dev\",", `"origin": "other"`, `"module": "m"`, `"payload": "plain"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "annotations") {
		t.Fatalf("annotations printed without --properties:\n%s", out)
	}
	if !strings.Contains(errs, "Starting event monitor") {
		t.Fatalf("stderr: %s", errs)
	}

	_, errs, code = run(t, "monitor-events", dd, "--consumer-group", "nope", "--timeout", "1s")
	if code != 1 || !strings.Contains(errs, "404000") {
		t.Fatalf("unknown consumer group: %d %s", code, errs)
	}
	if _, _, code = run(t, "monitor-events", dd, "--from", "yesterday"); code != 2 {
		t.Fatalf("bad --from: exit %d", code)
	}
}

func TestMonitorEventsFlags(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	for in, want := range map[string]string{
		"": "end", "now": "end", "start": "start", "Beginning": "start", "checkpoint": "checkpoint",
		"10m": "2026-05-06T06:58:09Z", "2026-01-02T03:04:05+01:00": "2026-01-02T02:04:05Z",
	} {
		got, err := parseFrom(in, now)
		if err != nil || got != want {
			t.Errorf("parseFrom(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "0s"} {
		if _, err := parseFrom(bad, now); err == nil {
			t.Errorf("parseFrom(%q) accepted", bad)
		}
	}
	p := propsFlag{}
	if err := p.Set("sys,app"); err != nil || !p["sys"] || !p["app"] || p["anno"] {
		t.Fatalf("sys,app: %v %v", p, err)
	}
	if err := p.Set("true"); err != nil || p.String() != "sys,anno,app" {
		t.Fatalf("bare --properties: %v %v", p, err)
	}
	if err := p.Set("everything"); err == nil {
		t.Fatal("bad --properties value accepted")
	}
}

// TestShutdownEndsMonitorStreams: a node with an attached monitor still stops promptly, and the
// monitor says why its stream ended.
func TestShutdownEndsMonitorStreams(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	h := startTestHub(t, dir)
	type result struct {
		errs string
		code int
	}
	done := make(chan result, 1)
	go func() {
		_, errs, code := run(t, "monitor-events", "--data-dir="+dir)
		done <- result{errs, code}
	}()
	// Wait until the stream is open: the hub then has a reader.
	deadline := time.Now().Add(5 * time.Second)
	for h.Telemetry.Readers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("monitor-events never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("shutdown with a monitor attached took %s", d)
	}
	select {
	case r := <-done:
		if r.code != 1 || !strings.Contains(r.errs, "ended the stream") {
			t.Fatalf("monitor after shutdown: %d %s", r.code, r.errs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("monitor-events still running after the hub stopped")
	}
}

package app

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/registry"
)

// TestFaultInjectionEndToEnd adds faults with the CLI and checks that a real MQTT device and
// the REST API fail as IoT Hub's transient errors do, that the guide's query finds the
// failures marked as injected, and that /healthz reports the hub Degraded meanwhile.
func TestFaultInjectionEndToEnd(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	dev := createDevice(t, h, "press-07")
	pass := deviceSAS(t, h, "press-07", dev.Authentication.SymmetricKey.PrimaryKey)

	health := func() map[string]any {
		resp, err := http.Get("http://" + h.AdminAddr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	if st := health(); st["availabilityState"] != "Available" || st["status"] != "ok" {
		t.Fatalf("healthz: %v", st)
	}

	// One connect fails with 500001; the next succeeds (the SDKs retry).
	out, errs, code := run(t, "faults", "add", dd, "--operation", "connect", "--device", "press-*", "--error", "500001", "--count", "1", "--id", "connect-once")
	if code != 0 || !strings.Contains(out, "added fault connect-once") {
		t.Fatalf("faults add: %d %s %s", code, out, errs)
	}
	if st := health(); st["availabilityState"] != "Degraded" {
		t.Fatalf("healthz with a fault: %v", st)
	}
	if _, err := mqttConnect(t, h, "press-07", pass, nil); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unavailable") {
		t.Fatalf("first connect: %v, want refused as server unavailable", err)
	}
	lost := make(chan error, 1)
	c, err := mqttConnect(t, h, "press-07", pass, func(err error) { lost <- err })
	if err != nil {
		t.Fatalf("second connect: %v", err)
	}
	// Telemetry throttled (429001) closes the connection, as IoT Hub does over MQTT.
	if _, _, code := run(t, "faults", "add", dd, "--operation", "telemetry", "--error", "ThrottlingException", "--id", "throttle"); code != 0 {
		t.Fatal("faults add throttle")
	}
	c.Publish("devices/press-07/messages/events/", 1, false, `{"t":1}`).WaitTimeout(5 * time.Second)
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a throttled publish must close the connection")
	}
	// A drop rule closes a connected device at once with 404104.
	if _, _, code := run(t, "faults", "remove", "throttle", dd); code != 0 {
		t.Fatal("faults remove")
	}
	lost2 := make(chan error, 1)
	if _, err := mqttConnect(t, h, "press-07", pass, func(err error) { lost2 <- err }); err != nil {
		t.Fatal(err)
	}
	if _, _, code := run(t, "faults", "add", dd, "--operation", "telemetry", "--device", "press-07", "--error", "drop", "--id", "drop"); code != 0 {
		t.Fatal("faults add drop")
	}
	select {
	case <-lost2:
	case <-time.After(10 * time.Second):
		t.Fatal("a drop rule must close the device's connection")
	}
	// REST: InternalServerError on registry reads.
	if _, _, code := run(t, "faults", "add", dd, "--operation", "DeviceIdentityOperations/get", "--error", "InternalServerError", "--id", "ise"); code != 0 {
		t.Fatal("faults add ise")
	}
	_, errs, code = run(t, "device", "show", "press-07", dd)
	if code != 1 || !strings.Contains(errs, "500") {
		t.Fatalf("device show under an injected fault: %d %s", code, errs)
	}
	out, _, _ = run(t, "faults", "list", dd)
	if !strings.Contains(out, "ise") || !strings.Contains(out, "drop") || strings.Contains(out, "connect-once") {
		t.Fatalf("faults list (the counted rule is spent):\n%s", out)
	}
	if _, _, code := run(t, "faults", "clear", dd); code != 0 {
		t.Fatal("faults clear")
	}

	// The guide's query finds the injected connection failures, marked as injected.
	rows := queryRows(t, dd, 3, guideQuery+`
| extend p = parse_json(properties_s)
| project OperationName, ResultType, ResultDescription, Injected = tostring(p.faultInjected), Rule = tostring(p.faultRule)
| order by Rule asc`)
	var got []string
	for _, r := range rows {
		got = append(got, strings.Join([]string{r["OperationName"].(string), r["ResultType"].(string), r["ResultDescription"].(string), r["Injected"].(string), r["Rule"].(string)}, " "))
	}
	want := []string{
		"deviceConnect 500001 ServerError true connect-once",
		"deviceDisconnect 404104 DeviceConnectionClosedRemotely true drop",
		"deviceDisconnect 429001 ThrottlingException true throttle",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("injected connection failures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rows = queryRows(t, dd, 2, `AzureDiagnostics | where Category in ("DeviceTelemetry", "DeviceIdentityOperations") and Level == "Error"
| project Category, OperationName, ResultType, ResultDescription`)
	got = nil
	for _, r := range rows {
		got = append(got, strings.Join([]string{r["Category"].(string), r["OperationName"].(string), r["ResultType"].(string), r["ResultDescription"].(string)}, " "))
	}
	if strings.Join(got, "\n") != "DeviceTelemetry ingress 429001 ThrottlingException\nDeviceIdentityOperations get 500000 InternalServerError" {
		t.Fatalf("injected operation failures:\n%s", strings.Join(got, "\n"))
	}
	// The throttling error counts in IoT Hub's sendThrottle metric.
	out, _, code = run(t, "metrics", dd)
	if code != 0 || !strings.Contains(out, "d2c.telemetry.ingress.sendThrottle") {
		t.Fatalf("metrics:\n%s", out)
	}
	resp, err := http.Get("http://" + h.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"roost_d2c_telemetry_ingress_send_throttle_total 1", `roost_faults_injected_total{code="429001"} 1`, "roost_connected_device_count"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if st := health(); st["availabilityState"] != "Available" {
		t.Fatalf("healthz after clear: %v", st)
	}
}

// TestDiagnoseAndEvents runs roost diagnose against a hub with a good and a wrong key, and
// subscribes a real local webhook to DeviceConnected events with the CLI.
func TestDiagnoseAndEvents(t *testing.T) {
	t.Parallel()
	h, dd := startCLIHub(t)
	ctx := context.Background()

	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []map[string]any
		_ = json.NewDecoder(r.Body).Decode(&batch)
		mu.Lock()
		got = append(got, batch...)
		mu.Unlock()
	}))
	defer hook.Close()
	out, errs, code := run(t, "events", "subscribe", "conn", "--endpoint", hook.URL, "--type", "DeviceConnected", dd)
	if code != 0 || !strings.Contains(out, "DeviceConnected") {
		t.Fatalf("events subscribe: %d %s %s", code, out, errs)
	}
	out, _, _ = run(t, "events", "list", dd)
	if !strings.Contains(out, hook.URL) {
		t.Fatalf("events list:\n%s", out)
	}
	time.Sleep(500 * time.Millisecond) // the housekeeping node starts its producers

	dev := createDevice(t, h, "gw-01")
	mqttHost, mqttPort, _ := net.SplitHostPort(h.MQTTAddr)
	_, httpsPort, _ := net.SplitHostPort(h.HTTPSAddr)
	cs := "HostName=hub.test;DeviceId=gw-01;SharedAccessKey=" + dev.Authentication.SymmetricKey.PrimaryKey
	out, errs, code = run(t, "diagnose", "--device-connection-string", cs, "--server", mqttHost, "--mqtt-port", mqttPort, "--https-port", httpsPort, dd)
	if code != 0 || !strings.Contains(out, "CONNACK 0") || !strings.Contains(out, "[ok  ] TLS") || !strings.Contains(out, "[ok  ] clock") {
		t.Fatalf("diagnose: %d\n%s%s", code, out, errs)
	}
	other, _ := h.Registry.CreateDevice(ctx, registry.Device{DeviceID: "other"})
	bad := "HostName=hub.test;DeviceId=gw-01;SharedAccessKey=" + other.Authentication.SymmetricKey.PrimaryKey
	out, _, code = run(t, "diagnose", "--device-connection-string", bad, "--server", mqttHost, "--mqtt-port", mqttPort, "--https-port", httpsPort, dd)
	if code != 1 || !strings.Contains(out, "CONNACK 5") || !strings.Contains(out, "fix:") {
		t.Fatalf("diagnose with a wrong key: %d\n%s", code, out)
	}
	// diagnose's own connect is a DeviceConnected event for gw-01.
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no DeviceConnected event")
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	e := got[0]
	mu.Unlock()
	if e["eventType"] != "Microsoft.Devices.DeviceConnected" || e["subject"] != "devices/gw-01" ||
		!strings.HasSuffix(e["topic"].(string), "/IOTHUBS/HUB") {
		t.Fatalf("event %v", e)
	}
	if _, _, code := run(t, "events", "delete", "conn", dd); code != 0 {
		t.Fatal("events delete")
	}
	// Alert rules through the CLI.
	out, errs, code = run(t, "alerts", "set", "conn-errors", "--query", `AzureDiagnostics | where Category == "Connections" and Level == "Error"`,
		"--operator", "GreaterThan", "--threshold", "0", dd)
	if code != 0 {
		t.Fatalf("alerts set: %d %s %s", code, out, errs)
	}
	out, _, code = run(t, "alerts", "list", dd)
	if code != 0 || !strings.Contains(out, "conn-errors") {
		t.Fatalf("alerts list:\n%s", out)
	}
	_, errs, code = run(t, "alerts", "set", "bad", "--metric", "nope", "--operator", ">", dd)
	if code != 2 || !strings.Contains(errs, "not an IoT Hub metric") {
		t.Fatalf("bad alert: %d %s", code, errs)
	}
}

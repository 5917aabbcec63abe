package events_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/events"
	"github.com/roost-iot/roost/internal/registry"
	"github.com/roost-iot/roost/internal/telemetry"
)

// sink is a real local webhook endpoint.
type sink struct {
	mu      sync.Mutex
	bodies  []string
	headers []http.Header
	status  int
	hang    time.Duration
	srv     *httptest.Server
}

func newSink(t *testing.T, status int, hang time.Duration) *sink {
	s := &sink{status: status, hang: hang}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // read first: only then does a client's hang-up end r.Context()
		if s.hang > 0 {
			select {
			case <-time.After(s.hang):
			case <-r.Context().Done():
				return
			}
		}
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.headers = append(s.headers, r.Header.Clone())
		st := s.status
		s.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) events(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, b := range s.bodies {
		var batch []map[string]any
		if err := json.Unmarshal([]byte(b), &batch); err != nil {
			t.Fatalf("batch %q: %v", b, err)
		}
		out = append(out, batch...)
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDeviceEventsAreDelivered(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg, err := registry.New(ctx, eng, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.Open(ctx, eng, telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	dw, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: diag.ResourceID("s", "rg", "hub")})
	if err != nil {
		t.Fatal(err)
	}
	defer dw.Close()
	var mu sync.Mutex
	results := map[string]int{}
	mgr, err := events.Open(ctx, eng, events.Config{HubName: "hub", ResourceID: dw.ResourceID(), Telemetry: tel,
		RetryBase: 20 * time.Millisecond, RetryMax: 50 * time.Millisecond, Poll: 50 * time.Millisecond, Timeout: 300 * time.Millisecond,
		OnDelivery: func(r, _ string) { mu.Lock(); results[r]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}

	all := newSink(t, 200, 0)
	cloud := newSink(t, 200, 0)
	failing := newSink(t, 500, 0)
	hanging := newSink(t, 200, time.Hour)
	for _, s := range []events.Subscription{
		{Name: "all-d1", Endpoint: all.srv.URL, SubjectBeginsWith: "devices/d1"},
		{Name: "cloud-connected", Endpoint: cloud.srv.URL, EventTypes: []string{"DeviceConnected"}, Schema: "CloudEvents",
			AdvancedFilters: []events.Filter{{Key: "data.deviceId", Operator: "StringIn", Values: []any{"d1"}}}},
		{Name: "failing", Endpoint: failing.srv.URL, EventTypes: []string{"DeviceCreated"}, MaxDeliveryAttempts: 3},
		{Name: "hanging", Endpoint: hanging.srv.URL, MaxDeliveryAttempts: 2},
	} {
		if _, err := mgr.Put(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); mgr.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // producers start from now

	// Lifecycle, connections and telemetry of d1 (and one of d2, filtered out).
	if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "d2"}); err != nil {
		t.Fatal(err)
	}
	conn := func(op string, err error) {
		dw.Write(ctx, diag.Record{Category: diag.Connections, OperationName: op, Err: err, DurationMs: -1,
			Properties: map[string]any{"deviceId": "d1", "protocol": "Mqtt"}})
	}
	conn(diag.OpDeviceConnect, errcode.New(errcode.IotHubUnauthorized, "refused connects are no event"))
	conn(diag.OpDeviceConnect, nil)
	conn(diag.OpDeviceDisconnect, errcode.New(errcode.DeviceConnectionClosedRemotely, "dropped"))
	conn(diag.OpDeviceConnect, nil)
	_ = dw.Flush(ctx)
	if _, err := tel.Send(ctx, &telemetry.Message{DeviceID: "d1", Body: []byte(`{"temp":21.5}`), ContentType: "application/json",
		ContentEncoding: "utf-8", Properties: []telemetry.Property{{Name: "alert", Value: "no"}}}); err != nil {
		t.Fatal(err)
	}
	if err := reg.DeleteDevice(ctx, "d1", "*"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, registry.Device{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, "d1's events", func() bool { return len(all.events(t)) >= 7 })
	var types []string
	var seqs []string
	for _, e := range all.events(t) {
		types = append(types, strings.TrimPrefix(e["eventType"].(string), "Microsoft.Devices."))
		if e["subject"] != "devices/d1" || e["topic"] != dw.ResourceID() || e["metadataVersion"] != "1" {
			t.Errorf("envelope %v", e)
		}
		data := e["data"].(map[string]any)
		if info, ok := data["deviceConnectionStateEventInfo"].(map[string]any); ok {
			seqs = append(seqs, info["sequenceNumber"].(string))
		}
		if e["eventType"] == events.DeviceTelemetry {
			if body, ok := data["body"].(map[string]any); !ok || body["temp"] != 21.5 || data["properties"].(map[string]any)["alert"] != "no" ||
				data["systemProperties"].(map[string]any)["iothub-connection-device-id"] != "d1" || e["dataVersion"] != "" {
				t.Errorf("telemetry event %v", e)
			}
		}
		if e["eventType"] == events.DeviceCreated {
			twin := data["twin"].(map[string]any)
			if twin["deviceId"] != "d1" || twin["connectionState"] != "Disconnected" || data["hubName"] != "hub" {
				t.Errorf("created event %v", e)
			}
		}
	}
	// Connection events come in the order of the records; the others in their own order.
	order := map[string]bool{}
	for _, ty := range types {
		order[ty] = true
	}
	for _, want := range []string{"DeviceCreated", "DeviceConnected", "DeviceDisconnected", "DeviceTelemetry", "DeviceDeleted"} {
		if !order[want] {
			t.Errorf("no %s among %v", want, types)
		}
	}
	if len(seqs) != 3 || !(seqs[0] < seqs[1] && seqs[1] < seqs[2]) || len(seqs[0]) != 64 {
		t.Errorf("sequence numbers %v must be 64 hex digits, increasing", seqs)
	}
	created := 0
	for _, ty := range types {
		if ty == "DeviceCreated" {
			created++
		}
	}
	if created != 2 {
		t.Errorf("DeviceCreated %d times, want 2 (create, delete, create): %v", created, types)
	}

	// CloudEvents with an event type and an advanced filter.
	waitFor(t, "cloud events", func() bool { return len(cloud.events(t)) >= 2 })
	for _, e := range cloud.events(t) {
		if e["specversion"] != "1.0" || e["type"] != events.DeviceConnected || e["source"] != dw.ResourceID() {
			t.Errorf("cloud event %v", e)
		}
	}
	cloud.mu.Lock()
	if ct := cloud.headers[0].Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents-batch+json") {
		t.Errorf("content type %q", ct)
	}
	cloud.mu.Unlock()

	// The failing endpoint gets each DeviceCreated three times, then they are dead-lettered.
	waitFor(t, "dead letters", func() bool {
		dl, _ := mgr.DeadLetters(ctx, "failing", time.Time{})
		return len(dl) >= 3
	})
	dl, _ := mgr.DeadLetters(ctx, "failing", time.Time{})
	if dl[0].Reason != "MaxDeliveryAttemptsExceeded" || dl[0].Attempts != 3 || dl[0].Event.EventType != events.DeviceCreated || !strings.Contains(dl[0].LastError, "500") {
		t.Fatalf("dead letter %+v", dl[0])
	}
	failing.mu.Lock()
	if n := len(failing.bodies); n < 9 {
		t.Errorf("failing endpoint tried %d times, want 3 per event", n)
	}
	counts := map[string]int{}
	for _, h := range failing.headers {
		counts[h.Get("aeg-delivery-count")]++
		if h.Get("aeg-subscription-name") != "failing" || h.Get("aeg-event-type") != "Notification" {
			t.Errorf("headers %v", h)
		}
	}
	if counts["0"] < 3 || counts["1"] < 3 || counts["2"] < 3 {
		t.Errorf("delivery counts %v, want each event tried as delivery 0, 1 and 2", counts)
	}
	failing.mu.Unlock()
	// The hanging endpoint times out and dead-letters too, without holding up the others.
	waitFor(t, "hanging dead letters", func() bool {
		dl, _ := mgr.DeadLetters(ctx, "hanging", time.Time{})
		return len(dl) > 0
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if results["success"] < 9 || results["failure"] < 9 {
		t.Errorf("delivery outcomes %v", results)
	}
}

func TestSubscriptionValidation(t *testing.T) {
	t.Parallel()
	for _, s := range []events.Subscription{
		{Name: "", Endpoint: "http://x"},
		{Name: "a", Endpoint: "ftp://x"},
		{Name: "a", Endpoint: "http://x", EventTypes: []string{"DeviceExploded"}},
		{Name: "a", Endpoint: "http://x", Schema: "xml"},
		{Name: "a", Endpoint: "http://x", MaxDeliveryAttempts: 31},
		{Name: "a", Endpoint: "http://x", AdvancedFilters: []events.Filter{{Key: "data.x", Operator: "Resembles"}}},
	} {
		if err := events.Normalize(&s); err == nil {
			t.Errorf("%+v: no error", s)
		}
	}
}

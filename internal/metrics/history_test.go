package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/metrics"
)

func TestPromNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, unit, kind, want string }{
		{"d2c.telemetry.ingress.allProtocol", metrics.UnitCount, metrics.KindCounter, "roost_d2c_telemetry_ingress_all_protocol_total"},
		{"connectedDeviceCount", metrics.UnitCount, metrics.KindSnapshot, "roost_connected_device_count"},
		{"C2DMessagesExpired", metrics.UnitCount, metrics.KindCounter, "roost_c2d_messages_expired_total"},
		{"c2d.methods.requestSize", metrics.UnitBytes, metrics.KindSize, "roost_c2d_methods_request_size_bytes"},
		{"twinQueries.resultSize", metrics.UnitBytes, metrics.KindSize, "roost_twin_queries_result_size_bytes"},
		{"EventGridLatency", metrics.UnitMilliseconds, metrics.KindSize, "roost_event_grid_latency_milliseconds"},
		{"d2c.endpoints.egress.builtIn.events", metrics.UnitCount, metrics.KindCounter, "roost_d2c_endpoints_egress_built_in_events_total"},
	} {
		if got := metrics.PromName(c.name, c.unit, c.kind); got != c.want {
			t.Errorf("PromName(%s) = %s, want %s", c.name, got, c.want)
		}
	}
	// Every IoT Hub metric a feature registers has the name the table gives it.
	m := metrics.New()
	tr := m.NewTroubleshooting()
	tr.EventGridDeliveries.WithLabelValues("delivered", "Microsoft.Devices.DeviceConnected").Inc()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	for _, want := range []string{"connectedDeviceCount", "d2c.telemetry.ingress.success", "d2c.telemetry.ingress.sendThrottle", "EventGridDeliveries"} {
		d, _ := metrics.LookupDefinition(want)
		if !have[d.Prom] {
			t.Errorf("%s is not registered as %s", want, d.Prom)
		}
	}
}

// TestHistoryAddsUpNodes records minutes on two nodes sharing one engine, with a fake clock,
// and reads them back as AzureMetrics.
func TestHistoryAddsUpNodes(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	var nodes []*metrics.Metrics
	var recs []*metrics.Recorder
	for _, name := range []string{"n1", "n2"} {
		m := metrics.New()
		r, err := metrics.NewRecorder(ctx, eng, m, metrics.HistoryConfig{Node: name})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, m)
		recs = append(recs, r)
	}
	for i, r := range recs {
		r.Tick(ctx, start.Add(5*time.Second)) // baseline
		nodes[i].TelemetrySuccess.Add(float64(10 * (i + 1)))
		nodes[i].ConnectedDevices.Set(float64(3 + i))
		r.Tick(ctx, start.Add(30*time.Second))
		nodes[i].ConnectedDevices.Set(float64(5 + i))
		r.Tick(ctx, start.Add(50*time.Second))
		r.Tick(ctx, start.Add(65*time.Second)) // the minute ended: store it
	}
	h := metrics.NewHistory(eng, "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/HUB")
	res, err := kql.Run(ctx, kql.Catalog{h}, `AzureMetrics
| where MetricName in ("d2c.telemetry.ingress.success", "connectedDeviceCount")
| project TimeGenerated, MetricName, Total, Count, Minimum, Maximum, Average, TimeGrain, Resource`, kql.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 2 {
		t.Fatalf("rows: %v", res.Rows)
	}
	conn, tel := res.Rows[0], res.Rows[1]
	if !conn[0].Time().Equal(start) || conn[1].String() != "connectedDeviceCount" || conn[4].F != 0 || conn[5].F != 5+6 || conn[7].String() != "PT1M" || conn[8].String() != "HUB" {
		t.Errorf("connectedDeviceCount minute: %v", conn)
	}
	// Samples at :05 (0 and 0), :30 (3, 4) and :50 (5, 6): node averages 8/3 and 10/3.
	if avg := conn[6].F; avg < 5.99 || avg > 6.01 {
		t.Errorf("connectedDeviceCount average %v, want 6", avg)
	}
	if tel[1].String() != "d2c.telemetry.ingress.success" || tel[2].F != 30 || tel[3].F != 30 || tel[6].F != 1 {
		t.Errorf("telemetry minute: %v", tel)
	}
	// A restarted counter (lower than before) counts from zero rather than going negative.
	fresh := metrics.New()
	r, _ := metrics.NewRecorder(ctx, eng, fresh, metrics.HistoryConfig{Node: "n3"})
	r.Tick(ctx, start.Add(2*time.Minute))
	fresh.TelemetrySuccess.Add(2)
	r.Tick(ctx, start.Add(3*time.Minute+time.Second))
	res, _ = kql.Run(ctx, kql.Catalog{h}, `AzureMetrics | where MetricName == "d2c.telemetry.ingress.success" | summarize sum(Total)`, kql.Options{})
	if res.Rows[0][0].F != 32 {
		t.Errorf("sum over minutes: %v", res.Rows)
	}
}

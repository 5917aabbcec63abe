package alerts_test

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

	"github.com/roost-iot/roost/internal/alerts"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine/enginetest"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/metrics"
)

type hook struct {
	mu    sync.Mutex
	fails int
	got   []map[string]any
	srv   *httptest.Server
}

func newHook(t *testing.T, fails int) *hook {
	h := &hook{fails: fails}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.fails > 0 {
			h.fails--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		h.got = append(h.got, m)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) conditions() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.got {
		ess := m["data"].(map[string]any)["essentials"].(map[string]any)
		out = append(out, ess["alertRule"].(string)+":"+ess["monitorCondition"].(string))
	}
	return out
}

// TestAlertsFireAndResolveWithAFakeClock drives a metric rule (connected devices dropped) and a
// log rule (any Connections error) with a fake clock and checks the webhooks receive Fired and
// Resolved, with retries when the endpoint fails at first.
func TestAlertsFireAndResolveWithAFakeClock(t *testing.T) {
	t.Parallel()
	eng := enginetest.Start(t)
	ctx := context.Background()
	m := metrics.New()
	rec, err := metrics.NewRecorder(ctx, eng, m, metrics.HistoryConfig{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	history := metrics.NewHistory(eng, "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/HUB")
	dw, err := diag.NewWriter(ctx, eng, diag.Config{ResourceID: history.ResourceID})
	if err != nil {
		t.Fatal(err)
	}
	defer dw.Close()
	query := func(ctx context.Context, q string, opts kql.Options) (*kql.Result, error) {
		return diag.Query(ctx, eng, q, opts, history)
	}
	var mu sync.Mutex
	outcomes := map[string]int{}
	mgr, err := alerts.Open(ctx, eng, alerts.Config{Query: query, ResourceID: history.ResourceID, RetryBase: 10 * time.Millisecond,
		OnDelivery: func(r string) { mu.Lock(); outcomes[r]++; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	hk := newHook(t, 2) // the first two deliveries fail: the manager retries
	if _, err := mgr.Put(ctx, alerts.Rule{Name: "devices-dropped", Metric: "connectedDeviceCount", Aggregation: "Average",
		Operator: "LessThan", Threshold: 1, Window: alerts.Minutes(2), Webhooks: []string{hk.srv.URL}}); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.Put(ctx, alerts.Rule{Name: "connection-errors", Query: `AzureDiagnostics | where Category == "Connections" and Level == "Error"`,
		Operator: "GreaterThan", Threshold: 0, Window: alerts.Minutes(5), Webhooks: []string{hk.srv.URL}}); err != nil {
		t.Fatal(err)
	}

	// The fake clock: minute M0 starts three minutes ago (the history's stored times are real).
	m0 := time.Now().UTC().Truncate(time.Minute).Add(-3 * time.Minute)
	at := func(min, sec int) time.Time {
		return m0.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second)
	}
	m.ConnectedDevices.Set(5)
	rec.Tick(ctx, at(0, 1))
	rec.Tick(ctx, at(0, 30))
	rec.Tick(ctx, at(1, 1)) // M0 stored: 5 devices
	mgr.Evaluate(ctx, at(1, 10))
	states, _ := mgr.States(ctx)
	if states[1].Rule != "devices-dropped" || states[1].Condition != "Resolved" || *states[1].Value != 5 {
		t.Fatalf("with 5 devices: %+v", states[1])
	}
	// All devices drop for two minutes.
	m.ConnectedDevices.Set(0)
	rec.Tick(ctx, at(1, 30))
	rec.Tick(ctx, at(2, 1)) // M1 stored: about 2.5 (5 at :01, 0 at :30)
	rec.Tick(ctx, at(2, 30))
	rec.Tick(ctx, at(3, 1))      // M2 stored: 0
	mgr.Evaluate(ctx, at(3, 10)) // window M1..M2: average 1.25? M1 starts before the window
	mgr.Evaluate(ctx, at(3, 40)) // too soon: every is 1 minute
	mgr.Wait()
	states, _ = mgr.States(ctx)
	if states[1].Condition != "Fired" || *states[1].Value >= 1 {
		t.Fatalf("after the drop: %+v", states[1])
	}
	// They come back.
	m.ConnectedDevices.Set(7)
	rec.Tick(ctx, at(3, 30))
	rec.Tick(ctx, at(4, 1))
	rec.Tick(ctx, at(4, 30))
	rec.Tick(ctx, at(5, 1))
	mgr.Evaluate(ctx, at(5, 10))
	mgr.Wait()
	states, _ = mgr.States(ctx)
	if states[1].Condition != "Resolved" {
		t.Fatalf("after recovery: %+v", states[1])
	}
	if got := strings.Join(hk.conditions(), ","); got != "devices-dropped:Fired,devices-dropped:Resolved" {
		t.Fatalf("webhook got %s", got)
	}
	mu.Lock()
	if outcomes["delivered"] != 2 {
		t.Fatalf("deliveries %v", outcomes)
	}
	mu.Unlock()

	// A Connections error fires the log rule.
	dw.Write(ctx, diag.Record{Category: diag.Connections, OperationName: diag.OpDeviceConnect, DurationMs: -1,
		Err: errcode.New(errcode.IotHubUnauthorized, "bad key"), Properties: map[string]any{"deviceId": "d1"}})
	_ = dw.Flush(ctx)
	now := at(6, 20) // the record was written at about at(3, x)
	mgr.Evaluate(ctx, now)
	mgr.Wait()
	states, _ = mgr.States(ctx)
	if states[0].Rule != "connection-errors" || states[0].Condition != "Fired" || *states[0].Value != 1 {
		t.Fatalf("log rule: %+v", states[0])
	}
	// Six minutes later the error has left the window.
	mgr.Evaluate(ctx, now.Add(6*time.Minute))
	mgr.Wait()
	hist, err := mgr.History(ctx, time.Time{})
	if err != nil || len(hist) != 4 || hist[2].Rule != "connection-errors" || hist[2].SignalType != "Log" || hist[3].Condition != "Resolved" {
		t.Fatalf("history: %+v %v", hist, err)
	}
}

func TestAlertRulesDecodeAndValidate(t *testing.T) {
	t.Parallel()
	rules, err := alerts.DecodeRules([]byte(`{"rules":[
		{"name":"throttling","metric":"d2c.telemetry.ingress.sendThrottle","operator":">","threshold":0,"window":"PT1H"},
		{"name":"errors","query":"AzureDiagnostics | where Level == \"Error\"","operator":"GreaterThanOrEqual","threshold":10,"every":"5m","severity":1}
	]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rules[0].Aggregation != "Total" || rules[0].Operator != ">" || time.Duration(rules[0].Window) != time.Hour ||
		*rules[0].Severity != 3 || time.Duration(rules[1].Every) != 5*time.Minute || *rules[1].Severity != 1 {
		t.Fatalf("decoded %+v %+v", rules[0], rules[1])
	}
	for _, bad := range []string{
		`[{"name":"x","operator":">"}]`,
		`[{"name":"x","metric":"nope","operator":">"}]`,
		`[{"name":"x","query":"AzureDiagnostics |","operator":">"}]`,
		`[{"name":"x","metric":"connectedDeviceCount","operator":"bigger"}]`,
		`[{"name":"a b","metric":"connectedDeviceCount","operator":">"}]`,
		`[{"name":"x","metric":"connectedDeviceCount","operator":">","webhooks":["ftp://x"]}]`,
		`[{"name":"x","metric":"connectedDeviceCount","operator":">","window":"1s"}]`,
	} {
		if _, err := alerts.DecodeRules([]byte(bad), nil); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

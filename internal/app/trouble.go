package app

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/alerts"
	"github.com/roost-iot/roost/internal/diag"
	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/events"
	"github.com/roost-iot/roost/internal/faults"
	"github.com/roost-iot/roost/internal/httpapi"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/metrics"
)

// troubleshooting is the hub's troubleshooting surface: fault injection, the metrics history,
// diagnostic exports, alerts and device events, and the admin endpoints that expose them.
// Cluster-wide jobs (exports, alert evaluation, event delivery) run on the node holding the
// "housekeeping" lease; every node records its own metrics.
type troubleshooting struct {
	h        *Hub
	faults   *faults.Injector
	metrics  *metrics.Troubleshooting
	recorder *metrics.Recorder
	history  *metrics.History
	lease    *engine.Lease
	alerts   *alerts.Manager
	events   *events.Manager
	exports  []*diag.Exporter
	jobs     []func(ctx context.Context) // run under the lease
	extra    []func(a *httpapi.Admin)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// streams ends the admin API's streams (logs tail) when the hub shuts down; they never end
	// by themselves.
	streams     context.Context
	stopStreams context.CancelFunc
}

// newTroubleshooting opens what the edges need before they start (fault injection); start runs
// the background work once the hub is up.
func newTroubleshooting(ctx context.Context, h *Hub) (*troubleshooting, error) {
	cfg := h.Config
	t := &troubleshooting{h: h, metrics: h.Metrics.NewTroubleshooting()}
	t.streams, t.stopStreams = context.WithCancel(context.Background())
	h.Metrics.RegisterFuncs(h.Diag.Dropped, func(ctx context.Context) (int64, error) {
		st, err := h.Registry.Statistics(ctx)
		return int64(st.TotalDeviceCount), err
	})
	if cfg.Trouble.FaultInjection {
		var err error
		t.faults, err = faults.Open(ctx, h.Engine, faults.Config{
			Logger: h.log,
			Drop: func(dev, rule string) error {
				if h.MQTT == nil {
					return nil
				}
				return h.MQTT.Drop(dev, rule)
			},
			OnInject: func(code errcode.Code) { t.metrics.FaultsInjected.WithLabelValues(code.String()).Inc() },
		})
		if err != nil {
			return nil, err
		}
		t.extra = append(t.extra, httpapi.FaultRoutes(t.faults))
	}
	var err error
	if t.recorder, err = metrics.NewRecorder(ctx, h.Engine, h.Metrics, metrics.HistoryConfig{
		Node: h.NodeID, Retention: cfg.Trouble.MetricsRetention, Logger: h.log,
	}); err != nil {
		return nil, err
	}
	t.history = metrics.NewHistory(h.Engine, h.Diag.ResourceID())
	for _, spec := range cfg.Trouble.DiagExports {
		xc, err := diag.ParseExport(spec)
		if err != nil {
			return nil, err
		}
		xc.Logger = h.log
		x, err := diag.NewExporter(ctx, h.Engine, xc)
		if err != nil {
			return nil, err
		}
		t.exports = append(t.exports, x)
		t.jobs = append(t.jobs, x.Run)
	}
	if t.alerts, err = alerts.Open(ctx, h.Engine, alerts.Config{
		Query: t.query, ResourceID: h.Diag.ResourceID(), Logger: h.log,
		OnDelivery: func(r string) { t.metrics.AlertNotifications.WithLabelValues(r).Inc() },
		OnFiring:   func(n int) { t.metrics.AlertsFiring.Set(float64(n)) },
	}); err != nil {
		return nil, err
	}
	if cfg.Trouble.AlertRules != "" {
		rules, err := loadAlertRules(cfg.Trouble.AlertRules)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			if _, err := t.alerts.Put(ctx, r); err != nil {
				return nil, err
			}
		}
	}
	t.jobs = append(t.jobs, t.alerts.Run)
	t.extra = append(t.extra, httpapi.AlertRoutes(t.alerts))
	if t.events, err = events.Open(ctx, h.Engine, events.Config{
		HubName: hubName(cfg.HostName), ResourceID: h.Diag.ResourceID(), Telemetry: h.Telemetry, Logger: h.log,
		OnDelivery: func(r, typ string) { t.metrics.EventGridDeliveries.WithLabelValues(r, typ).Inc() },
		OnLatency:  func(d time.Duration) { t.metrics.EventGridLatency.Observe(float64(d.Milliseconds())) },
	}); err != nil {
		return nil, err
	}
	t.jobs = append(t.jobs, t.events.Run)
	t.extra = append(t.extra, httpapi.EventRoutes(t.events))
	if t.lease, err = h.Engine.NewLease(ctx, engine.LeaseConfig{Name: "housekeeping", Holder: h.NodeID}); err != nil {
		return nil, err
	}
	return t, nil
}

// faultInjector returns the injector, or nil when fault injection is off.
func (t *troubleshooting) faultInjector() *faults.Injector {
	if t == nil {
		return nil
	}
	return t.faults
}

// throttled counts a telemetry message refused with 429001.
func (t *troubleshooting) throttled() { t.metrics.TelemetryThrottled.Inc() }

// start runs the background work: this node's metrics history, and the cluster-wide jobs while
// this node holds the lease.
func (t *troubleshooting) start() {
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		t.recorder.Run(ctx)
	}()
	go func() {
		defer t.wg.Done()
		t.lease.Run(ctx, func(ctx context.Context) {
			t.h.log.Info("this node runs the hub's exports, alerts and device events")
			var wg sync.WaitGroup
			for _, job := range t.jobs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					job(ctx)
				}()
			}
			wg.Wait()
		})
	}()
}

// closeStreams ends the admin API's open streams, so that a shutdown need not wait for them.
func (t *troubleshooting) closeStreams() {
	if t != nil && t.stopStreams != nil {
		t.stopStreams()
	}
}

// close stops the background work and waits for it.
func (t *troubleshooting) close() {
	if t == nil {
		return
	}
	t.closeStreams()
	if t.cancel != nil {
		t.cancel()
	}
	t.wg.Wait()
	t.faults.Close()
}

// query runs KQL over AzureDiagnostics and AzureMetrics.
func (t *troubleshooting) query(ctx context.Context, q string, opts kql.Options) (*kql.Result, error) {
	return diag.Query(ctx, t.h.Engine, q, opts, t.history)
}

// mount adds the admin endpoints to the admin listener's mux.
func (t *troubleshooting) mount(mux *http.ServeMux) {
	if t == nil {
		return
	}
	a := httpapi.NewAdmin(httpapi.AdminConfig{
		Policies: t.h.Policies,
		Token:    t.h.Config.Trouble.AdminToken,
		Query:    t.query,
		Tail: func(ctx context.Context, cats, levels []string, fn func(diag.Wire) bool) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stop := context.AfterFunc(t.streams, cancel)
			defer stop()
			return diag.Tail(ctx, t.h.Engine, cats, levels, fn)
		},
		Metrics:      t.h.Metrics,
		QueryTimeout: t.h.Config.Trouble.QueryTimeout,
		Extra:        t.extra,
		Logger:       t.h.log,
	})
	for _, p := range a.Patterns() {
		mux.Handle(p, a)
	}
}

// Health is the node's Resource Health view: Available, Degraded, Unavailable or Unknown, with
// the reasons.
type Health struct {
	AvailabilityState string         `json:"availabilityState"`
	Summary           string         `json:"summary"`
	Reasons           []string       `json:"reasons,omitempty"`
	Node              string         `json:"node"`
	Checks            map[string]any `json:"checks"`
	OccurredTime      string         `json:"occurredTime"`
	// Status is "ok" unless the node cannot serve (Unavailable, Unknown).
	Status string `json:"status"`
}

// health checks what the hub needs to serve: the engine answers promptly, records are being
// stored, and whether faults are being injected on purpose.
func (t *troubleshooting) health(ctx context.Context) (Health, int) {
	h := Health{Node: t.h.NodeID, Checks: map[string]any{}, OccurredTime: time.Now().UTC().Format(time.RFC3339)}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err := t.h.Policies.Policies(ctx)
	lat := time.Since(start)
	h.Checks["engine"] = map[string]any{"ok": err == nil, "latencyMs": lat.Milliseconds()}
	switch {
	case err != nil && ctx.Err() != nil:
		h.AvailabilityState = "Unknown"
		h.Reasons = append(h.Reasons, "the storage engine did not answer within 3 s")
	case err != nil:
		h.AvailabilityState = "Unavailable"
		h.Reasons = append(h.Reasons, "the storage engine is unreachable: "+err.Error())
	default:
		h.AvailabilityState = "Available"
		if lat > time.Second {
			h.AvailabilityState = "Degraded"
			h.Reasons = append(h.Reasons, "the storage engine answers slowly ("+lat.Round(time.Millisecond).String()+")")
		}
	}
	if t.h.Diag != nil {
		dropped := t.h.Diag.Dropped()
		h.Checks["diagnostics"] = map[string]any{"recordsDropped": dropped}
		if dropped > 0 && h.AvailabilityState == "Available" {
			h.AvailabilityState = "Degraded"
			h.Reasons = append(h.Reasons, "diagnostic records were dropped since start")
		}
	}
	if t.faults != nil {
		rules, _ := t.faults.List(ctx)
		h.Checks["faultInjection"] = map[string]any{"rules": len(rules)}
		if len(rules) > 0 && h.AvailabilityState == "Available" {
			h.AvailabilityState = "Degraded"
			h.Reasons = append(h.Reasons, "fault injection rules are active (roost faults list)")
		}
	}
	if t.lease != nil {
		holder, _ := t.lease.Holder(ctx)
		h.Checks["housekeeping"] = map[string]any{"node": holder}
	}
	status := http.StatusOK
	h.Status = "ok"
	switch h.AvailabilityState {
	case "Available":
		h.Summary = "The hub is running normally."
	case "Degraded":
		h.Summary = "The hub is running, with reduced reliability or performance."
	case "Unavailable":
		h.Summary = "The hub cannot serve requests."
		status, h.Status = http.StatusServiceUnavailable, "unavailable"
	default:
		h.Summary = "The hub's state is unknown: a check got no answer."
		status, h.Status = http.StatusServiceUnavailable, "unknown"
	}
	return h, status
}

// healthz serves GET /healthz.
func (t *troubleshooting) healthz(w http.ResponseWriter, r *http.Request) {
	h, status := t.health(r.Context())
	httpapi.WriteAdminJSON(w, status, h)
}

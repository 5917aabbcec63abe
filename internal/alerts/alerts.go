// Package alerts evaluates alert rules over the hub's metrics and diagnostic logs, as Azure
// Monitor's metric and log alerts do for an IoT hub: a metric aggregated over a window compared
// with a threshold (connectedDeviceCount average below 10 over 5 minutes), or a KQL query whose
// row count crosses a threshold (any Connections error in the last 5 minutes). A rule fires when
// its condition starts to hold and resolves when it stops; both are recorded in the engine and
// sent to the rule's webhooks, with retries, in Azure Monitor's common alert schema.
//
//	m, _ := alerts.Open(ctx, eng, alerts.Config{Query: hubQuery, ResourceID: id})
//	_, _ = m.Put(ctx, alerts.Rule{Name: "devices-dropped", Metric: "connectedDeviceCount",
//		Aggregation: "Average", Operator: "LessThan", Threshold: 10, Window: alerts.Minutes(5)})
//	go m.Run(ctx) // on one node: under an engine lease
//
// Evaluate does one round at a given time, so tests drive rules with a fake clock.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/kql"
	"github.com/roost-iot/roost/internal/metrics"
	"github.com/roost-iot/roost/internal/webhook"
)

// Duration is a time.Duration written as Go duration text ("5m") in JSON and YAML.
type Duration time.Duration

// Minutes returns n minutes as a Duration.
func Minutes(n int) Duration { return Duration(time.Duration(n) * time.Minute) }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "5m", "PT5M" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("a duration must be text such as \"5m\" or a number of seconds")
		}
		*d = Duration(time.Duration(secs * float64(time.Second)))
		return nil
	}
	if strings.HasPrefix(s, "P") {
		from, to, err := kql.ParseTimespan(s, time.Unix(0, 0))
		if err != nil {
			return err
		}
		*d = Duration(to.Sub(from))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Rule is an alert rule: a metric rule (Metric set) or a log rule (Query set).
type Rule struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Severity is 0 (critical) to 4 (verbose), as in Azure Monitor. Zero value means 3.
	Severity *int `json:"severity,omitempty"`
	// Metric is an IoT Hub metric name (connectedDeviceCount, d2c.telemetry.ingress.sendThrottle).
	Metric string `json:"metric,omitempty"`
	// Aggregation of the metric over the window: Total, Count, Average, Minimum or Maximum.
	// Empty means the metric's default.
	Aggregation string `json:"aggregation,omitempty"`
	// Query is KQL over AzureDiagnostics and AzureMetrics; its row count is compared.
	Query string `json:"query,omitempty"`
	// Operator compares the value with Threshold: GreaterThan, GreaterThanOrEqual, LessThan,
	// LessThanOrEqual, Equals, NotEquals (or >, >=, <, <=, ==, !=).
	Operator  string  `json:"operator"`
	Threshold float64 `json:"threshold"`
	// Window is the time the value covers. Zero means 5 minutes.
	Window Duration `json:"window,omitempty"`
	// Every is how often the rule is evaluated. Zero means 1 minute.
	Every Duration `json:"every,omitempty"`
	// Webhooks receive the Fired and Resolved notifications.
	Webhooks []string `json:"webhooks,omitempty"`
	Disabled bool     `json:"disabled,omitempty"`
}

var operators = map[string]string{
	"greaterthan": ">", ">": ">", "greaterthanorequal": ">=", ">=": ">=",
	"lessthan": "<", "<": "<", "lessthanorequal": "<=", "<=": "<=",
	"equals": "==", "==": "==", "=": "==", "notequals": "!=", "!=": "!=",
}

var aggregations = map[string]string{
	"total": "sum(Total)", "count": "sum(Count)", "average": "avg(Average)", "avg": "avg(Average)",
	"minimum": "min(Minimum)", "min": "min(Minimum)", "maximum": "max(Maximum)", "max": "max(Maximum)",
}

// Normalize checks a rule and fills its defaults.
func Normalize(r *Rule) error {
	r.Name = strings.TrimSpace(r.Name)
	if r.Name == "" || len(r.Name) > 128 || strings.ContainsAny(r.Name, "/\\ \t\n") {
		return errors.New("a rule needs a name of 1 to 128 characters without spaces or slashes")
	}
	if (r.Metric == "") == (r.Query == "") {
		return errors.New("a rule needs either a metric or a query")
	}
	if r.Metric != "" {
		d, ok := metrics.LookupDefinition(r.Metric)
		if !ok {
			return fmt.Errorf("%q is not an IoT Hub metric (see roost metrics)", r.Metric)
		}
		if r.Aggregation == "" {
			r.Aggregation = d.Aggregation
		}
		if _, ok := aggregations[strings.ToLower(r.Aggregation)]; !ok {
			return fmt.Errorf("aggregation %q is not Total, Count, Average, Minimum or Maximum", r.Aggregation)
		}
	}
	if r.Query != "" {
		if _, err := kql.Parse(r.Query); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	op, ok := operators[strings.ToLower(strings.TrimSpace(r.Operator))]
	if !ok {
		return fmt.Errorf("operator %q is not GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual, Equals or NotEquals", r.Operator)
	}
	r.Operator = op
	if r.Window == 0 {
		r.Window = Minutes(5)
	}
	if r.Every == 0 {
		r.Every = Minutes(1)
	}
	if time.Duration(r.Window) < time.Minute || time.Duration(r.Window) > 31*24*time.Hour {
		return errors.New("window must be between 1m and 31 days")
	}
	if time.Duration(r.Every) < 10*time.Second {
		return errors.New("every must be at least 10s")
	}
	if r.Severity == nil {
		s := 3
		r.Severity = &s
	}
	if *r.Severity < 0 || *r.Severity > 4 {
		return errors.New("severity is 0 (critical) to 4 (verbose)")
	}
	for _, u := range r.Webhooks {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("webhook %q is not an http(s) URL", u)
		}
	}
	return nil
}

// State is a rule's current state.
type State struct {
	Rule string `json:"rule"`
	// Condition is Fired while the rule's condition holds, else Resolved (or "" before the first
	// evaluation).
	Condition     string    `json:"condition"`
	Value         *float64  `json:"value,omitempty"`
	Since         time.Time `json:"since,omitzero"`
	LastEvaluated time.Time `json:"lastEvaluated,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
}

// Notification is one Fired or Resolved change: what the history keeps and webhooks receive
// (inside Azure Monitor's common alert schema).
type Notification struct {
	Rule        string    `json:"alertRule"`
	Description string    `json:"description,omitempty"`
	Severity    string    `json:"severity"`
	Condition   string    `json:"monitorCondition"`
	SignalType  string    `json:"signalType"`
	Value       float64   `json:"metricValue"`
	Operator    string    `json:"operator"`
	Threshold   float64   `json:"threshold"`
	Window      string    `json:"windowSize"`
	Metric      string    `json:"metricName,omitempty"`
	Query       string    `json:"searchQuery,omitempty"`
	Time        time.Time `json:"time"`
	Target      string    `json:"alertTargetId"`
}

// Config shapes a [Manager].
type Config struct {
	// Query runs KQL over the hub's tables (AzureDiagnostics, AzureMetrics).
	Query func(ctx context.Context, q string, opts kql.Options) (*kql.Result, error)
	// ResourceID is the hub's ARM id, the alerts' target.
	ResourceID string
	// Client delivers webhooks. Nil means a client of its own.
	Client *http.Client
	// Attempts is how many times a notification is tried. Zero means 6.
	Attempts int
	// RetryBase is the first retry's wait, doubling after. Zero means 1 s.
	RetryBase time.Duration
	// OnDelivery is told of each notification's outcome ("delivered", "failed").
	OnDelivery func(result string)
	// OnFiring is told how many rules fire after each round.
	OnFiring func(n int)
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Stream and subjects of the alert history.
const (
	HistoryStream  = "ALERTS"
	historySubject = "alerts.history"
)

// Manager stores rules and their state in the engine and evaluates them.
type Manager struct {
	cfg    Config
	eng    *engine.Engine
	rules  *engine.Bucket
	states *engine.Bucket
	log    *slog.Logger
	sends  sync.WaitGroup
}

// Open opens the rules, states and history.
func Open(ctx context.Context, eng *engine.Engine, cfg Config) (*Manager, error) {
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 6
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rules, err := eng.KV(ctx, engine.BucketConfig{Name: "alert-rules", Description: "alert rules"})
	if err != nil {
		return nil, err
	}
	states, err := eng.KV(ctx, engine.BucketConfig{Name: "alert-state", Description: "alert rules' state"})
	if err != nil {
		return nil, err
	}
	if _, err := eng.Stream(ctx, engine.StreamConfig{Name: HistoryStream, Subjects: []string{historySubject}, MaxAge: 90 * 24 * time.Hour}); err != nil {
		return nil, err
	}
	return &Manager{cfg: cfg, eng: eng, rules: rules, states: states, log: log.With("component", "alerts")}, nil
}

func key(name string) string { return "r." + engine.EncodeToken(name) }

// Put stores a rule (replacing one of the same name).
func (m *Manager) Put(ctx context.Context, r Rule) (Rule, error) {
	if err := Normalize(&r); err != nil {
		return Rule{}, err
	}
	b, _ := json.Marshal(r)
	if _, err := m.rules.Put(ctx, key(r.Name), b); err != nil {
		return Rule{}, err
	}
	return r, nil
}

// Get returns a rule.
func (m *Manager) Get(ctx context.Context, name string) (Rule, bool, error) {
	var r Rule
	ok, err := m.rules.GetJSON(ctx, key(name), &r)
	return r, ok, err
}

// Delete removes a rule and its state; false if there was none.
func (m *Manager) Delete(ctx context.Context, name string) (bool, error) {
	if _, ok, err := m.Get(ctx, name); err != nil || !ok {
		return false, err
	}
	if err := m.rules.Delete(ctx, key(name), 0); err != nil {
		return false, err
	}
	_ = m.states.Delete(ctx, key(name), 0)
	return true, nil
}

// List returns the rules by name.
func (m *Manager) List(ctx context.Context) ([]Rule, error) {
	var out []Rule
	err := m.rules.Scan(ctx, []string{">"}, func(e engine.Entry) bool {
		var r Rule
		if json.Unmarshal(e.Value, &r) == nil {
			out = append(out, r)
		}
		return true
	})
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// States returns every rule's state.
func (m *Manager) States(ctx context.Context) ([]State, error) {
	rules, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(rules))
	for _, r := range rules {
		st, _, err := m.state(ctx, r.Name)
		if err != nil {
			return nil, err
		}
		st.Rule = r.Name
		out = append(out, st)
	}
	return out, nil
}

func (m *Manager) state(ctx context.Context, name string) (State, uint64, error) {
	ent, err := m.states.Get(ctx, key(name))
	if errors.Is(err, engine.ErrNotFound) {
		return State{Rule: name}, 0, nil
	}
	if err != nil {
		return State{}, 0, err
	}
	var st State
	return st, ent.Revision, json.Unmarshal(ent.Value, &st)
}

// History returns the notifications since a time, oldest first.
func (m *Manager) History(ctx context.Context, since time.Time) ([]Notification, error) {
	st, err := m.eng.OpenStream(ctx, HistoryStream)
	if err != nil {
		return nil, err
	}
	var out []Notification
	err = st.Scan(ctx, engine.ScanConfig{Since: since}, func(msg engine.Msg) bool {
		var n Notification
		if json.Unmarshal(msg.Data, &n) == nil {
			out = append(out, n)
		}
		return true
	})
	return out, err
}

// Run evaluates the rules every 10 seconds until ctx ends (each rule at its own pace).
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		m.Evaluate(ctx, m.cfg.Now())
		select {
		case <-ctx.Done():
			m.sends.Wait()
			return
		case <-t.C:
		}
	}
}

// Evaluate evaluates the rules due at now and sends the notifications of those that fired or
// resolved. Notifications are delivered in the background; Wait waits for them.
func (m *Manager) Evaluate(ctx context.Context, now time.Time) {
	rules, err := m.List(ctx)
	if err != nil {
		m.log.Warn("read alert rules", "err", err)
		return
	}
	firing := 0
	for _, r := range rules {
		st, rev, err := m.state(ctx, r.Name)
		if err != nil {
			continue
		}
		if r.Disabled {
			continue
		}
		if !st.LastEvaluated.IsZero() && now.Sub(st.LastEvaluated) < time.Duration(r.Every)-time.Second {
			if st.Condition == "Fired" {
				firing++
			}
			continue
		}
		st.Rule = r.Name
		st.LastEvaluated = now
		value, ok, err := m.value(ctx, r, now)
		switch {
		case err != nil:
			st.LastError = err.Error()
		case !ok:
			st.LastError = "no data in the window"
		default:
			st.LastError = ""
			st.Value = &value
			holds := compareOp(value, r.Operator, r.Threshold)
			switch {
			case holds && st.Condition != "Fired":
				st.Condition, st.Since = "Fired", now
				m.notify(ctx, r, st, value, now)
			case !holds && st.Condition == "Fired":
				st.Condition, st.Since = "Resolved", now
				m.notify(ctx, r, st, value, now)
			case !holds && st.Condition == "":
				st.Condition, st.Since = "Resolved", now
			}
		}
		if st.Condition == "Fired" {
			firing++
		}
		b, _ := json.Marshal(st)
		if rev == 0 {
			_, err = m.states.Create(ctx, key(r.Name), b)
		} else {
			_, err = m.states.Update(ctx, key(r.Name), b, rev)
		}
		if err != nil {
			m.log.Warn("store alert state", "rule", r.Name, "err", err)
		}
	}
	if m.cfg.OnFiring != nil {
		m.cfg.OnFiring(firing)
	}
}

// Wait waits for notifications in flight.
func (m *Manager) Wait() { m.sends.Wait() }

func compareOp(v float64, op string, t float64) bool {
	switch op {
	case ">":
		return v > t
	case ">=":
		return v >= t
	case "<":
		return v < t
	case "<=":
		return v <= t
	case "==":
		return v == t
	}
	return v != t
}

// value computes a rule's value over its window ending at now; ok is false without data.
func (m *Manager) value(ctx context.Context, r Rule, now time.Time) (float64, bool, error) {
	opts := kql.Options{Now: now, From: now.Add(-time.Duration(r.Window)), To: now, Timeout: 30 * time.Second}
	if r.Query != "" {
		opts.MaxRows = 1 << 20
		res, err := m.cfg.Query(ctx, r.Query, opts)
		if err != nil {
			return 0, false, err
		}
		return float64(len(res.Rows)), true, nil
	}
	q := "AzureMetrics | where MetricName == " + strconv.Quote(r.Metric) +
		" | summarize v = " + aggregations[strings.ToLower(r.Aggregation)] + ", n = count()"
	res, err := m.cfg.Query(ctx, q, opts)
	if err != nil {
		return 0, false, err
	}
	if len(res.Rows) == 0 || res.Rows[0][1].I == 0 {
		return 0, false, nil
	}
	v := res.Rows[0][0]
	switch v.K {
	case kql.Real:
		return v.F, true, nil
	case kql.Long, kql.Int:
		return float64(v.I), true, nil
	}
	return 0, false, nil
}

// notify records a change in the history and sends it to the rule's webhooks.
func (m *Manager) notify(ctx context.Context, r Rule, st State, value float64, now time.Time) {
	n := Notification{
		Rule: r.Name, Description: r.Description, Severity: "Sev" + strconv.Itoa(*r.Severity), Condition: st.Condition,
		Value: value, Operator: r.Operator, Threshold: r.Threshold, Window: time.Duration(r.Window).String(),
		Metric: r.Metric, Query: r.Query, Time: now.UTC(), Target: m.cfg.ResourceID, SignalType: "Metric",
	}
	if r.Query != "" {
		n.SignalType = "Log"
	}
	b, _ := json.Marshal(n)
	if _, err := m.eng.Publish(ctx, historySubject, b, nil); err != nil {
		m.log.Warn("record alert", "rule", r.Name, "err", err)
	}
	m.log.Info("alert "+strings.ToLower(st.Condition), "rule", r.Name, "value", value, "operator", r.Operator, "threshold", r.Threshold)
	payload := commonSchema(n)
	for _, url := range r.Webhooks {
		m.sends.Add(1)
		go func() {
			defer m.sends.Done()
			m.deliver(url, payload)
		}()
	}
}

// deliver posts one notification, retrying with back-off.
func (m *Manager) deliver(url string, body []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := webhook.Post(ctx, m.cfg.Client, url, body, webhook.Options{})
		if err == nil {
			if m.cfg.OnDelivery != nil {
				m.cfg.OnDelivery("delivered")
			}
			return
		}
		if errors.Is(err, webhook.ErrPermanent) || attempt >= m.cfg.Attempts {
			m.log.Warn("alert webhook failed", "url", webhook.Redact(url), "attempts", attempt, "err", err)
			if m.cfg.OnDelivery != nil {
				m.cfg.OnDelivery("failed")
			}
			return
		}
		t := time.NewTimer(webhook.Backoff(attempt, m.cfg.RetryBase, time.Minute))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// commonSchema wraps a notification in Azure Monitor's common alert schema.
func commonSchema(n Notification) []byte {
	ess := map[string]any{
		"alertRule": n.Rule, "severity": n.Severity, "signalType": n.SignalType, "monitorCondition": n.Condition,
		"monitoringService": "Roost", "alertTargetIDs": []string{n.Target}, "description": n.Description,
	}
	if n.Condition == "Fired" {
		ess["firedDateTime"] = n.Time.Format(time.RFC3339Nano)
	} else {
		ess["resolvedDateTime"] = n.Time.Format(time.RFC3339Nano)
	}
	ctxt := map[string]any{"operator": n.Operator, "threshold": n.Threshold, "windowSize": n.Window, "metricValue": n.Value}
	if n.Metric != "" {
		ctxt["metricName"] = n.Metric
	}
	if n.Query != "" {
		ctxt["searchQuery"] = n.Query
		ctxt["resultCount"] = n.Value
	}
	b, _ := json.Marshal(map[string]any{
		"schemaId": "azureMonitorCommonAlertSchema",
		"data":     map[string]any{"essentials": ess, "alertContext": ctxt},
	})
	return b
}

// DecodeRules reads a list of rules from JSON or YAML (a list, or {"rules": [...]}).
func DecodeRules(data []byte, yamlToJSON func([]byte) ([]byte, error)) ([]Rule, error) {
	js := data
	if yamlToJSON != nil {
		var err error
		if js, err = yamlToJSON(data); err != nil {
			return nil, err
		}
	}
	var list []Rule
	if err := json.Unmarshal(js, &list); err != nil {
		var wrapped struct {
			Rules []Rule `json:"rules"`
		}
		if err2 := json.Unmarshal(js, &wrapped); err2 != nil {
			return nil, fmt.Errorf("alert rules: %v", err)
		}
		list = wrapped.Rules
	}
	for i := range list {
		if err := Normalize(&list[i]); err != nil {
			return nil, fmt.Errorf("alert rule %d (%s): %w", i+1, list[i].Name, err)
		}
	}
	return list, nil
}

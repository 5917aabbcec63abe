package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/roost-iot/roost/internal/engine"
	"github.com/roost-iot/roost/internal/kql"
)

// Engine names of the metrics history.
const (
	HistoryStream  = "METRICS"
	historySubject = "metrics."
)

// Point is one node's aggregate of one metric over one minute.
type Point struct {
	Total float64 `json:"t"`
	Count float64 `json:"c"`
	Min   float64 `json:"mn"`
	Max   float64 `json:"mx"`
}

// minuteRecord is what a node stores each minute.
type minuteRecord struct {
	Minute int64            `json:"m"` // Unix seconds of the minute's start
	Node   string           `json:"n"`
	Points map[string]Point `json:"p"` // by IoT Hub metric name
}

// HistoryConfig shapes a [Recorder].
type HistoryConfig struct {
	// Node names this node's records.
	Node string
	// Retention is how long minutes are kept. Zero means 30 days.
	Retention time.Duration
	// Sample is how often snapshot metrics are sampled within a minute. Zero means 10 s.
	Sample time.Duration
	// Now returns the current time. Nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Recorder turns the node's Prometheus metrics into one-minute aggregates in the engine (the
// AzureMetrics table): per metric the minute's Total, Count, Minimum, Maximum. Every node
// records its own metrics; [History] adds the nodes up when it is read.
type Recorder struct {
	cfg HistoryConfig
	m   *Metrics
	eng *engine.Engine
	log *slog.Logger

	mu       sync.Mutex
	last     map[string]cumulative // counters and sizes at the last minute boundary
	samples  map[string]*Point     // snapshot samples of the current minute
	minute   time.Time
	haveBase bool
}

type cumulative struct{ sum, count float64 }

// NewRecorder opens the history stream.
func NewRecorder(ctx context.Context, eng *engine.Engine, m *Metrics, cfg HistoryConfig) (*Recorder, error) {
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := eng.Stream(ctx, engine.StreamConfig{Name: HistoryStream, Subjects: []string{historySubject + ">"}, MaxAge: cfg.Retention}); err != nil {
		return nil, err
	}
	return &Recorder{cfg: cfg, m: m, eng: eng, log: log.With("component", "metrics-history"), samples: map[string]*Point{}}, nil
}

// Run samples and records until ctx ends, writing each finished minute.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Sample)
	defer t.Stop()
	r.Tick(ctx, r.cfg.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Tick(ctx, r.cfg.Now())
		}
	}
}

// Tick samples the metrics at now and, when a minute has ended since the last tick, stores that
// minute. Run calls it; tests call it with their own clock.
func (r *Recorder) Tick(ctx context.Context, now time.Time) {
	fams, err := r.m.Registry.Gather()
	if err != nil {
		r.log.Warn("gather metrics", "err", err)
	}
	vals := extract(fams)
	minute := now.UTC().Truncate(time.Minute)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.haveBase {
		r.last = cumulatives(vals)
		r.minute, r.haveBase = minute, true
		r.sample(vals)
		return
	}
	if minute.After(r.minute) {
		rec := minuteRecord{Minute: r.minute.Unix(), Node: r.cfg.Node, Points: map[string]Point{}}
		cur := cumulatives(vals)
		for _, d := range IoTHub {
			switch d.Kind {
			case KindCounter, KindSize:
				c, ok := cur[d.Name]
				if !ok {
					continue
				}
				prev := r.last[d.Name]
				dsum, dcount := c.sum-prev.sum, c.count-prev.count
				if dsum < 0 || dcount < 0 { // the process restarted its counters
					dsum, dcount = c.sum, c.count
				}
				p := Point{Total: dsum, Count: dcount}
				if d.Kind == KindCounter {
					p.Count = dsum
					if dsum > 0 {
						p.Min, p.Max = 1, 1
					}
				} else if dcount > 0 {
					p.Min, p.Max = dsum/dcount, dsum/dcount
				}
				rec.Points[d.Name] = p
			case KindSnapshot:
				if s, ok := r.samples[d.Name]; ok && s.Count > 0 {
					rec.Points[d.Name] = *s
				}
			}
		}
		r.last = cur
		r.samples = map[string]*Point{}
		r.minute = minute
		r.store(ctx, rec)
	}
	r.sample(vals)
}

// sample adds the snapshot metrics' current values to the minute.
func (r *Recorder) sample(vals map[string]cumulative) {
	for _, d := range IoTHub {
		if d.Kind != KindSnapshot {
			continue
		}
		v, ok := vals[d.Name]
		if !ok {
			continue
		}
		s := r.samples[d.Name]
		if s == nil {
			s = &Point{Min: math.Inf(1), Max: math.Inf(-1)}
			r.samples[d.Name] = s
		}
		s.Total += v.sum
		s.Count++
		s.Min = math.Min(s.Min, v.sum)
		s.Max = math.Max(s.Max, v.sum)
	}
}

func (r *Recorder) store(ctx context.Context, rec minuteRecord) {
	b, _ := json.Marshal(rec)
	id := "m-" + rec.Node + "-" + time.Unix(rec.Minute, 0).UTC().Format("200601021504")
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.eng.PublishBatch(sctx, []engine.OutMsg{{Subject: historySubject + engine.EncodeToken(rec.Node), ID: id, Data: b}}); err != nil {
		r.log.Warn("metrics minute not stored", "err", err)
	}
}

func cumulatives(vals map[string]cumulative) map[string]cumulative { return vals }

// extract reads the IoT Hub metrics out of gathered families: counters and gauges as their
// value (summed over labels), histograms as sum and count.
func extract(fams []*dto.MetricFamily) map[string]cumulative {
	byProm := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byProm[f.GetName()] = f
	}
	out := map[string]cumulative{}
	for _, d := range IoTHub {
		f := byProm[d.Prom]
		if f == nil {
			continue
		}
		var c cumulative
		for _, m := range f.GetMetric() {
			switch {
			case m.Counter != nil:
				c.sum += m.GetCounter().GetValue()
				c.count += m.GetCounter().GetValue()
			case m.Gauge != nil:
				c.sum += m.GetGauge().GetValue()
				c.count++
			case m.Histogram != nil:
				c.sum += m.GetHistogram().GetSampleSum()
				c.count += float64(m.GetHistogram().GetSampleCount())
			case m.Summary != nil:
				c.sum += m.GetSummary().GetSampleSum()
				c.count += float64(m.GetSummary().GetSampleCount())
			case m.Untyped != nil:
				c.sum += m.GetUntyped().GetValue()
				c.count++
			}
		}
		out[d.Name] = c
	}
	return out
}

// Current is a metric's value on this node now.
type Current struct {
	Name    string  `json:"name"`
	Display string  `json:"displayName"`
	Unit    string  `json:"unit"`
	Prom    string  `json:"prometheusName"`
	Value   float64 `json:"value"`
	// Count is the number of observations for sizes and latencies.
	Count float64 `json:"count,omitempty"`
}

// Snapshot returns the IoT Hub metrics this node has registered, with their current values
// (counters since the node started).
func (m *Metrics) Snapshot() []Current {
	fams, _ := m.Registry.Gather()
	vals := extract(fams)
	var out []Current
	for _, d := range IoTHub {
		v, ok := vals[d.Name]
		if !ok {
			continue
		}
		c := Current{Name: d.Name, Display: d.Display, Unit: d.Unit, Prom: d.Prom, Value: v.sum}
		if d.Kind == KindSize {
			c.Count = v.count
		}
		out = append(out, c)
	}
	return out
}

// History is the AzureMetrics table: one row per metric and minute, the nodes' records added up
// (maximum for hub-wide values such as totalDeviceCount).
type History struct {
	eng *engine.Engine
	// ResourceID is the hub's ARM id, for the Resource columns.
	ResourceID string
}

var _ kql.Table = (*History)(nil)

// NewHistory returns the AzureMetrics table.
func NewHistory(eng *engine.Engine, resourceID string) *History {
	return &History{eng: eng, ResourceID: resourceID}
}

var historyColumns = []kql.Column{
	{Name: "TimeGenerated", Type: kql.DateTime},
	{Name: "MetricName", Type: kql.String},
	{Name: "Total", Type: kql.Real},
	{Name: "Count", Type: kql.Real},
	{Name: "Minimum", Type: kql.Real},
	{Name: "Maximum", Type: kql.Real},
	{Name: "Average", Type: kql.Real},
	{Name: "TimeGrain", Type: kql.String},
	{Name: "UnitName", Type: kql.String},
	{Name: "Resource", Type: kql.String},
	{Name: "ResourceGroup", Type: kql.String},
	{Name: "SubscriptionId", Type: kql.String},
	{Name: "ResourceProvider", Type: kql.String},
	{Name: "ResourceId", Type: kql.String},
	{Name: "_ResourceId", Type: kql.String},
	{Name: "Type", Type: kql.String},
}

// Name implements [kql.Table].
func (h *History) Name() string { return "AzureMetrics" }

// Columns implements [kql.Table].
func (h *History) Columns() []kql.Column { return historyColumns }

// Scan implements [kql.Table]: it reads the minutes of the requested range and adds up the
// nodes' records of each minute and metric.
func (h *History) Scan(ctx context.Context, req kql.ScanRequest, fn func(kql.Row) bool) error {
	if t, ok := req.Equals["Type"]; ok && !contains(t, "AzureMetrics") {
		return nil
	}
	st, err := h.eng.OpenStream(ctx, HistoryStream)
	if err != nil {
		return nil // no history yet
	}
	cfg := engine.ScanConfig{}
	if !req.From.IsZero() {
		cfg.Since = req.From.Add(-2 * time.Minute)
	}
	if !req.To.IsZero() {
		cfg.Until = req.To.Add(3 * time.Minute)
	}
	wantMetric := req.Equals["MetricName"]
	type key struct {
		minute int64
		name   string
	}
	type agg struct {
		p   Point
		avg float64 // snapshots: sum of the nodes' averages
	}
	sums := map[key]*agg{}
	err = st.Scan(ctx, cfg, func(m engine.Msg) bool {
		var rec minuteRecord
		if json.Unmarshal(m.Data, &rec) != nil {
			return true
		}
		for name, p := range rec.Points {
			if len(wantMetric) > 0 && !contains(wantMetric, name) {
				continue
			}
			d, _ := LookupDefinition(name)
			k := key{rec.Minute, name}
			a := sums[k]
			nodeAvg := 0.0
			if p.Count > 0 {
				nodeAvg = p.Total / p.Count
			}
			if a == nil {
				sums[k] = &agg{p: p, avg: nodeAvg}
				continue
			}
			switch {
			case d.HubWide:
				if nodeAvg > a.avg {
					a.p, a.avg = p, nodeAvg
				}
			case d.Kind == KindSnapshot:
				// Nodes sample the same minute: the hub's value is the sum of theirs.
				a.avg += nodeAvg
				a.p.Min += p.Min
				a.p.Max += p.Max
				a.p.Count = math.Max(a.p.Count, p.Count)
			default:
				a.p.Total += p.Total
				a.p.Count += p.Count
				a.p.Min = minNonZero(a.p.Min, p.Min)
				a.p.Max = math.Max(a.p.Max, p.Max)
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	keys := make([]key, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].minute != keys[j].minute {
			return keys[i].minute < keys[j].minute
		}
		return keys[i].name < keys[j].name
	})
	parts := strings.Split(strings.Trim(h.ResourceID, "/"), "/")
	seg := func(name string) string {
		for i := 0; i+1 < len(parts); i++ {
			if strings.EqualFold(parts[i], name) {
				return parts[i+1]
			}
		}
		return ""
	}
	res, group, sub := seg("IOTHUBS"), seg("RESOURCEGROUPS"), strings.ToLower(seg("SUBSCRIPTIONS"))
	row := make(kql.Row, len(historyColumns))
	for _, k := range keys {
		a := sums[k]
		d, _ := LookupDefinition(k.name)
		p := a.p
		avg := 0.0
		if d.Kind == KindSnapshot {
			avg = a.avg
			p.Total = avg
		} else if p.Count > 0 {
			avg = p.Total / p.Count
		}
		if d.Kind == KindCounter && p.Total > 0 {
			avg = 1
		}
		row[0] = kql.TimeValue(time.Unix(k.minute, 0))
		row[1] = kql.StringValue(k.name)
		row[2] = kql.RealValue(p.Total)
		row[3] = kql.RealValue(p.Count)
		row[4] = kql.RealValue(p.Min)
		row[5] = kql.RealValue(p.Max)
		row[6] = kql.RealValue(avg)
		row[7] = kql.StringValue("PT1M")
		row[8] = kql.StringValue(d.Unit)
		row[9] = kql.StringValue(res)
		row[10] = kql.StringValue(group)
		row[11] = kql.StringValue(sub)
		row[12] = kql.StringValue("MICROSOFT.DEVICES")
		row[13] = kql.StringValue(h.ResourceID)
		row[14] = kql.StringValue(strings.ToLower(h.ResourceID))
		row[15] = kql.StringValue("AzureMetrics")
		if !fn(row) {
			return nil
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func minNonZero(a, b float64) float64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return math.Min(a, b)
}

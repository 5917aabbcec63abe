package metrics

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
)

// Units of IoT Hub metrics, as the Azure Monitor REST API names them.
const (
	UnitCount        = "Count"
	UnitBytes        = "Bytes"
	UnitMilliseconds = "MilliSeconds"
)

// Kinds of IoT Hub metrics.
const (
	// KindCounter is a single-point metric: the hub counts occurrences; per minute Total is the
	// number of them.
	KindCounter = "counter"
	// KindSnapshot is a running value sampled through the minute (connectedDeviceCount).
	KindSnapshot = "snapshot"
	// KindSize is a distribution of sizes or latencies: per minute Total is their sum, Count
	// how many, Average their mean.
	KindSize = "size"
)

// Definition is one IoT Hub platform metric and the Prometheus metric that carries it.
type Definition struct {
	// Name is the REST name (d2c.telemetry.ingress.success); AzureMetrics' MetricName.
	Name string
	// Display is the portal's name.
	Display string
	Unit    string
	Kind    string
	// Aggregation is the portal's default aggregation: Total, Average, Maximum.
	Aggregation string
	// HubWide is set for snapshot values every node reports for the whole hub (totalDeviceCount);
	// nodes' values are combined with max instead of added.
	HubWide bool
	// Prom is the Prometheus name, as [PromName] derives it.
	Prom string
}

// PromName derives the Prometheus name of an IoT Hub metric: a roost_ prefix, camelCase and dots
// turned into snake_case, then _total for counters, _bytes for sizes in bytes and _milliseconds
// for latencies: d2c.telemetry.ingress.allProtocol is roost_d2c_telemetry_ingress_all_protocol_total,
// c2d.methods.requestSize is roost_c2d_methods_request_size_bytes and connectedDeviceCount is
// roost_connected_device_count.
func PromName(name, unit, kind string) string {
	var sb strings.Builder
	sb.WriteString("roost_")
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case r == '.':
			sb.WriteByte('_')
		case unicode.IsUpper(r):
			prevLower := i > 0 && (unicode.IsLower(rs[i-1]))
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			prevUpper := i > 0 && (unicode.IsUpper(rs[i-1]) || unicode.IsDigit(rs[i-1]))
			if i > 0 && rs[i-1] != '.' && (prevLower || prevUpper && nextLower) {
				sb.WriteByte('_')
			}
			sb.WriteRune(unicode.ToLower(r))
		default:
			sb.WriteRune(r)
		}
	}
	switch {
	case kind == KindCounter && unit == UnitBytes:
		sb.WriteString("_bytes_total")
	case kind == KindCounter:
		sb.WriteString("_total")
	case kind == KindSize && unit == UnitBytes:
		sb.WriteString("_bytes")
	case kind == KindSize && unit == UnitMilliseconds:
		sb.WriteString("_milliseconds")
	}
	return sb.String()
}

func def(name, display, unit, kind, agg string) Definition {
	return Definition{Name: name, Display: display, Unit: unit, Kind: kind, Aggregation: agg, Prom: PromName(name, unit, kind)}
}

// IoTHub is IoT Hub's metric set (spec/diagnostics.md §2) as Roost names it. A metric appears in
// /metrics and in AzureMetrics once the feature behind it registers its Prometheus metric.
var IoTHub = []Definition{
	def("C2DMessagesExpired", "C2D Messages Expired", UnitCount, KindCounter, "Total"),
	def("c2d.commands.egress.complete.success", "C2D message deliveries completed", UnitCount, KindCounter, "Total"),
	def("c2d.commands.egress.abandon.success", "C2D messages abandoned", UnitCount, KindCounter, "Total"),
	def("c2d.commands.egress.reject.success", "C2D messages rejected", UnitCount, KindCounter, "Total"),
	def("c2d.methods.failure", "Failed direct method invocations", UnitCount, KindCounter, "Total"),
	def("c2d.methods.requestSize", "Request size of direct method invocations", UnitBytes, KindSize, "Average"),
	def("c2d.methods.responseSize", "Response size of direct method invocations", UnitBytes, KindSize, "Average"),
	def("c2d.methods.success", "Successful direct method invocations", UnitCount, KindCounter, "Total"),
	def("c2d.twin.read.failure", "Failed twin reads from back end", UnitCount, KindCounter, "Total"),
	def("c2d.twin.read.size", "Response size of twin reads from back end", UnitBytes, KindSize, "Average"),
	def("c2d.twin.read.success", "Successful twin reads from back end", UnitCount, KindCounter, "Total"),
	def("c2d.twin.update.failure", "Failed twin updates from back end", UnitCount, KindCounter, "Total"),
	def("c2d.twin.update.size", "Size of twin updates from back end", UnitBytes, KindSize, "Average"),
	def("c2d.twin.update.success", "Successful twin updates from back end", UnitCount, KindCounter, "Total"),
	def("deviceDataUsage", "Total device data usage", UnitBytes, KindCounter, "Total"),
	def("dailyMessageQuotaUsed", "Total number of messages used", UnitCount, KindSnapshot, "Average"),
	{Name: "totalDeviceCount", Display: "Total devices", Unit: UnitCount, Kind: KindSnapshot, Aggregation: "Average", HubWide: true,
		Prom: PromName("totalDeviceCount", UnitCount, KindSnapshot)},
	def("connectedDeviceCount", "Connected devices", UnitCount, KindSnapshot, "Average"),
	def("d2c.telemetry.ingress.allProtocol", "Telemetry message send attempts", UnitCount, KindCounter, "Total"),
	def("d2c.telemetry.ingress.success", "Telemetry messages sent", UnitCount, KindCounter, "Total"),
	def("d2c.telemetry.ingress.sendThrottle", "Number of throttling errors", UnitCount, KindCounter, "Total"),
	def("d2c.twin.read.failure", "Failed twin reads from devices", UnitCount, KindCounter, "Total"),
	def("d2c.twin.read.size", "Response size of twin reads from devices", UnitBytes, KindSize, "Average"),
	def("d2c.twin.read.success", "Successful twin reads from devices", UnitCount, KindCounter, "Total"),
	def("d2c.twin.update.failure", "Failed twin updates from devices", UnitCount, KindCounter, "Total"),
	def("d2c.twin.update.size", "Size of twin updates from devices", UnitBytes, KindSize, "Average"),
	def("d2c.twin.update.success", "Successful twin updates from devices", UnitCount, KindCounter, "Total"),
	def("EventGridDeliveries", "Event Grid deliveries", UnitCount, KindCounter, "Total"),
	def("EventGridLatency", "Event Grid latency", UnitMilliseconds, KindSize, "Average"),
	def("jobs.completed", "Completed jobs", UnitCount, KindCounter, "Total"),
	def("jobs.failed", "Failed jobs", UnitCount, KindCounter, "Total"),
	def("jobs.cancelJob.success", "Successful job cancellations", UnitCount, KindCounter, "Total"),
	def("jobs.cancelJob.failure", "Failed job cancellations", UnitCount, KindCounter, "Total"),
	def("jobs.createDirectMethodJob.success", "Successful creations of method invocation jobs", UnitCount, KindCounter, "Total"),
	def("jobs.createDirectMethodJob.failure", "Failed creations of method invocation jobs", UnitCount, KindCounter, "Total"),
	def("jobs.createTwinUpdateJob.success", "Successful creations of twin update jobs", UnitCount, KindCounter, "Total"),
	def("jobs.createTwinUpdateJob.failure", "Failed creations of twin update jobs", UnitCount, KindCounter, "Total"),
	def("jobs.listJobs.success", "Successful calls to list jobs", UnitCount, KindCounter, "Total"),
	def("jobs.listJobs.failure", "Failed calls to list jobs", UnitCount, KindCounter, "Total"),
	def("jobs.queryJobs.success", "Successful job queries", UnitCount, KindCounter, "Total"),
	def("jobs.queryJobs.failure", "Failed job queries", UnitCount, KindCounter, "Total"),
	def("RoutingDeliveries", "Routing Deliveries", UnitCount, KindCounter, "Total"),
	def("d2c.endpoints.egress.builtIn.events", "Routing: messages delivered to messages/events", UnitCount, KindCounter, "Total"),
	def("d2c.telemetry.egress.success", "Routing: telemetry messages delivered", UnitCount, KindCounter, "Total"),
	def("d2c.telemetry.egress.dropped", "Routing: telemetry messages dropped", UnitCount, KindCounter, "Total"),
	def("d2c.telemetry.egress.orphaned", "Routing: telemetry messages orphaned", UnitCount, KindCounter, "Total"),
	def("twinQueries.success", "Successful twin queries", UnitCount, KindCounter, "Total"),
	def("twinQueries.failure", "Failed twin queries", UnitCount, KindCounter, "Total"),
	def("twinQueries.resultSize", "Twin queries result size", UnitBytes, KindSize, "Average"),
}

// LookupDefinition returns the definition of an IoT Hub metric by its REST name.
func LookupDefinition(name string) (Definition, bool) {
	for _, d := range IoTHub {
		if d.Name == name {
			return d, true
		}
	}
	return Definition{}, false
}

// Troubleshooting metrics Roost adds (made by newTroubleshootingMetrics).
type Troubleshooting struct {
	// TelemetryThrottled is d2c.telemetry.ingress.sendThrottle: telemetry refused with 429001.
	TelemetryThrottled prometheus.Counter
	// EventGridDeliveries is EventGridDeliveries: device event deliveries by result and type.
	EventGridDeliveries *prometheus.CounterVec
	// EventGridLatency is EventGridLatency: from the event to its delivery, in milliseconds.
	EventGridLatency prometheus.Histogram
	// AlertsFiring counts alert rules firing now.
	AlertsFiring prometheus.Gauge
	// AlertNotifications counts alert webhook deliveries by result.
	AlertNotifications *prometheus.CounterVec
	// FaultsInjected counts failures caused by fault injection, by kind.
	FaultsInjected *prometheus.CounterVec
}

// NewTroubleshooting makes and registers the troubleshooting metrics on the hub's registry.
func (m *Metrics) NewTroubleshooting() *Troubleshooting {
	t := &Troubleshooting{
		TelemetryThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: PromName("d2c.telemetry.ingress.sendThrottle", UnitCount, KindCounter),
			Help: "Telemetry messages refused with 429001 ThrottlingException (IoT Hub d2c.telemetry.ingress.sendThrottle).",
		}),
		EventGridDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: PromName("EventGridDeliveries", UnitCount, KindCounter),
			Help: "Device event deliveries to webhook subscriptions by result and event type (IoT Hub EventGridDeliveries).",
		}, []string{"result", "event_type"}),
		EventGridLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    PromName("EventGridLatency", UnitMilliseconds, KindSize),
			Help:    "Milliseconds from a device event to its delivery (IoT Hub EventGridLatency).",
			Buckets: []float64{5, 25, 100, 250, 1000, 5000, 30000, 120000, 600000},
		}),
		AlertsFiring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_alerts_firing",
			Help: "Alert rules firing now.",
		}),
		AlertNotifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_alert_notifications_total",
			Help: "Alert webhook deliveries by result (delivered, failed).",
		}, []string{"result"}),
		FaultsInjected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_faults_injected_total",
			Help: "Failures caused by fault injection rules, by IoT Hub error code.",
		}, []string{"code"}),
	}
	m.Registry.MustRegister(t.TelemetryThrottled, t.EventGridDeliveries, t.EventGridLatency, t.AlertsFiring,
		t.AlertNotifications, t.FaultsInjected)
	return t
}

// RegisterFuncs adds metrics whose values come from elsewhere: diagnostic records dropped (a
// counter read from the diagnostic writer) and totalDeviceCount (read from the registry at most
// once a minute, in the background, so scrapes stay cheap on big registries).
func (m *Metrics) RegisterFuncs(diagDropped func() int64, totalDevices func(context.Context) (int64, error)) {
	if diagDropped != nil {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "roost_diag_records_dropped_total",
			Help: "Diagnostic records that could not be stored.",
		}, func() float64 { return float64(diagDropped()) }))
	}
	if totalDevices != nil {
		c := &cachedValue{fetch: totalDevices, every: time.Minute}
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: PromName("totalDeviceCount", UnitCount, KindSnapshot),
			Help: "Devices in the identity registry (IoT Hub totalDeviceCount).",
		}, c.get))
	}
}

// cachedValue refreshes a value in the background at most once per period.
type cachedValue struct {
	fetch   func(context.Context) (int64, error)
	every   time.Duration
	mu      sync.Mutex
	val     float64
	at      time.Time
	running bool
}

func (c *cachedValue) get() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= c.every && !c.running {
		c.running = true
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n, err := c.fetch(ctx)
			c.mu.Lock()
			defer c.mu.Unlock()
			c.running = false
			c.at = time.Now()
			if err == nil {
				c.val = float64(n)
			}
		}()
	}
	return c.val
}

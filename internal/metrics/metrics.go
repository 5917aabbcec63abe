// Package metrics holds the hub's Prometheus metrics, named after IoT Hub's platform metrics
// (spec/diagnostics.md section 2) with dots turned into underscores and a roost_ prefix:
// d2c.telemetry.ingress.success becomes roost_d2c_telemetry_ingress_success_total.
//
// Metrics live on a registry that [New] makes, never on the global one, so tests and several
// hubs in one process do not collide. The admin listener serves them at /metrics.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the hub's counters and gauges.
type Metrics struct {
	Registry *prometheus.Registry

	// ConnectedDevices is connectedDeviceCount: device and module connections held by this node.
	ConnectedDevices prometheus.Gauge
	// TelemetryAttempts is d2c.telemetry.ingress.allProtocol: telemetry messages devices tried to send.
	TelemetryAttempts prometheus.Counter
	// TelemetrySuccess is d2c.telemetry.ingress.success: telemetry messages stored.
	TelemetrySuccess prometheus.Counter
	// ConnectionErrors counts failed or dropped device connections by IoT Hub error code.
	ConnectionErrors *prometheus.CounterVec
	// OperationErrors counts failed operations by diagnostic category and error code.
	OperationErrors *prometheus.CounterVec
	// TwinQueriesSuccess is twinQueries.success: query pages answered.
	TwinQueriesSuccess prometheus.Counter
	// TwinQueriesFailure is twinQueries.failure: query requests that failed.
	TwinQueriesFailure prometheus.Counter
	// TwinQueriesResultSize is twinQueries.resultSize: the size of each answered page, in bytes.
	TwinQueriesResultSize prometheus.Histogram

	// Direct methods (c2d.methods.*), made by newMethodMetrics.
	MethodSuccess      prometheus.Counter
	MethodFailure      prometheus.Counter
	MethodRequestSize  prometheus.Histogram
	MethodResponseSize prometheus.Histogram

	// Twins are the twin metrics (d2c.twin.*, c2d.twin.*), made by newTwinMetrics.
	Twins TwinMetrics

	// Uploads are the file upload metrics, made by newUploadMetrics.
	Uploads UploadMetrics

	// C2D are the cloud-to-device metrics, made by newC2DMetrics.
	C2D C2DMetrics

	// Throttle are the throttling and daily quota metrics, made by newThrottleMetrics.
	Throttle ThrottleMetrics

	// Jobs are the jobs v2 metrics (jobs.*), made by newJobMetrics.
	Jobs JobMetrics
}

// New makes the metrics on a fresh registry, with Go runtime and process metrics.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		ConnectedDevices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "roost_connected_device_count",
			Help: "Device and module connections held by this node (IoT Hub connectedDeviceCount).",
		}),
		TelemetryAttempts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roost_d2c_telemetry_ingress_all_protocol_total",
			Help: "Telemetry messages devices tried to send (IoT Hub d2c.telemetry.ingress.allProtocol).",
		}),
		TelemetrySuccess: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "roost_d2c_telemetry_ingress_success_total",
			Help: "Telemetry messages stored durably (IoT Hub d2c.telemetry.ingress.success).",
		}),
		ConnectionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_connection_errors_total",
			Help: "Device connections refused or dropped with an error, by IoT Hub error code.",
		}, []string{"code"}),
		OperationErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "roost_operation_errors_total",
			Help: "Failed operations by diagnostic category and IoT Hub error code.",
		}, []string{"category", "code"}),
	}
	m.TwinQueriesSuccess = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_twin_queries_success_total",
		Help: "Twin query pages answered (IoT Hub twinQueries.success).",
	})
	m.TwinQueriesFailure = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_twin_queries_failure_total",
		Help: "Twin query requests that failed (IoT Hub twinQueries.failure).",
	})
	m.TwinQueriesResultSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "roost_twin_queries_result_size_bytes",
		Help:    "Size of each answered twin query page (IoT Hub twinQueries.resultSize).",
		Buckets: prometheus.ExponentialBuckets(256, 4, 9), // 256 B to 16 MiB
	})
	reg.MustRegister(m.TwinQueriesSuccess, m.TwinQueriesFailure, m.TwinQueriesResultSize)
	reg.MustRegister(m.ConnectedDevices, m.TelemetryAttempts, m.TelemetrySuccess, m.ConnectionErrors, m.OperationErrors,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.newMethodMetrics()
	m.newTwinMetrics()
	m.newUploadMetrics()
	m.newC2DMetrics()
	m.newThrottleMetrics()
	m.newJobMetrics()
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

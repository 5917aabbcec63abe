package metrics

import "github.com/prometheus/client_golang/prometheus"

// methodSizeBuckets are payload sizes in bytes, up to the 128 KB a direct method may carry.
var methodSizeBuckets = []float64{0, 16, 64, 256, 1024, 4096, 16384, 65536, 131072}

// newMethodMetrics makes and registers the direct method metrics: IoT Hub's c2d.methods.success,
// c2d.methods.failure, c2d.methods.requestSize and c2d.methods.responseSize.
func (m *Metrics) newMethodMetrics() {
	m.MethodSuccess = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_methods_success_total",
		Help: "Direct method calls the device answered, whatever its status (IoT Hub c2d.methods.success).",
	})
	m.MethodFailure = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_methods_failure_total",
		Help: "Direct method calls that failed: invalid, device unknown or offline, no answer in time (IoT Hub c2d.methods.failure).",
	})
	m.MethodRequestSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "roost_c2d_methods_request_size_bytes",
		Help:    "Payload size of direct method requests sent to devices (IoT Hub c2d.methods.requestSize).",
		Buckets: methodSizeBuckets,
	})
	m.MethodResponseSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "roost_c2d_methods_response_size_bytes",
		Help:    "Payload size of devices' answers to direct methods (IoT Hub c2d.methods.responseSize).",
		Buckets: methodSizeBuckets,
	})
	m.Registry.MustRegister(m.MethodSuccess, m.MethodFailure, m.MethodRequestSize, m.MethodResponseSize)
}

package metrics

import "github.com/prometheus/client_golang/prometheus"

// TwinMetrics are IoT Hub's twin metrics: reads and updates of twins by devices (d2c.twin.*) and
// by the service (c2d.twin.*), each counted as success or failure, with their sizes.
type TwinMetrics struct {
	// D2CReadSuccess, D2CReadFailure and D2CReadSize are d2c.twin.read.*: twin GETs by devices
	// and the size of the answers, in bytes.
	D2CReadSuccess prometheus.Counter
	D2CReadFailure prometheus.Counter
	D2CReadSize    prometheus.Histogram
	// D2CUpdateSuccess, D2CUpdateFailure and D2CUpdateSize are d2c.twin.update.*: reported
	// property patches by devices and their size, in bytes.
	D2CUpdateSuccess prometheus.Counter
	D2CUpdateFailure prometheus.Counter
	D2CUpdateSize    prometheus.Histogram
	// C2DReadSuccess, C2DReadFailure and C2DReadSize are c2d.twin.read.*: twin reads by the
	// service and the size of the answers, in bytes.
	C2DReadSuccess prometheus.Counter
	C2DReadFailure prometheus.Counter
	C2DReadSize    prometheus.Histogram
	// C2DUpdateSuccess, C2DUpdateFailure and C2DUpdateSize are c2d.twin.update.*: twin patches
	// and replacements by the service and their size, in bytes.
	C2DUpdateSuccess prometheus.Counter
	C2DUpdateFailure prometheus.Counter
	C2DUpdateSize    prometheus.Histogram
}

// twinSizeBuckets are twin document and patch sizes in bytes; a whole twin holds up to 72 KB of
// properties plus its metadata.
var twinSizeBuckets = []float64{64, 256, 1024, 4096, 16384, 32768, 65536, 131072, 262144}

// newTwinMetrics makes and registers the twin metrics.
func (m *Metrics) newTwinMetrics() {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		m.Registry.MustRegister(c)
		return c
	}
	size := func(name, help string) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: twinSizeBuckets})
		m.Registry.MustRegister(h)
		return h
	}
	m.Twins = TwinMetrics{
		D2CReadSuccess:   counter("roost_d2c_twin_read_success_total", "Twin reads by devices that succeeded (IoT Hub d2c.twin.read.success)."),
		D2CReadFailure:   counter("roost_d2c_twin_read_failure_total", "Twin reads by devices that failed (IoT Hub d2c.twin.read.failure)."),
		D2CReadSize:      size("roost_d2c_twin_read_size_bytes", "Size of the twins devices read (IoT Hub d2c.twin.read.size)."),
		D2CUpdateSuccess: counter("roost_d2c_twin_update_success_total", "Reported property updates by devices that succeeded (IoT Hub d2c.twin.update.success)."),
		D2CUpdateFailure: counter("roost_d2c_twin_update_failure_total", "Reported property updates by devices that failed (IoT Hub d2c.twin.update.failure)."),
		D2CUpdateSize:    size("roost_d2c_twin_update_size_bytes", "Size of the reported property patches devices sent (IoT Hub d2c.twin.update.size)."),
		C2DReadSuccess:   counter("roost_c2d_twin_read_success_total", "Twin reads by the service that succeeded (IoT Hub c2d.twin.read.success)."),
		C2DReadFailure:   counter("roost_c2d_twin_read_failure_total", "Twin reads by the service that failed (IoT Hub c2d.twin.read.failure)."),
		C2DReadSize:      size("roost_c2d_twin_read_size_bytes", "Size of the twins the service read (IoT Hub c2d.twin.read.size)."),
		C2DUpdateSuccess: counter("roost_c2d_twin_update_success_total", "Twin updates and replacements by the service that succeeded (IoT Hub c2d.twin.update.success)."),
		C2DUpdateFailure: counter("roost_c2d_twin_update_failure_total", "Twin updates and replacements by the service that failed (IoT Hub c2d.twin.update.failure)."),
		C2DUpdateSize:    size("roost_c2d_twin_update_size_bytes", "Size of the twin patches and replacements the service sent (IoT Hub c2d.twin.update.size)."),
	}
}

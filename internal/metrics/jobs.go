package metrics

import "github.com/prometheus/client_golang/prometheus"

// JobMetrics count jobs v2 (scheduled twin updates and device methods), as IoT Hub's jobs.*
// platform metrics do.
type JobMetrics struct {
	// Completed is jobs.completed: jobs that ended completed.
	Completed prometheus.Counter
	// Failed is jobs.failed: jobs that ended failed.
	Failed prometheus.Counter
	// CancelSuccess and CancelFailure are jobs.cancelJob.success and .failure.
	CancelSuccess, CancelFailure prometheus.Counter
	// CreateMethodSuccess and CreateMethodFailure are jobs.createDirectMethodJob.success and
	// .failure.
	CreateMethodSuccess, CreateMethodFailure prometheus.Counter
	// CreateTwinSuccess and CreateTwinFailure are jobs.createTwinUpdateJob.success and .failure.
	CreateTwinSuccess, CreateTwinFailure prometheus.Counter
	// ListSuccess and ListFailure are jobs.listJobs.success and .failure: calls that list jobs
	// (the import/export job list, GET /jobs).
	ListSuccess, ListFailure prometheus.Counter
	// QuerySuccess and QueryFailure are jobs.queryJobs.success and .failure: job queries
	// (GET /jobs/v2/query).
	QuerySuccess, QueryFailure prometheus.Counter
}

// jobMetricNames are the IoT Hub names of the job counters, in JobMetrics' order.
var jobMetricNames = []struct{ name, help string }{
	{"jobs.completed", "Jobs that completed (IoT Hub jobs.completed)."},
	{"jobs.failed", "Jobs that failed (IoT Hub jobs.failed)."},
	{"jobs.cancelJob.success", "Successful job cancellations (IoT Hub jobs.cancelJob.success)."},
	{"jobs.cancelJob.failure", "Failed job cancellations (IoT Hub jobs.cancelJob.failure)."},
	{"jobs.createDirectMethodJob.success", "Successful creations of method invocation jobs (IoT Hub jobs.createDirectMethodJob.success)."},
	{"jobs.createDirectMethodJob.failure", "Failed creations of method invocation jobs (IoT Hub jobs.createDirectMethodJob.failure)."},
	{"jobs.createTwinUpdateJob.success", "Successful creations of twin update jobs (IoT Hub jobs.createTwinUpdateJob.success)."},
	{"jobs.createTwinUpdateJob.failure", "Failed creations of twin update jobs (IoT Hub jobs.createTwinUpdateJob.failure)."},
	{"jobs.listJobs.success", "Successful calls to list jobs (IoT Hub jobs.listJobs.success)."},
	{"jobs.listJobs.failure", "Failed calls to list jobs (IoT Hub jobs.listJobs.failure)."},
	{"jobs.queryJobs.success", "Successful job queries (IoT Hub jobs.queryJobs.success)."},
	{"jobs.queryJobs.failure", "Failed job queries (IoT Hub jobs.queryJobs.failure)."},
}

// newJobMetrics makes and registers the jobs.* counters.
func (m *Metrics) newJobMetrics() {
	j := &m.Jobs
	fields := []*prometheus.Counter{&j.Completed, &j.Failed, &j.CancelSuccess, &j.CancelFailure,
		&j.CreateMethodSuccess, &j.CreateMethodFailure, &j.CreateTwinSuccess, &j.CreateTwinFailure,
		&j.ListSuccess, &j.ListFailure, &j.QuerySuccess, &j.QueryFailure}
	for i, f := range fields {
		n := jobMetricNames[i]
		*f = prometheus.NewCounter(prometheus.CounterOpts{Name: PromName(n.name, UnitCount, KindCounter), Help: n.help})
		m.Registry.MustRegister(*f)
	}
}

package metrics

import "github.com/prometheus/client_golang/prometheus"

// UploadMetrics count file uploads. IoT Hub publishes no platform metric for them, so the names
// are Roost's own, in the same style.
type UploadMetrics struct {
	// Initiations counts SAS URIs handed out (POST /devices/{id}/files that succeeded).
	Initiations prometheus.Counter
	// Completions counts uploads that ended, by status: success (notified, blob present),
	// failure (reported failed, or blob missing) and expired (SAS ended first).
	Completions *prometheus.CounterVec
	// NotificationsQueued counts file upload notifications queued for the service side.
	NotificationsQueued prometheus.Counter
	// NotificationsCompleted counts notifications the service side completed.
	NotificationsCompleted prometheus.Counter
	// BlobBytesWritten counts bytes the built-in blob store accepted (blocks and whole blobs).
	BlobBytesWritten prometheus.Counter
}

// newUploadMetrics makes and registers the file upload metrics.
func (m *Metrics) newUploadMetrics() {
	u := &m.Uploads
	u.Initiations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_file_upload_initiations_total",
		Help: "File upload SAS URIs handed out to devices.",
	})
	u.Completions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roost_file_upload_completions_total",
		Help: "File uploads that ended, by status (success, failure, expired).",
	}, []string{"status"})
	u.NotificationsQueued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_file_upload_notifications_queued_total",
		Help: "File upload notifications queued for the service side.",
	})
	u.NotificationsCompleted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_file_upload_notifications_completed_total",
		Help: "File upload notifications the service side completed.",
	})
	u.BlobBytesWritten = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_blob_bytes_written_total",
		Help: "Bytes the built-in blob store accepted.",
	})
	m.Registry.MustRegister(u.Initiations, u.Completions, u.NotificationsQueued, u.NotificationsCompleted, u.BlobBytesWritten)
}

package metrics

import "github.com/prometheus/client_golang/prometheus"

// C2DMetrics count cloud-to-device messaging (IoT Hub c2d.commands.egress.*, C2DMessagesExpired).
type C2DMetrics struct {
	// Completed is c2d.commands.egress.complete.success: messages devices completed.
	Completed prometheus.Counter
	// Abandoned is c2d.commands.egress.abandon.success: messages devices abandoned.
	Abandoned prometheus.Counter
	// Rejected is c2d.commands.egress.reject.success: messages devices rejected.
	Rejected prometheus.Counter
	// Expired is C2DMessagesExpired: messages that expired before a device completed them.
	Expired prometheus.Counter
	// DeadLettered counts messages that left a queue without completion, by reason
	// (Expired, DeliveryCountExceeded).
	DeadLettered *prometheus.CounterVec
	// Sent counts messages accepted into device queues.
	Sent prometheus.Counter
	// QueueDepth is the number of messages waiting in all device queues of the hub.
	QueueDepth prometheus.Gauge
}

// newC2DMetrics makes and registers the cloud-to-device metrics.
func (m *Metrics) newC2DMetrics() {
	c := &m.C2D
	c.Completed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_commands_egress_complete_success_total",
		Help: "Cloud-to-device messages devices completed (IoT Hub c2d.commands.egress.complete.success).",
	})
	c.Abandoned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_commands_egress_abandon_success_total",
		Help: "Cloud-to-device messages devices abandoned (IoT Hub c2d.commands.egress.abandon.success).",
	})
	c.Rejected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_commands_egress_reject_success_total",
		Help: "Cloud-to-device messages devices rejected (IoT Hub c2d.commands.egress.reject.success).",
	})
	c.Expired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_messages_expired_total",
		Help: "Cloud-to-device messages that expired before completion (IoT Hub C2DMessagesExpired).",
	})
	c.DeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roost_c2d_messages_dead_lettered_total",
		Help: "Cloud-to-device messages that left their queue without completion, by reason.",
	}, []string{"reason"})
	c.Sent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "roost_c2d_messages_sent_total",
		Help: "Cloud-to-device messages accepted into device queues.",
	})
	c.QueueDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "roost_c2d_queue_depth",
		Help: "Cloud-to-device messages waiting in all device queues of the hub.",
	})
	m.Registry.MustRegister(c.Completed, c.Abandoned, c.Rejected, c.Expired, c.DeadLettered, c.Sent, c.QueueDepth)
}

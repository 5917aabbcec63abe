package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// ThrottleMetrics count what the tier's throttles and daily quota refuse.
type ThrottleMetrics struct {
	// Errors counts operations refused with 429001 ThrottlingException, by operation class
	// (registry, connect, d2c, c2dSend, ...). Telemetry refusals also feed
	// d2c.telemetry.ingress.sendThrottle.
	Errors *prometheus.CounterVec
	// QuotaExceeded counts operations refused with 403002 IotHubQuotaExceeded, by class.
	QuotaExceeded *prometheus.CounterVec

	quotaUsed atomic.Pointer[func() float64]
}

// SetDailyQuotaSource makes dailyMessageQuotaUsed report f: the messages used today.
func (t *ThrottleMetrics) SetDailyQuotaSource(f func() float64) { t.quotaUsed.Store(&f) }

// newThrottleMetrics makes and registers the throttle metrics and dailyMessageQuotaUsed.
func (m *Metrics) newThrottleMetrics() {
	t := &m.Throttle
	t.Errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roost_throttling_errors_total",
		Help: "Operations refused with 429001 ThrottlingException, by operation class.",
	}, []string{"operation"})
	t.QuotaExceeded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "roost_quota_exceeded_errors_total",
		Help: "Operations refused with 403002 IotHubQuotaExceeded (daily message quota), by operation class.",
	}, []string{"operation"})
	used := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: PromName("dailyMessageQuotaUsed", UnitCount, KindSnapshot),
		Help: "Messages used today against the tier's daily quota; resets at 00:00 UTC (IoT Hub dailyMessageQuotaUsed).",
	}, func() float64 {
		if f := t.quotaUsed.Load(); f != nil {
			return (*f)()
		}
		return 0
	})
	m.Registry.MustRegister(t.Errors, t.QuotaExceeded, used)
}

package server

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/outbox"
)

// deliveryMetrics exports the dispatcher's attempts as Prometheus metrics. Labels are destination kind and id
// (service or subscription ids from the directory: no patient data), outcome and status code.
type deliveryMetrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewDeliveryMetrics registers the delivery metrics on reg and returns the Observer to give the dispatcher.
func NewDeliveryMetrics(reg *prometheus.Registry) (outbox.Observer, error) {
	m := &deliveryMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "socialrx_delivery_attempts_total", Help: "Webhook delivery attempts by destination, outcome and HTTP status (0: no response).",
		}, []string{"destination", "outcome", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "socialrx_delivery_latency_seconds", Help: "Webhook delivery attempt latency by destination.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"destination"}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register delivery metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveAttempt implements outbox.Observer.
func (m *deliveryMetrics) ObserveAttempt(r outbox.AttemptReport) {
	dest := r.Destination.String()
	m.attempts.WithLabelValues(dest, string(r.Outcome), strconv.Itoa(r.StatusCode)).Inc()
	if r.Latency > 0 {
		m.latency.WithLabelValues(dest).Observe(r.Latency.Seconds())
	}
}

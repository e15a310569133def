package server

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// DeliveryMetrics exports the dispatcher's attempts as Prometheus metrics. The destination label is a
// community service's directory id ("service:frome-walks": the operator's names, no patient data) or, for
// FHIR Subscriptions, just "subscription": a Subscription's id is a client's, and a series per Subscription
// would let any GP client grow /metrics without bound. With per-subscription labels on
// (SOCIALRX_METRICS_SUBSCRIPTION_IDS), each Subscription has its own series, removed when its owner deletes it
// (Forget).
type DeliveryMetrics struct {
	attempts        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	perSubscription bool

	mu   sync.Mutex
	gone map[string]bool // subscriptions forgotten: later attempts (their queued notifications going dead) are not labelled by id
}

// NewDeliveryMetrics registers the delivery metrics on reg; perSubscription labels Subscription destinations
// with their ids.
func NewDeliveryMetrics(reg *prometheus.Registry, perSubscription bool) (*DeliveryMetrics, error) {
	m := &DeliveryMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "socialrx_delivery_attempts_total", Help: "Webhook delivery attempts by destination, outcome and HTTP status (0: no response).",
		}, []string{"destination", "outcome", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "socialrx_delivery_latency_seconds", Help: "Webhook delivery attempt latency by destination.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"destination"}),
		perSubscription: perSubscription,
		gone:            map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register delivery metrics: %w", err)
		}
	}
	return m, nil
}

// label is the destination label of d.
func (m *DeliveryMetrics) label(d mapping.Destination) string {
	switch d.Kind {
	case mapping.DestinationSubscription:
		m.mu.Lock()
		gone := m.gone[d.ID]
		m.mu.Unlock()
		if !m.perSubscription || gone {
			return string(mapping.DestinationSubscription)
		}
	case mapping.DestinationService:
	}
	return d.String()
}

// ObserveAttempt implements outbox.Observer.
func (m *DeliveryMetrics) ObserveAttempt(r outbox.AttemptReport) {
	dest := m.label(r.Destination)
	m.attempts.WithLabelValues(dest, string(r.Outcome), strconv.Itoa(r.StatusCode)).Inc()
	if r.Latency > 0 {
		m.latency.WithLabelValues(dest).Observe(r.Latency.Seconds())
	}
}

// Forget removes the series of a deleted Subscription (with per-subscription labels; nothing to do without).
func (m *DeliveryMetrics) Forget(subscriptionID string) {
	if !m.perSubscription {
		return
	}
	m.mu.Lock()
	m.gone[subscriptionID] = true
	m.mu.Unlock()
	dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: subscriptionID}.String()
	m.attempts.DeletePartialMatch(prometheus.Labels{"destination": dest})
	m.latency.DeletePartialMatch(prometheus.Labels{"destination": dest})
}

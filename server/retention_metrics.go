package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/outbox"
)

// RetentionMetrics counts what retention scrubbed (socialrx_retention_scrubbed_total, by kind: payload or
// referral).
type RetentionMetrics struct {
	scrubbed *prometheus.CounterVec
}

// NewRetentionMetrics registers the retention counters on reg (both kinds at 0).
func NewRetentionMetrics(reg *prometheus.Registry) (*RetentionMetrics, error) {
	m := &RetentionMetrics{scrubbed: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "socialrx_retention_scrubbed_total",
		Help: "What retention scrubbed: delivered messages' payloads (payload) and closed referrals' personal fields (referral).",
	}, []string{"kind"})}
	if err := reg.Register(m.scrubbed); err != nil {
		return nil, fmt.Errorf("register retention metrics: %w", err)
	}
	m.scrubbed.WithLabelValues("payload")
	m.scrubbed.WithLabelValues("referral")
	return m, nil
}

// Add counts one prune's result.
func (m *RetentionMetrics) Add(r outbox.PruneResult) {
	m.scrubbed.WithLabelValues("payload").Add(float64(r.Payloads))
	m.scrubbed.WithLabelValues("referral").Add(float64(r.Referrals))
}

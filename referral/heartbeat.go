package referral

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/socialrx/socialrx/outbox"
)

// DefaultHeartbeatInterval is how often the HeartbeatSweeper looks for subscriptions due a heartbeat: a
// heartbeat goes out within this much of its time (periods are at least MinHeartbeatPeriod).
const DefaultHeartbeatInterval = 15 * time.Second

// HeartbeatSweeper queues the heartbeats GP systems asked for (the backport-heartbeat-period extension): a
// subscription that has had nothing queued for its period gets a heartbeat notification (SubscriptionStatus
// type heartbeat, with events-since-subscription-start), through the outbox like every notification. It is
// safe to run in several instances: each sweep is one store transaction that re-checks what is due.
type HeartbeatSweeper struct {
	Store    outbox.Store
	Interval time.Duration    // how often Run sweeps (default DefaultHeartbeatInterval)
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
}

// SweepOnce queues every heartbeat due now and returns how many.
func (s HeartbeatSweeper) SweepOnce(ctx context.Context) (int, error) {
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	n, err := s.Store.QueueHeartbeats(ctx, now.UTC(), outbox.RenderHeartbeat)
	if err != nil {
		return 0, fmt.Errorf("heartbeat sweep: %w", err)
	}
	return n, nil
}

// Run sweeps every Interval until ctx is done. Errors are logged, not fatal: the next sweep tries again.
func (s HeartbeatSweeper) Run(ctx context.Context) error {
	return sweepEvery(ctx, s.Interval, DefaultHeartbeatInterval, s.Logger, "heartbeat sweep", s.SweepOnce, func(log *slog.Logger, n int) {
		log.Debug("subscription heartbeats queued", "count", n)
	})
}

package referral

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

// RetentionSweeper applies the retention periods (config.Retention; outbox.Retention): delivered messages'
// payloads scrubbed after DeliveredDays, closed referrals' personal fields erased after ClosedMonths, dead
// messages never. It runs in serve (Run) and from the CLI (socialrx prune: PruneOnce), safely beside serve on
// either backend: each batch is one short store transaction and every row is scrubbed once.
type RetentionSweeper struct {
	Store     outbox.Store
	Retention config.Retention
	Clock     func() time.Time // default time.Now
	Logger    *slog.Logger     // default: discard
	// Scrubbed, if set, is told what each committed prune scrubbed (the metrics).
	Scrubbed func(outbox.PruneResult)
}

// PruneOnce applies the periods at the sweeper's now; dry counts without changing anything. progress, if
// set, is told after each batch what was scrubbed so far.
func (r RetentionSweeper) PruneOnce(ctx context.Context, dry bool, progress func(outbox.PruneResult)) (outbox.PruneResult, error) {
	now := time.Now()
	if r.Clock != nil {
		now = r.Clock()
	}
	now = now.UTC().Truncate(time.Microsecond)
	req := outbox.PruneRequest{DeliveredBefore: r.Retention.DeliveredBefore(now), ClosedBefore: r.Retention.ClosedBefore(now),
		DryRun: dry, Progress: progress}
	if req.DeliveredBefore.IsZero() && req.ClosedBefore.IsZero() {
		return outbox.PruneResult{}, nil
	}
	res, err := r.Store.Prune(ctx, now, req)
	if !dry && r.Scrubbed != nil && res != (outbox.PruneResult{}) {
		r.Scrubbed(res) // what was committed, even when a later batch failed
	}
	if err != nil {
		return res, fmt.Errorf("retention: %w", err)
	}
	return res, nil
}

// Run prunes every Retention.Interval until ctx is done. Errors are logged, not fatal: the next run tries
// again.
func (r RetentionSweeper) Run(ctx context.Context) error {
	return sweepEvery(ctx, r.Retention.Interval, time.Hour, r.Logger, "retention", func(ctx context.Context) (int, error) {
		res, err := r.PruneOnce(ctx, false, nil)
		if res.Payloads+res.Referrals > 0 {
			log := r.Logger
			if log == nil {
				log = slog.New(slog.DiscardHandler)
			}
			log.Info("retention scrubbed", "payloads", res.Payloads, "referrals", res.Referrals)
		}
		return 0, err
	}, func(*slog.Logger, int) {})
}

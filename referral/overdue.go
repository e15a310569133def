package referral

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// OverdueSweeper marks referrals that their community service has not acknowledged within Deadline: the
// Task's businessStatus becomes overdue (a new Task version, so GP polling and Subscriptions see it). It is
// idempotent and safe to run in several instances: each change is a versioned store update that re-checks the
// rule inside its transaction.
type OverdueSweeper struct {
	Store    outbox.Store
	Deadline time.Duration    // how long a referral may stay unacknowledged (SOCIALRX_ACK_DEADLINE)
	Interval time.Duration    // how often Run sweeps (default 1 minute)
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
}

// SweepOnce marks every overdue referral now and returns how many it changed.
func (s OverdueSweeper) SweepOnce(ctx context.Context) (int, error) {
	if s.Deadline <= 0 {
		return 0, fmt.Errorf("%w: overdue deadline must be positive", outbox.ErrBadRequest)
	}
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	changed := 0
	// Only candidates are read (and decoded): still requested, created at or before now-Deadline, with a
	// transport fact MarkOverdue marks. Reading every open referral each minute cost most of the CPU with a
	// large backlog (issue 12).
	q := outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested}, CreatedUntil: now.Add(-s.Deadline),
		BusinessStatuses: mapping.OverdueFrom(), Limit: 500}
	for {
		refs, next, err := s.Store.SearchReferrals(ctx, q)
		if err != nil {
			return changed, fmt.Errorf("overdue sweep: %w", err)
		}
		for _, r := range refs {
			if _, due := mapping.MarkOverdue(r.Referral, now, s.Deadline); !due {
				continue
			}
			_, err := s.Store.UpdateReferral(ctx, r.Record.ID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				ref, ok := mapping.MarkOverdue(cur.Referral, now, s.Deadline)
				if !ok {
					return cur.Referral, nil, outbox.ErrNoChange
				}
				return ref, nil, nil
			})
			if err != nil && !errors.Is(err, outbox.ErrNoChange) {
				return changed, fmt.Errorf("overdue sweep: referral %s: %w", r.Record.ID, err)
			}
			changed++
		}
		if next == nil {
			return changed, nil
		}
		q.After = next
	}
}

// Run sweeps every Interval until ctx is done. Errors are logged, not fatal: the next sweep tries again.
func (s OverdueSweeper) Run(ctx context.Context) error {
	return sweepEvery(ctx, s.Interval, time.Minute, s.Logger, "overdue sweep", s.SweepOnce, func(log *slog.Logger, n int) {
		log.Info("referrals overdue", "marked", n, "deadline", s.Deadline)
	})
}

// sweepEvery runs sweep now and then every interval (def when not positive) until ctx is done, and returns
// nil then. A failed sweep is logged as name and retried at the next tick; a sweep that did something is
// reported with done.
func sweepEvery(ctx context.Context, interval, def time.Duration, log *slog.Logger, name string,
	sweep func(context.Context) (int, error), done func(log *slog.Logger, n int)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = def
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error(name+" failed", "err", err)
		case n > 0:
			done(log, n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

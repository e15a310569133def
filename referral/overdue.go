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
// Task's businessStatus becomes overdue (a new Task version, so GP polling and Subscriptions see it). With a
// Directory it also climbs the response-deadline ladder (docs/design.md#response-deadlines): reminder,
// escalation to the link-worker service, automatic decline, one rung per referral per sweep
// (mapping.ClimbDeadline). It is idempotent and safe to run in several instances: each change is a versioned
// store update that re-checks the rule inside its transaction, so each rung is taken exactly once.
type OverdueSweeper struct {
	Store    outbox.Store
	Deadline time.Duration    // how long a referral may stay unacknowledged (SOCIALRX_ACK_DEADLINE)
	Interval time.Duration    // how often Run sweeps (default 1 minute)
	Clock    func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
	// Directory gives each service's deadlines and the link-worker service; nil: no deadline ladder.
	Directory *mapping.Directory
	// NewID makes the ladder's event ids (default NewUUIDv7).
	NewID func() string
	// Audit, when set, records each rung climbed in the audit trail (a change of the referral by socialrx:
	// actor socialrx, role system, via sweeper); the overdue mark, a transport fact, is not recorded.
	Audit Auditor
}

// SweepOnce marks every overdue referral now, climbs the deadline ladder one rung for every referral due
// for one, and returns how many versions it wrote.
func (s OverdueSweeper) SweepOnce(ctx context.Context) (int, error) {
	if s.Deadline <= 0 {
		return 0, fmt.Errorf("%w: overdue deadline must be positive", outbox.ErrBadRequest)
	}
	now := time.Now()
	if s.Clock != nil {
		now = s.Clock()
	}
	marked, err := s.markOverdue(ctx, now)
	if err != nil {
		return marked, err
	}
	climbed, err := s.climb(ctx, now)
	return marked + climbed, err
}

// markOverdue marks every referral overdue at now and returns how many it changed.
func (s OverdueSweeper) markOverdue(ctx context.Context, now time.Time) (int, error) {
	changed := 0
	// Only candidates are read (and decoded): still requested, created at or before now-Deadline, with a
	// transport fact MarkOverdue marks. Reading every open referral each minute cost most of the CPU with a
	// large backlog (issue 12). One search for each deadline rung (none yet, then each rung), so that each
	// is one range of the stores' referrals_deadline index (status, deadline_step, created_at), as the
	// climb's are: the stores keep no index on (status, created_at) for this search alone (every create
	// wrote it; on PostgreSQL every version too).
	for _, q := range s.OverdueSearches(now) {
		n, err := s.markOverdueIn(ctx, q, now)
		changed += n
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// OverdueSearches are the searches the sweep at now reads its overdue candidates with (their first pages):
// the requested referrals created at or before now-Deadline, with a transport fact MarkOverdue marks, on
// one deadline rung each (none yet, then each rung).
func (s OverdueSweeper) OverdueSearches(now time.Time) []outbox.ReferralQuery {
	steps := append([]mapping.DeadlineStep{mapping.DeadlineNone}, mapping.AllDeadlineSteps()...)
	qs := make([]outbox.ReferralQuery, len(steps))
	for i, step := range steps {
		qs[i] = outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested},
			DeadlineSteps: []mapping.DeadlineStep{step}, CreatedUntil: now.Add(-s.Deadline),
			BusinessStatuses: mapping.OverdueFrom(), Limit: 500}
	}
	return qs
}

// markOverdueIn marks every referral q finds that is overdue at now, page by page, and returns how many it
// changed.
func (s OverdueSweeper) markOverdueIn(ctx context.Context, q outbox.ReferralQuery, now time.Time) (int, error) {
	changed := 0
	for {
		refs, next, err := s.Store.SearchReferrals(ctx, q)
		if err != nil {
			return changed, fmt.Errorf("overdue sweep: %w", err)
		}
		for _, r := range refs {
			if _, due := mapping.MarkOverdue(r.Referral, now, s.Deadline); !due {
				continue
			}
			marked := false // the store answers an update with no change without an error: fn says what it did
			_, err := s.Store.UpdateReferral(ctx, r.Record.ID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				ref, ok := mapping.MarkOverdue(cur.Referral, now, s.Deadline)
				if marked = ok; !ok {
					return cur.Referral, nil, outbox.ErrNoChange
				}
				return ref, nil, nil
			})
			if err != nil && !errors.Is(err, outbox.ErrNoChange) {
				return changed, fmt.Errorf("overdue sweep: referral %s: %w", r.Record.ID, err)
			}
			if marked && err == nil {
				changed++
			}
		}
		if next == nil {
			return changed, nil
		}
		q.After = next
	}
}

// climb takes every referral due for its next deadline rung one rung up, the highest rungs first so that no
// referral climbs twice in one sweep, and returns how many it moved.
func (s OverdueSweeper) climb(ctx context.Context, now time.Time) (int, error) {
	if s.Directory == nil {
		return 0, nil
	}
	changed := 0
	for _, from := range []mapping.DeadlineStep{mapping.DeadlineEscalated, mapping.DeadlineReminded, mapping.DeadlineNone} {
		// Only candidates are read: still requested, on this rung, created before the earliest deadline of
		// the next rung any service has.
		q := outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested}, DeadlineSteps: []mapping.DeadlineStep{from},
			CreatedUntil: now.Add(-s.earliest(from.Next())), Limit: 500}
		for {
			refs, next, err := s.Store.SearchReferrals(ctx, q)
			if err != nil {
				return changed, fmt.Errorf("deadline sweep: %w", err)
			}
			for _, r := range refs {
				ok, err := s.climbOne(ctx, r, from, now)
				if err != nil {
					return changed, err
				}
				if ok {
					changed++
				}
			}
			if next == nil {
				break
			}
			q.After = next
		}
	}
	return changed, nil
}

// climbOne takes referral r, read standing on rung from, one rung up when it is due; the rung is re-checked
// under the referral's lock, so a rung another instance took meanwhile is not taken again (false, nil).
func (s OverdueSweeper) climbOne(ctx context.Context, r outbox.Referral, from mapping.DeadlineStep, now time.Time) (bool, error) {
	in := s.deadlineInput(r.Record.Service.ID)
	if _, due := mapping.NextDeadlineStep(r.Referral, in.Deadlines, now); !due {
		return false, nil
	}
	climbed := false // the store answers an update with no change without an error: fn says what it did
	_, err := s.Store.UpdateReferral(ctx, r.Record.ID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		climbed = false
		if cur.Record.DeadlineStep != from {
			return cur.Referral, nil, outbox.ErrNoChange
		}
		next, events, err := mapping.ClimbDeadline(cur.Referral, in, now)
		if errors.Is(err, mapping.ErrNoRung) {
			return cur.Referral, nil, outbox.ErrNoChange
		}
		climbed = err == nil
		return next, events, err
	})
	if err != nil && !errors.Is(err, outbox.ErrNoChange) {
		return false, fmt.Errorf("deadline sweep: referral %s: %w", r.Record.ID, err)
	}
	climbed = climbed && err == nil
	if climbed && s.Audit != nil {
		rec := outbox.AuditRecord{At: now, RequestID: NewUUIDv7(), ActorID: "socialrx", ActorRole: RoleSystem, Via: ViaSweeper,
			Action: outbox.AuditUpdate, ResourceType: "Task", ResourceID: r.Record.TaskID, ReferralID: r.Record.ID,
			PracticeODS: r.PracticeODS, ServiceID: r.Record.Service.ID}
		if err := s.Audit.Record(ctx, rec); err != nil { // the rung is committed: logged, never undone
			logOr(s.Logger).Error("a deadline rung could not be audited", "referral_id", r.Record.ID, "err", err)
		}
	}
	return climbed, nil
}

// deadlineInput is what mapping.ClimbDeadline needs for a referral of service id: its deadlines (the defaults
// for a service no longer in the directory), the service and the link-worker service.
func (s OverdueSweeper) deadlineInput(id string) mapping.DeadlineInput {
	svc, ok := s.Directory.Service(id)
	if !ok {
		svc = mapping.Service{ID: id}
	}
	lw, lwOK := s.Directory.LinkWorker()
	newID := s.NewID
	if newID == nil {
		newID = NewUUIDv7
	}
	return mapping.DeadlineInput{Deadlines: svc.ResponseDeadlines(), Service: svc, LinkWorker: lw, LinkWorkerOK: lwOK, NewID: newID}
}

// earliest is the shortest time after creation at which any service's referral is due for rung to (the
// defaults count too: they apply to services no longer in the directory).
func (s OverdueSweeper) earliest(to mapping.DeadlineStep) time.Duration {
	least := mapping.DefaultDeadlines().After(to)
	for _, svc := range s.Directory.Services {
		least = min(least, svc.ResponseDeadlines().After(to))
	}
	return least
}

// Run sweeps every Interval until ctx is done. Errors are logged, not fatal: the next sweep tries again.
func (s OverdueSweeper) Run(ctx context.Context) error {
	return sweepEvery(ctx, s.Interval, time.Minute, s.Logger, "overdue sweep", s.SweepOnce, func(log *slog.Logger, n int) {
		log.Info("referrals overdue or on the deadline ladder", "changed", n, "deadline", s.Deadline)
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

// logOr is l, or a logger that discards when l is nil.
func logOr(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

package postgres

import (
	"context"
	"time"
)

// DefaultVacuumEvery is how many recorded attempts pass between two vacuums of the queue (Options.VacuumEvery).
const DefaultVacuumEvery = 5000

// vacuumTimeout bounds one vacuum of the queue.
const vacuumTimeout = 5 * time.Minute

// noteAttempts counts n recorded attempts and, every Options.VacuumEvery of them, vacuums the queue in the
// background (one vacuum at a time per Store; instances sharing a schema never wait for each other's).
//
// Each claim and each recorded attempt moves a message out of a partial index the claim scans (state =
// 'pending', state = 'inflight'); the old row versions' entries stay in those indexes until VACUUM removes
// them, and every claim walks them from the front of the index. Left to autovacuum (which a server may have
// turned off, and which by default waits until a fifth of the table is dead), a drain of a large backlog
// slows down as it goes: a claim walked 137 index pages for 11 rows after 12,000 deliveries. stamp_reservations,
// one row in and one out per referral change, is vacuumed with it.
func (s *Store) noteAttempts(n int) {
	every := int64(s.opts.VacuumEvery)
	if every <= 0 || n <= 0 {
		return
	}
	after := s.attempts.Add(int64(n))
	if after/every == (after-int64(n))/every || !s.vacuuming.CompareAndSwap(false, true) {
		return
	}
	s.upkeep.Go(func() {
		defer s.vacuuming.Store(false)
		ctx, cancel := context.WithTimeout(s.upkeepCtx, vacuumTimeout)
		defer cancel()
		started := time.Now()
		// SKIP_LOCKED: a table another instance is vacuuming right now is left to it, not waited for.
		if _, err := s.db.ExecContext(ctx, `VACUUM (SKIP_LOCKED) outbox_messages, stamp_reservations`); err != nil {
			if s.upkeepCtx.Err() == nil {
				s.log.Warn("postgres: vacuuming the queue failed; claims may slow down until autovacuum runs",
					"err", s.d.DriverErr("vacuum", err))
			}
			return
		}
		s.log.Debug("postgres: queue vacuumed", "duration", time.Since(started))
	})
}

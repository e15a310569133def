package postgres_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// vacuums is how many times the queue table of dsn's schema has been vacuumed by hand (not autovacuum).
func vacuums(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRowContext(t.Context(), `SELECT vacuum_count FROM pg_stat_user_tables
		WHERE schemaname = current_schema() AND relname = 'outbox_messages'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestQueueVacuumedAsAttemptsAreRecorded: every VacuumEvery recorded attempts, the store vacuums the queue
// (whatever autovacuum does), so that a long drain's claims do not walk ever more dead index entries; with
// VacuumEvery negative it never does.
func TestQueueVacuumedAsAttemptsAreRecorded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		every, attempts int
		want            bool
	}{{3, 3, true}, {-1, 6, false}} {
		dsn := freshSchema(t)
		s := openStore(t, dsn, postgres.Options{VacuumEvery: tc.every})
		watch, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer watch.Close()
		now := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
		for n := 1; n <= tc.attempts; n++ {
			if _, err := s.CreateReferral(t.Context(), testIntake(n)); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := s.ClaimMessages(t.Context(), "a", now, time.Minute, tc.attempts, outbox.ClaimFilter{})
		if err != nil || len(msgs) != tc.attempts {
			t.Fatalf("claimed %d of %d: %v", len(msgs), tc.attempts, err)
		}
		before := vacuums(t, watch)
		for _, m := range msgs {
			if err := s.CompleteAttempt(t.Context(), m.ID, now, outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered}); err != nil {
				t.Fatal(err)
			}
		}
		if !tc.want {
			if err := s.Close(); err != nil { // waits for any vacuum it started
				t.Fatal(err)
			}
			if got := vacuums(t, watch); got != before {
				t.Errorf("VacuumEvery %d: the queue was vacuumed (%d times)", tc.every, got-before)
			}
			continue
		}
		deadline := time.Now().Add(30 * time.Second)
		for vacuums(t, watch) == before {
			if time.Now().After(deadline) {
				t.Fatalf("VacuumEvery %d: %d attempts recorded, the queue never vacuumed", tc.every, tc.attempts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

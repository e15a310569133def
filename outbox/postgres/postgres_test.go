package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
	"github.com/socialrx/socialrx/outbox/outboxtest"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

var quiet = slog.New(slog.DiscardHandler)

// freshSchema is an empty schema of the test server for t (pgtest.FreshSchema: skipped without a server,
// failed when CI is set).
func freshSchema(t *testing.T) string { return pgtest.FreshSchema(t) }

func openStore(t *testing.T, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	opts.Logger = quiet
	if opts.MaxConns == 0 {
		opts.MaxConns = 4
	}
	return sqlstoretest.Open(t, func() (*postgres.Store, error) { return postgres.Open(t.Context(), dsn, opts) })
}

func TestConformance(t *testing.T) {
	t.Parallel()
	outboxtest.Run(t, func(t *testing.T, opts outboxtest.Options) outbox.Store {
		return openStore(t, freshSchema(t), postgres.Options{FailAfter: opts.FailAfter, Notify: opts.Notify})
	})
}

func testIntake(n int) mapping.Intake {
	return sqlstoretest.Intake(n, time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC).Add(time.Duration(n)*time.Millisecond),
		mapping.Destination{Kind: mapping.DestinationService, ID: fmt.Sprintf("svc-%d", n%7)}, json.RawMessage(`{"b":1,"a":2}`))
}

// TestConcurrentClaimersNeverShareALease runs several store instances (each its own connection pool, as
// separate processes would have) claiming from one queue at once: every message is leased exactly once
// before it is delivered.
func TestConcurrentClaimersNeverShareALease(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	const messages, claimers = 500, 4
	stores := make([]*postgres.Store, claimers)
	for i := range stores {
		stores[i] = openStore(t, dsn, postgres.Options{MaxConns: 2})
	}
	ctx := t.Context()
	for n := 1; n <= messages; n++ {
		if _, err := stores[n%claimers].CreateReferral(ctx, testIntake(n)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	claimedBy := map[string]string{}
	var dup []string
	var wg sync.WaitGroup
	errs := make(chan error, claimers)
	for i, s := range stores {
		owner := fmt.Sprintf("instance-%d", i)
		wg.Go(func() {
			for {
				ms, err := s.ClaimMessages(ctx, owner, now, time.Hour, 7, outbox.ClaimFilter{})
				if err != nil {
					errs <- err
					return
				}
				if len(ms) == 0 {
					return
				}
				mu.Lock()
				for _, m := range ms {
					if prev, ok := claimedBy[m.ID]; ok {
						dup = append(dup, fmt.Sprintf("%s by %s and %s", m.ID, prev, owner))
					}
					claimedBy[m.ID] = owner
				}
				mu.Unlock()
				for _, m := range ms {
					if err := s.CompleteAttempt(ctx, m.ID, now, outbox.AttemptResult{Owner: owner,
						State: outbox.StateDelivered, Attempt: outbox.Attempt{StatusCode: 204}}); err != nil {
						errs <- fmt.Errorf("complete %s: %w", m.ID, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(dup) > 0 {
		t.Errorf("%d messages leased twice, e.g. %s", len(dup), dup[0])
	}
	if len(claimedBy) != messages {
		t.Errorf("%d messages claimed, want %d", len(claimedBy), messages)
	}
	counts, _, err := stores[0].CountMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.StateDelivered] != messages {
		t.Errorf("counts %v, want %d delivered", counts, messages)
	}
	perOwner := map[string]int{}
	for _, o := range claimedBy {
		perOwner[o]++
	}
	t.Logf("claims per instance: %v", perOwner)
}

// TestPayloadBytesKept checks that payloads and the ServiceRequest read back byte for byte (not re-encoded).
func TestPayloadBytesKept(t *testing.T) {
	t.Parallel()
	s := openStore(t, freshSchema(t), postgres.Options{})
	in := testIntake(1)
	in.ServiceRequest = json.RawMessage(`{"resourceType":"ServiceRequest",  "z":1, "a":[ ]}`)
	if _, err := s.CreateReferral(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	r, err := s.GetReferral(t.Context(), "ref-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.ServiceRequest) != string(in.ServiceRequest) {
		t.Errorf("ServiceRequest %s, want %s", r.ServiceRequest, in.ServiceRequest)
	}
	d, err := s.GetMessage(t.Context(), "msg-1")
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Message.Payload) != `{"b":1,"a":2}` {
		t.Errorf("payload %s", d.Message.Payload)
	}
}

// TestMigrateIdempotentAndConcurrent runs Migrate from several goroutines at once on one schema, then again.
func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(t.Context(), dsn) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	if err := postgres.Migrate(t.Context(), dsn); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	s := openStore(t, dsn, postgres.Options{SkipMigrations: true})
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	if _, err := postgres.Open(t.Context(), "sqlite:x.db", postgres.Options{}); err == nil {
		t.Error("Open of a non-postgres URL: no error")
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	s, err := postgres.Open(t.Context(), dsn, postgres.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.CreateReferral(t.Context(), testIntake(1)); err == nil {
		t.Error("create after Close: no error")
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Error("Ping after Close: no error")
	}
}

// TestChangesAcrossInstances: a commit by one instance wakes the dispatcher of another on the same schema
// (LISTEN/NOTIFY), and not one on another schema.
func TestChangesAcrossInstances(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	a := openStore(t, dsn, postgres.Options{})
	b := openStore(t, dsn, postgres.Options{})
	drainChanges(b)
	if _, err := a.CreateReferral(t.Context(), testIntake(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("instance b not woken by instance a's commit within 10s")
	}
	// A replay (as the CLI makes it) from a third, short-lived instance wakes b too.
	now := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	ms, err := b.ClaimMessages(t.Context(), "b", now, time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(ms) != 1 {
		t.Fatalf("claim: %v %v", ms, err)
	}
	if err := b.CompleteAttempt(t.Context(), ms[0].ID, now, outbox.AttemptResult{Owner: "b", State: outbox.StateDead,
		Attempt: outbox.Attempt{StatusCode: 400, Error: "HTTP 400"}}); err != nil {
		t.Fatal(err)
	}
	drainChanges(b)
	cli := openStore(t, dsn, postgres.Options{NoListen: true})
	if _, err := cli.ReplayMessages(t.Context(), now, outbox.ReplayRequest{IDs: []string{ms[0].ID}, Reason: "fixed",
		Actor: "ops"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Changes():
	case <-time.After(10 * time.Second):
		t.Fatal("instance b not woken by a replay from another instance within 10s")
	}
}

func drainChanges(s outbox.Store) {
	select {
	case <-s.Changes():
	default:
	}
}

// TestCancelledContext: a create with a cancelled context writes nothing.
func TestCancelledContext(t *testing.T) {
	t.Parallel()
	sqlstoretest.CancelledCreateWritesNothing(t, openStore(t, freshSchema(t), postgres.Options{}), testIntake(1))
}

// TestUnavailable: another connection locks the tables (LOCK … IN EXCLUSIVE MODE, as a migration or an
// operator's maintenance would): writes fail with fault.Unavailable after lock_timeout and write nothing,
// readiness says so, reads still answer, and everything recovers when the lock goes
// (outboxtest.RunUnavailable).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	outboxtest.RunUnavailable(t, func(t *testing.T) outboxtest.Lockable {
		dsn := freshSchema(t)
		s := openStore(t, dsn, postgres.Options{LockTimeout: 300 * time.Millisecond, NoListen: true})
		return outboxtest.Lockable{Store: s, Lock: func(t *testing.T) func() {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(t.Context(), `LOCK TABLE referrals, referral_identifiers, referral_events,
				outbox_messages, used_nonces, health_probes, subscriptions IN EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			return func() {
				if err := tx.Rollback(); err != nil {
					t.Error(err)
				}
				db.Close()
			}
		}}
	})
}

// TestPauseAcrossInstances: a pause made by one instance holds the others' claims (sqlstoretest).
func TestPauseAcrossInstances(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	sqlstoretest.PauseAcrossInstances(t, openStore(t, dsn, postgres.Options{NoListen: true}), openStore(t, dsn, postgres.Options{}))
}

// TestAuditTamper: the audit trail's verification finds records changed, deleted, inserted and reordered by
// SQL on PostgreSQL (outboxtest.RunAuditTamper).
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	outboxtest.RunAuditTamper(t, func(t *testing.T) (outbox.Store, outboxtest.Exec) {
		r := openRaw(t)
		return r.Store, func(ctx context.Context, q string, args ...any) error {
			_, err := r.DB.ExecContext(ctx, sqlstore.RebindDollar(q), args...)
			return err
		}
	})
}

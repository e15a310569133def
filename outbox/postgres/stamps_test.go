package postgres_test

import (
	"database/sql"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
)

// holdAfterStamp is a FailAfter hook that stops each create of a referral in hold right after its row is
// written (its stamp taken, the transaction still open): it reports the referral on arrived and waits for
// release.
func holdAfterStamp(hold map[string]bool, arrived chan<- string, release <-chan struct{}) func(string, mapping.Intake) error {
	return func(stage string, in mapping.Intake) error {
		if stage == "referral" && hold[in.Referral.Record.ID] {
			arrived <- in.Referral.Record.ID
			<-release
		}
		return nil
	}
}

// withAppName is dsn with an application_name of its own, so that the test finds its backends in
// pg_stat_activity.
func withAppName(t *testing.T, dsn string) (string, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := "socialrx-test-" + uuid.NewString()[:8]
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String(), name
}

// TestStampsCommitInParallel: two referral writes both hold their stamps (transactions open, rows written)
// at the same time; neither waits on a lock for the other (the former design held one advisory lock per
// schema from the stamp to the commit, so the second waited for the first's commit).
func TestStampsCommitInParallel(t *testing.T) {
	t.Parallel()
	dsn, app := withAppName(t, freshSchema(t))
	arrived, release := make(chan string, 2), make(chan struct{})
	ids := map[string]bool{testIntake(1).Referral.Record.ID: true, testIntake(2).Referral.Record.ID: true}
	s := openStore(t, dsn, postgres.Options{MaxConns: 4, FailAfter: holdAfterStamp(ids, arrived, release)})
	watch, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	errs := make(chan error, 2)
	for _, n := range []int{1, 2} {
		go func() {
			_, err := s.CreateReferral(t.Context(), testIntake(n))
			errs <- err
		}()
	}
	defer func() {
		close(release)
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}()
	held := 0
	for held < 2 {
		select {
		case <-arrived:
			held++
			continue
		default:
		}
		if held == 0 {
			<-arrived
			held++
			continue
		}
		// One write holds its stamp: the other either arrives too, or is found waiting on a lock.
		var waiting int
		if err := watch.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			t.Fatal("the second referral write waits on a lock while the first holds its stamp")
		}
	}
}

// TestPollNeverSeesPastARunningWriter: a referral write A holds its stamp (transaction open) while a later
// write B commits with a later stamp. A poll then shows neither B's referral nor its message (a GP moving its
// _lastUpdated past B would miss A forever); once A commits, the poll shows both, A before B.
func TestPollNeverSeesPastARunningWriter(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	arrived, release := make(chan string, 1), make(chan struct{})
	a, b := testIntake(1), testIntake(2)
	s := openStore(t, dsn, postgres.Options{MaxConns: 4,
		FailAfter: holdAfterStamp(map[string]bool{a.Referral.Record.ID: true}, arrived, release)})
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateReferral(ctx, a)
		done <- err
	}()
	<-arrived
	rb, err := s.CreateReferral(ctx, b)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	rs, _, err := s.SearchReferrals(ctx, outbox.ReferralQuery{})
	if err != nil || len(rs) != 0 {
		t.Errorf("poll while A runs: %d referrals, %v; want none (B is stamped after A)", len(rs), err)
	}
	if n, err := s.CountReferrals(ctx, outbox.ReferralQuery{}); err != nil || n != 0 {
		t.Errorf("count while A runs: %d, %v; want 0", n, err)
	}
	ms, err := s.ListMessages(ctx, outbox.MessageQuery{})
	if err != nil || len(ms) != 0 {
		t.Errorf("message listing while A runs: %d messages, %v; want none", len(ms), err)
	}
	if got, err := s.GetReferral(ctx, rb.Referral.Record.ID); err != nil || got.Record.Version != 1 {
		t.Errorf("B read by id: %+v, %v (a read by id is not held back)", got.Record, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs, _, err = s.SearchReferrals(ctx, outbox.ReferralQuery{})
	if err != nil || len(rs) != 2 || rs[0].Record.ID != a.Referral.Record.ID || rs[1].Record.ID != b.Referral.Record.ID ||
		!rs[0].Record.UpdatedAt.Before(rs[1].Record.UpdatedAt) {
		t.Fatalf("poll after A commits: %v, %v; want A then B, A's stamp first", rs, err)
	}
	if ms, err := s.ListMessages(ctx, outbox.MessageQuery{}); err != nil || len(ms) != len(a.Events)+len(b.Events) {
		t.Errorf("message listing after A commits: %d, %v; want %d", len(ms), err, len(a.Events)+len(b.Events))
	}
}

// TestBatchStampsOneBlock: a batch of completions, each writing a Task version, reserves its stamps in one
// call (one block, as many stamps as completions), not one call per version. The block keeps polling exact: a
// referral created and committed while the batch runs is stamped after the whole block and stays hidden
// until the batch commits; then the poll shows the batch's versions first. The former one-stamp function,
// which an instance of the former version calls during a rolling upgrade, also chooses after the block.
func TestBatchStampsOneBlock(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	s := openStore(t, dsn, postgres.Options{MaxConns: 4})
	ctx := t.Context()
	watch, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	const batch = 4
	for n := 1; n <= batch; n++ {
		if _, err := s.CreateReferral(ctx, testIntake(n)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2025, 3, 3, 9, 1, 0, 0, time.UTC)
	ms, err := s.ClaimMessages(ctx, "a", now, time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(ms) != batch {
		t.Fatalf("claim: %d messages, %v; want %d", len(ms), err, batch)
	}
	arrived, release := make(chan struct{}), make(chan struct{})
	cs := make([]outbox.Completion, batch)
	for i, m := range ms {
		cs[i] = outbox.Completion{ID: m.ID, Now: now, Result: outbox.AttemptResult{Owner: "a", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 200},
			Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				if i == batch-1 { // the others are stamped: hold the transaction open
					arrived <- struct{}{}
					<-release
				}
				next := cur.Referral
				next.BusinessStatus = mapping.BusinessDelivered
				return next, nil, nil
			}}}
	}
	done := make(chan []error, 1)
	go func() { done <- s.CompleteAttempts(ctx, cs) }()
	<-arrived
	var calls, size, first, last int64
	if err := watch.QueryRowContext(ctx, `SELECT count(*), COALESCE(max(stamp_last - stamp + 1), 0),
			COALESCE(min(stamp), 0), COALESCE(max(stamp_last), 0)
		FROM stamp_reservations WHERE pg_xact_status(xid) = 'in progress'`).Scan(&calls, &size, &first, &last); err != nil {
		close(release)
		t.Fatal(err)
	}
	if calls != 1 || size != batch {
		t.Errorf("the batch's reservations after %d of its %d versions: %d reservation(s), the largest of %d stamps; want one block of %d",
			batch-1, batch, calls, size, batch)
	}
	var old int64
	if err := watch.QueryRowContext(ctx, `SELECT socialrx_reserve_stamp(0, pg_current_xact_id())`).Scan(&old); err != nil || old <= last {
		t.Errorf("socialrx_reserve_stamp (the former function) while the block [%d, %d] is held: %d, %v; want after it", first, last, old, err)
	}
	late, err := s.CreateReferral(ctx, testIntake(batch+1))
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	if got := late.Referral.Record.UpdatedAt.UnixMicro(); got <= last {
		t.Errorf("a referral created while the block [%d, %d] is held is stamped %d; want after the block", first, last, got)
	}
	rs, _, err := s.SearchReferrals(ctx, outbox.ReferralQuery{})
	if err != nil || len(rs) != batch {
		t.Errorf("poll while the batch runs: %d referrals, %v; want the %d created before it", len(rs), err, batch)
	}
	close(release)
	for i, err := range <-done {
		if err != nil {
			t.Errorf("completion %d: %v", i, err)
		}
	}
	rs, _, err = s.SearchReferrals(ctx, outbox.ReferralQuery{})
	if err != nil || len(rs) != batch+1 {
		t.Fatalf("poll after the batch: %d referrals, %v; want %d", len(rs), err, batch+1)
	}
	for i, r := range rs {
		want := 2
		if i == batch {
			want = 1
		}
		if r.Record.Version != want || (i > 0 && !rs[i-1].Record.UpdatedAt.Before(r.Record.UpdatedAt)) {
			t.Errorf("poll after the batch, #%d: %s version %d at %s; want version %d, after the one before",
				i, r.Record.ID, r.Record.Version, r.Record.UpdatedAt.Format(time.RFC3339Nano), want)
		}
	}
	if rs[batch].Record.ID != late.Referral.Record.ID {
		t.Errorf("poll after the batch ends with %s; want the referral created while it ran", rs[batch].Record.ID)
	}
}

// TestStampReservationsRules: socialrx_reserve_stamps (migration 91) gives back the newest block when its
// writer rolled back (it was never seen), never a block under a running writer's, and deletes the
// reservations of finished writers on one call in 64 while keeping those of running writers and the newest,
// whatever else runs on the server (migration 94): the table polls read stays a few dozen rows however many
// stamps are reserved. As the store does, each
// reservation is an autocommit call naming the writer's transaction.
func TestStampReservationsRules(t *testing.T) {
	t.Parallel()
	dsn := freshSchema(t)
	_ = openStore(t, dsn, postgres.Options{MaxConns: 2}) // migrates the schema
	ctx := t.Context()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// writer begins a transaction and returns it with its id.
	writer := func() (*sql.Tx, string) {
		t.Helper()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var xid string
		if err := tx.QueryRowContext(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
			t.Fatal(err)
		}
		return tx, xid
	}
	reserve := func(xid string, n int) int64 {
		t.Helper()
		var s int64
		if err := db.QueryRowContext(ctx, `SELECT socialrx_reserve_stamps(1000, $1::xid8, $2)`, xid, n).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	finished := func(n int) int64 { // a writer that reserves n stamps and commits
		t.Helper()
		tx, xid := writer()
		s := reserve(xid, n)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		return s
	}
	running, runningXID := writer()
	defer running.Rollback()
	held := reserve(runningXID, 3)
	aborted, abortedXID := writer()
	gone := reserve(abortedXID, 2)
	if gone != held+3 {
		t.Fatalf("the block after [%d, %d] starts at %d", held, held+2, gone)
	}
	if err := aborted.Rollback(); err != nil {
		t.Fatal(err)
	}
	if again := finished(1); again != gone {
		t.Errorf("after the newest block's writer rolled back, the next stamp is %d; want its first, %d, again", again, gone)
	}
	count := func() (rows, runningRows int) {
		t.Helper()
		q := `SELECT count(*), count(*) FILTER (WHERE stamp = $1) FROM stamp_reservations`
		if err := db.QueryRowContext(ctx, q, held).Scan(&rows, &runningRows); err != nil {
			t.Fatal(err)
		}
		return rows, runningRows
	}
	// While the running writer runs, nothing after it is deleted (a poll's snapshot may still need it) and
	// neither is its own reservation; once it has finished, the finished writers' reservations go.
	for range 100 {
		finished(1)
	}
	if _, runningRows := count(); runningRows != 1 {
		t.Errorf("the running writer's reservation was deleted")
	}
	if err := running.Commit(); err != nil {
		t.Fatal(err)
	}
	// A long transaction that reserves nothing (a pg_dump, a report, another schema's writer: transaction ids
	// are the cluster's) holds nothing back. Before migration 94 it kept every reservation after it.
	bystander, _ := writer()
	defer bystander.Rollback()
	for range 100 {
		finished(1)
	}
	if rows, _ := count(); rows > 65 {
		t.Errorf("%d reservations left after 201 finished ones; want at most 64 kept between cleanups, and the newest", rows)
	}
	if next := finished(1); next != gone+201 {
		t.Errorf("the stamp after 201 single reservations from %d: %d; want %d", gone, next, gone+201)
	}
}

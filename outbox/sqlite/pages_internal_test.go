package sqlite

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore"
	"github.com/socialrx/socialrx/outbox/internal/sqlstore/sqlstoretest"
	"github.com/socialrx/socialrx/referral"
)

// walPages follows, on a real database file, which b-trees (tables and indexes, by name) the transactions
// since the last reset wrote pages of: it reads the page number of every frame in the WAL file and names
// its b-tree from SQLite's dbstat table. Automatic checkpoints are off on the store's write connection, and
// the store runs no checkpointer of its own (openQuiet), so the WAL holds every frame written since reset.
type walPages struct {
	t *testing.T
	s *Store
}

func newWALPages(t *testing.T, s *Store) walPages {
	t.Helper()
	if _, err := s.wdb.ExecContext(t.Context(), "PRAGMA wal_autocheckpoint = 0"); err != nil {
		t.Fatal(err)
	}
	return walPages{t: t, s: s}
}

// reset checkpoints the WAL and truncates it.
func (p walPages) reset() {
	p.t.Helper()
	var busy, frames, done int
	if err := p.s.wdb.QueryRowContext(p.t.Context(), "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil || busy != 0 {
		p.t.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
}

// written returns how many WAL frames each b-tree has had since reset.
func (p walPages) written() map[string]int {
	p.t.Helper()
	b, err := os.ReadFile(p.s.path + "-wal")
	if err != nil {
		p.t.Fatal(err)
	}
	if len(b) < 32 {
		return map[string]int{}
	}
	pageSize := int(binary.BigEndian.Uint32(b[8:]))
	saltStart := binary.BigEndian.Uint64(b[16:])
	frames := map[uint32]int{}
	for off := 32; off+24+pageSize <= len(b); off += 24 + pageSize {
		if binary.BigEndian.Uint64(b[off+8:]) != saltStart {
			break // a frame left from before the reset
		}
		frames[binary.BigEndian.Uint32(b[off:])]++
	}
	rows, err := p.s.wdb.QueryContext(p.t.Context(), "SELECT name, pageno FROM dbstat")
	if err != nil {
		p.t.Fatal(err)
	}
	defer rows.Close()
	by := map[string]int{}
	for rows.Next() {
		var name string
		var page uint32
		if err := rows.Scan(&name, &page); err != nil {
			p.t.Fatal(err)
		}
		if n := frames[page]; n > 0 {
			by[name] += n
		}
	}
	if err := rows.Err(); err != nil {
		p.t.Fatal(err)
	}
	return by
}

// TestIntakeAndDeliveryWriteOnlyTheIndexesTheyNeed, read from the WAL of a real database file: intake and
// the version a delivery writes (a requested referral's businessStatus and lastUpdated) write no page of
// referrals_unscrubbed (retention's closed referrals) nor of referrals_parent (forwarded referrals); a
// version that closes a referral does write referrals_unscrubbed (the attribution is live). Before migration
// 87 both indexes held every referral and each such version wrote two pages of each.
func TestIntakeAndDeliveryWriteOnlyTheIndexesTheyNeed(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	pages := newWALPages(t, s)
	spread := func(i int, in *mapping.Intake) {
		in.Referral.Patient.Reference = fmt.Sprintf("Patient/p%d", i%97) // spread over the indexes
	}
	createReferrals(t, s, 1, 2000, spread) // indexes of several levels
	pages.reset()
	createReferrals(t, s, 2001, 2020, spread)
	after := pages.written()
	if after["referrals"] == 0 || after["outbox_messages"] == 0 {
		t.Fatalf("intake wrote no page of referrals or outbox_messages (%v): the attribution is broken", after)
	}
	wantNoPages(t, after, "20 intakes", "referrals_unscrubbed", "referrals_parent")

	at := pagesBase().Add(time.Hour)
	claimed := claimN(t, s, at, 20)
	pages.reset()
	for i := range claimed {
		deliver(t, s, claimed[i:i+1], at, outbox.MarkDelivered)
	}
	after = pages.written()
	if after["referral_events"] == 0 {
		t.Fatalf("20 deliveries wrote no timeline page (%v): their versions were not written", after)
	}
	wantNoPages(t, after, "20 deliveries (a version of an open referral each)", "referrals_unscrubbed", "referrals_parent",
		"outbox_pending_created")

	written := pagesOfVersion(t, s, pages, claimed[0].ReferralID, at.Add(time.Hour), func(next *mapping.Referral) {
		next.Record.Status = mapping.StatusCancelled
	})
	if written["referrals_unscrubbed"] == 0 {
		t.Error("cancelling a referral wrote no page of referrals_unscrubbed; retention would never find it")
	}
}

// TestPartialIndexesServeTheirReaders: retention's scan of the closed referrals and the GP's Task?part-of=
// search still read the partial indexes that hold only those referrals (SQLite uses a partial index only
// where the query spells its predicate; the scan names its index), and a search for one patient reads the
// patient's index, on a real database file.
func TestPartialIndexesServeTheirReaders(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	search, args, _, _ := sqlstore.ReferralSearch(outbox.ReferralQuery{ParentTaskID: "task-1"})
	for _, c := range []struct {
		query, index string
		args         []any
	}{
		{dialect().SelectDueClosed(), "referrals_unscrubbed", []any{int64(1), 100}},
		{search, "referrals_parent", args},
		{dialect().OldestPending(), "outbox_pending_created", nil},
		// The patient's indexes hold the key alone (migration 88); the search names them, as the planner would
		// rather read the practice's, the service's or a status's index in order than sort.
		patientSearch(outbox.ReferralQuery{PatientRef: "Patient/p1", Practices: []string{"A81001"}}, "referrals_patient_ref"),
		patientSearch(outbox.ReferralQuery{PatientRef: "Patient/p1", ServiceID: "walks",
			After: &outbox.Cursor{UpdatedAt: time.Now(), ID: "ref-1"}}, "referrals_patient_ref"),
		patientSearch(outbox.ReferralQuery{PatientNHSNumber: "9000000009",
			Statuses: []mapping.TaskStatus{mapping.StatusRequested}}, "referrals_patient_nhs"),
	} {
		if plan := queryPlan(t, s, c.query, c.args); !strings.Contains(plan, " INDEX "+c.index) {
			t.Errorf("%s\nplan %q; want it to use %s", c.query, plan, c.index)
		}
	}
}

// TestIdentifierSearchReadsTheValueIndex: a search by identifier, with a system or without, reads
// referral_identifiers_value (value), and an intake writes pages of no other index of referral_identifiers
// than its primary key, that index and the referral's (referral_id), on a real database file. Before migration
// 93 the search with a system read referral_identifiers_system_value (system, value), and every intake wrote
// a page of it.
func TestIdentifierSearchReadsTheValueIndex(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	for _, id := range []mapping.Identifier{{System: "https://fhir.example.org/referrals", Value: "ref-1"}, {Value: "ref-1"}} {
		query, args, _, _ := dialect().SearchStatement(outbox.ReferralQuery{Identifier: &id})
		if plan := queryPlan(t, s, query, args); !strings.Contains(plan, " INDEX referral_identifiers_value ") {
			t.Errorf("the search by identifier %+v:\nplan %q; want it to read referral_identifiers_value", id, plan)
		}
	}

	pages := newWALPages(t, s)
	createReferrals(t, s, 1, 500, nil)
	pages.reset()
	createReferrals(t, s, 501, 510, nil)
	allowed := []string{"referral_identifiers", "sqlite_autoindex_referral_identifiers_1", "referral_identifiers_value",
		"referral_identifiers_referral"}
	wrote := 0
	for name, n := range pages.written() {
		if !strings.HasPrefix(name, "referral_identifiers") && !strings.HasPrefix(name, "sqlite_autoindex_referral_identifiers") {
			continue
		}
		wrote += n
		if !slices.Contains(allowed, name) {
			t.Errorf("10 intakes wrote %d pages of %s; want pages of %v only", n, name, allowed)
		}
	}
	if wrote == 0 {
		t.Fatal("10 intakes wrote no page of referral_identifiers: the attribution is broken")
	}
}

// patientSearch is the SQLite search for q and the index it must read, as TestPartialIndexesServeTheirReaders
// takes them.
func patientSearch(q outbox.ReferralQuery, index string) struct {
	query, index string
	args         []any
} {
	query, args, _, _ := dialect().SearchStatement(q)
	return struct {
		query, index string
		args         []any
	}{query, index, args}
}

// pagesBase is when the page tests' first referral is created.
func pagesBase() time.Time { return time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC) }

// createReferrals creates the test referrals from to to (sqlstoretest.Intake, to the walks service, a second
// apart from pagesBase), each first shaped by shape when it is not nil.
func createReferrals(t *testing.T, s *Store, from, to int, shape func(i int, in *mapping.Intake)) {
	t.Helper()
	dest := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	for i := from; i <= to; i++ {
		in := sqlstoretest.Intake(i, pagesBase().Add(time.Duration(i)*time.Second), dest, json.RawMessage(`{}`))
		if shape != nil {
			shape(i, &in)
		}
		if _, err := s.CreateReferral(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
}

// claimN claims n messages for owner "o" at at, failing t unless it gets n.
func claimN(t *testing.T, s *Store, at time.Time, n int) []outbox.Message {
	t.Helper()
	claimed, err := s.ClaimMessages(t.Context(), "o", at, time.Minute, n, outbox.ClaimFilter{})
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d of %d, %v", len(claimed), n, err)
	}
	return claimed
}

// deliver records the delivery of every message in claimed at at, in one CompleteAttempts call, each with
// update (the version a delivery writes, or nil), failing t on any error.
func deliver(t *testing.T, s *Store, claimed []outbox.Message, at time.Time, update outbox.ReferralUpdate) {
	t.Helper()
	cs := make([]outbox.Completion, len(claimed))
	for i, m := range claimed {
		cs[i] = outbox.Completion{ID: m.ID, Now: at, Result: outbox.AttemptResult{
			Attempt: outbox.Attempt{N: 1, StartedAt: at, StatusCode: 200}, Owner: "o", State: outbox.StateDelivered,
			Update: update}}
	}
	for i, err := range s.CompleteAttempts(t.Context(), cs) {
		if err != nil {
			t.Fatalf("completion %d: %v", i, err)
		}
	}
}

// pagesOfVersion writes a version of referral id at at, changed by change, and returns the pages it wrote
// (pages reset first).
func pagesOfVersion(t *testing.T, s *Store, pages walPages, id string, at time.Time, change func(next *mapping.Referral)) map[string]int {
	t.Helper()
	pages.reset()
	if _, err := s.UpdateReferral(t.Context(), id, 0, at, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		change(&next)
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	return pages.written()
}

// wantNoPages fails t for each of indexes that written (what did) has pages of.
func wantNoPages(t *testing.T, written map[string]int, what string, indexes ...string) {
	t.Helper()
	for _, ix := range indexes {
		if n := written[ix]; n != 0 {
			t.Errorf("%s wrote %d pages of %s; want none", what, n, ix)
		}
	}
}

// openQuiet opens a store on a new database file, closed when t ends, without the checkpointer (checkpoint.go):
// walPages reads the WAL, and the checkpointer, woken by the commits, could both copy the frames it counts
// (the WAL then restarts over them) and hold the checkpoint its reset takes (busy; CI saw it once).
func openQuiet(t *testing.T) *Store {
	return sqlstoretest.Open(t, func() (*Store, error) {
		return Open(t.Context(), filepath.Join(t.TempDir(), "db"), Options{Logger: slog.New(slog.DiscardHandler),
			CheckpointFrames: -1})
	})
}

// TestVersionsWriteNoPagesOfUnchangedKeys, read from the WAL of a real database file: a batch of ten
// deliveries (a version each of a requested referral, each referral with a patient of its own) writes no
// page of the patient's two indexes (migration 88: the key alone, without updated_at) nor of the index of
// columns a delivery does not change (referrals_deadline: the version assigns only what changed). A version
// that changes the patient does write the patient's index (the attribution is live). Before, the ten wrote 9
// pages of referrals_patient_ref, and one each of the others.
func TestVersionsWriteNoPagesOfUnchangedKeys(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	pages := newWALPages(t, s)
	createReferrals(t, s, 1, 3000, func(i int, in *mapping.Intake) {
		// Patients spread over the indexes, as a practice's are.
		in.Referral.Patient.Reference = fmt.Sprintf("Patient/p%d", (i*7919)%100_003)
		in.Referral.Record.Patient.NHSNumber = fmt.Sprintf("9%09d", (i*104_729)%1_000_003)
	})
	at := pagesBase().Add(2 * time.Hour)
	claimed := claimN(t, s, at, 10)
	pages.reset()
	deliver(t, s, claimed, at, outbox.MarkDelivered)
	after := pages.written()
	if after["referral_events"] == 0 || after["referrals_updated"] == 0 {
		t.Fatalf("10 deliveries wrote no timeline or referrals_updated page (%v): their versions were not written", after)
	}
	wantNoPages(t, after, "10 deliveries (a version of an open referral each)",
		"referrals_patient_ref", "referrals_patient_nhs", "referrals_deadline")

	written := pagesOfVersion(t, s, pages, claimed[0].ReferralID, at.Add(time.Minute), func(next *mapping.Referral) {
		next.Patient.Reference = "Patient/moved"
	})
	if written["referrals_patient_ref"] == 0 {
		t.Error("a version with a new patient reference wrote no page of referrals_patient_ref")
	}
}

// TestVersionRewritesKeysTheRowDoesNotHold: a version assigns only the keys that change on the condition
// that the row holds the others as its referral decodes (sqlstore's WriteVersion); a row that holds
// something else (here set behind the store's back, as an earlier release could have written it) is
// updated with every column, so that its keys match the referral again and searches find it.
func TestVersionRewritesKeysTheRowDoesNotHold(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openQuiet(t)
	createReferrals(t, s, 1, 1, func(_ int, in *mapping.Intake) { in.Referral.Patient.Reference = "Patient/p1" })
	base := pagesBase()
	if _, err := s.wdb.ExecContext(ctx, `UPDATE referrals SET patient_ref = 'Patient/stale', service_id = 'stale'
		WHERE id = 'ref-1'`); err != nil {
		t.Fatal(err)
	}
	u, err := s.UpdateReferral(ctx, "ref-1", 1, base.Add(time.Minute), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.BusinessStatus = mapping.BusinessDelivered
		return next, nil, nil
	})
	if err != nil || u.Record.Version != 2 {
		t.Fatalf("update: version %d, %v", u.Record.Version, err)
	}
	var patient, service string
	if err := s.wdb.QueryRowContext(ctx, `SELECT patient_ref, service_id FROM referrals WHERE id = 'ref-1'`).Scan(&patient, &service); err != nil {
		t.Fatal(err)
	}
	if patient != "Patient/p1" || service != "walks" {
		t.Errorf("after the version the row holds patient %q, service %q; want Patient/p1, walks", patient, service)
	}
}

// TestBatchedVersionsRewriteKeysTheRowDoesNotHold: in a batch of deliveries written together (sqlstore's
// writeBatch), a version whose row holds keys other than its referral decodes to (set behind the store's back)
// is written alone with every column, as TestVersionRewritesKeysTheRowDoesNotHold's single version is; the
// others of the batch are written by the batch's statements. Each referral ends at version 2, delivered, with
// its timeline entry, and the stale row's keys match its referral again.
func TestBatchedVersionsRewriteKeysTheRowDoesNotHold(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openQuiet(t)
	createReferrals(t, s, 1, 3, nil)
	if _, err := s.wdb.ExecContext(ctx, `UPDATE referrals SET service_id = 'stale' WHERE id = 'ref-2'`); err != nil {
		t.Fatal(err)
	}
	at := pagesBase().Add(time.Hour)
	deliver(t, s, claimN(t, s, at, 3), at, outbox.MarkDelivered)
	for _, id := range []string{"ref-1", "ref-2", "ref-3"} {
		var service, business string
		var version, events int
		if err := s.wdb.QueryRowContext(ctx, `SELECT service_id, business_status, version,
			(SELECT count(*) FROM referral_events WHERE referral_id = r.id) FROM referrals r WHERE id = ?`, id).Scan(
			&service, &business, &version, &events); err != nil {
			t.Fatal(err)
		}
		if service != "walks" || business != string(mapping.BusinessDelivered) || version != 2 || events != 2 {
			t.Errorf("%s after the batch: service %q, %s, version %d, %d timeline entries; want walks, delivered, 2, 2",
				id, service, business, version, events)
		}
	}
}

// TestClaimsAndDeliveriesWriteEachQueueIndexOnAFewPages, read from the WAL of a real database file: a claim
// of ten messages of ten referrals, and the batch that records their deliveries, each write at most two
// pages of every index of outbox_messages: the entries they move sit together (by state, destination,
// time), none on a page per referral. Before migration 89 the chain index (referral, destination, seq;
// WHERE state <> 'delivered') took 9 pages in each: the claim rewrote every entry, the delivery deleted it.
func TestClaimsAndDeliveriesWriteEachQueueIndexOnAFewPages(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	pages := newWALPages(t, s)
	createReferrals(t, s, 1, 3000, nil)
	queueIndexes := map[string]bool{}
	for _, name := range indexesOf(t, s.wdb, "outbox_messages", true) {
		queueIndexes[name] = true
	}
	if len(queueIndexes) < 5 {
		t.Fatalf("indexes of outbox_messages: %v", queueIndexes)
	}
	check := func(what string) {
		t.Helper()
		written, n := pages.written(), 0
		for name, frames := range written {
			if queueIndexes[name] {
				n += frames
				if frames > 2 {
					t.Errorf("%s wrote %d pages of %s; want at most 2", what, frames, name)
				}
			}
		}
		if n == 0 {
			t.Fatalf("%s wrote no page of outbox_messages' indexes (%v): the attribution is broken", what, written)
		}
	}

	at := pagesBase().Add(2 * time.Hour)
	pages.reset()
	claimed := claimN(t, s, at, 10)
	check("a claim of 10 messages")

	pages.reset()
	deliver(t, s, claimed, at, nil)
	check("recording 10 deliveries")
}

// TestOverdueSweepReadsTheDeadlineIndex: each search the overdue sweep reads its candidates with
// (referral.OverdueSweeper.OverdueSearches) is one range of referrals_deadline (status, deadline_step,
// created_at) on a real database file, before and after ANALYZE, not a walk of every requested referral
// through referrals_status_updated. Migration 92 dropped the (status, created_at) index the sweep's single
// search read, which every intake wrote; that search, without a rung, now reads referrals_status_updated.
func TestOverdueSweepReadsTheDeadlineIndex(t *testing.T) {
	t.Parallel()
	s := openQuiet(t)
	createReferrals(t, s, 1, 3000, nil)
	sweep := referral.OverdueSweeper{Deadline: 72 * time.Hour}
	for _, analyzed := range []bool{false, true} {
		if analyzed {
			if _, err := s.wdb.ExecContext(t.Context(), "ANALYZE"); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range sweep.OverdueSearches(pagesBase().Add(72*time.Hour + 100*time.Second)) {
			query, args, _, _ := dialect().SearchStatement(q)
			if plan := queryPlan(t, s, query, args); !strings.Contains(plan, "INDEX referrals_deadline (status=? AND deadline_step=? AND created_at<?)") {
				t.Errorf("analyzed %v: the overdue search on rung %q: plan %q; want one range of referrals_deadline", analyzed, q.DeadlineSteps, plan)
			}
		}
	}
}

// queryPlan is SQLite's plan for query with args on s's writer (EXPLAIN QUERY PLAN's details, joined).
func queryPlan(t *testing.T, s *Store, query string, args []any) string {
	t.Helper()
	rows, err := s.wdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

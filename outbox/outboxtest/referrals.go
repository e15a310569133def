package outboxtest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

func testCreateAndGet(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	in := intake(1)
	got := create(t, s, in)
	want := stored(in)
	diff(t, "created referral", got, want)
	r := in.Referral.Record
	for _, id := range []string{r.ID, r.TaskID, r.ServiceRequestID} {
		diff(t, "GetReferral("+id+")", get(t, s, id), want)
	}
	for _, id := range []string{"", "nope", "Task/" + r.TaskID} {
		if _, err := s.GetReferral(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("GetReferral(%q): %v, want ErrNotFound", id, err)
		}
	}

	ms := list(t, s, outbox.MessageQuery{ReferralID: r.ID})
	if len(ms) != 1 {
		t.Fatalf("messages: %v, want 1", ids(ms))
	}
	if ms[0].Seq <= 0 {
		t.Errorf("Seq = %d, want > 0", ms[0].Seq)
	}
	e := in.Events[0]
	wantMsg := outbox.Message{ID: e.ID, Seq: ms[0].Seq, ReferralID: r.ID, Destination: e.Destination, Type: e.Type,
		Payload: e.Payload, State: outbox.StatePending, CreatedAt: r.CreatedAt, NextAttemptAt: r.CreatedAt,
		BudgetFrom: r.CreatedAt}
	diff(t, "message", ms[0], wantMsg)
	d := message(t, s, e.ID)
	diff(t, "GetMessage", d, outbox.MessageDetail{Message: wantMsg})
	if _, err := s.GetMessage(ctx, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("GetMessage(nope): %v, want ErrNotFound", err)
	}

	// Version and UpdatedAt are the store's: version 1, updated when created.
	in2 := intake(2)
	in2.Referral.Record.Version = 0
	in2.Referral.Record.UpdatedAt = time.Time{}
	in2.Events = append(in2.Events, event("msg-002-2", mapping.EventReferralCreated, sub1))
	got2 := create(t, s, in2)
	if got2.Record.Version != 1 || !got2.Record.UpdatedAt.Equal(in2.Referral.Record.CreatedAt) {
		t.Errorf("created version %d updated %v, want 1 and %v", got2.Record.Version, got2.Record.UpdatedAt,
			in2.Referral.Record.CreatedAt)
	}
	diff(t, "GetReferral(ref-002)", get(t, s, "ref-002"), got2)
	ms2 := list(t, s, outbox.MessageQuery{ReferralID: "ref-002"})
	diff(t, "messages of ref-002", ids(ms2), []string{"msg-002-1", "msg-002-2"})
	if len(ms2) == 2 && (ms2[0].Seq <= ms[0].Seq || ms2[1].Seq <= ms2[0].Seq) {
		t.Errorf("seqs %d, %d, %d not in commit order", ms[0].Seq, ms2[0].Seq, ms2[1].Seq)
	}

	entries, err := s.Timeline(ctx, r.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "timeline", entries, []outbox.TimelineEntry{{ReferralID: r.ID, Version: 1, At: r.UpdatedAt,
		Cause: outbox.CauseCreate, Status: mapping.StatusRequested, BusinessStatus: mapping.BusinessQueued,
		Messages: []string{e.ID}}})
}

func testIdempotentResend(t *testing.T, open Opener) {
	s := open(t, Options{})
	in := intake(1)
	first := create(t, s, in)
	resend := renamed(in, "-b")
	res, err := s.CreateReferral(t.Context(), resend)
	if err != nil {
		t.Fatalf("resend: %v", err)
	}
	if res.Created {
		t.Fatal("resend: Created = true, want false")
	}
	diff(t, "resend result", res.Referral, first)
	if ms := list(t, s, outbox.MessageQuery{}); len(ms) != 1 {
		t.Errorf("messages after resend: %v, want only the first", ids(ms))
	}
	if _, err := s.GetReferral(t.Context(), resend.Referral.Record.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("resend's own id: %v, want ErrNotFound", err)
	}
	all, _ := search(t, s, outbox.ReferralQuery{})
	diff(t, "referrals", all, []string{"ref-001"})
}

func testConflict(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	in := intake(1)
	create(t, s, in)

	other := renamed(in, "-b")
	other.Fingerprint = "another body"
	_, err := s.CreateReferral(ctx, other)
	wantErr(t, "different body under the same identifier", err, outbox.ErrConflict)
	assertNoTraceOfIDs(t, s, other)

	// One used identifier among new ones is a conflict too, and the new ones stay free.
	mixed := intake(2)
	mixed.Identifiers = append(mixed.Identifiers, in.Identifiers[0])
	_, err = s.CreateReferral(ctx, mixed)
	wantErr(t, "a used identifier among new ones", err, outbox.ErrConflict)
	assertNoTraceOfIDs(t, s, mixed)
	create(t, s, intake(2))
	if ms := list(t, s, outbox.MessageQuery{}); len(ms) != 2 {
		t.Errorf("messages: %v, want 2", ids(ms))
	}
}

// assertNoTraceOfIDs checks that none of in's own ids (not its identifiers, used by another) were written.
func assertNoTraceOfIDs(t *testing.T, s outbox.Store, in mapping.Intake) {
	t.Helper()
	in.Identifiers = nil
	assertNoTrace(t, s, in)
}

func testConcurrentIdenticalCreates(t *testing.T, open Opener) {
	s := open(t, Options{})
	const n = 16
	run := func(fingerprints bool) []outbox.CreateResult {
		results := make([]outbox.CreateResult, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			in := renamed(intake(1), fmt.Sprintf("-%d", i))
			if fingerprints {
				in = renamed(intake(2), fmt.Sprintf("-%d", i))
				in.Fingerprint = fmt.Sprintf("body-%d", i)
			}
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.CreateReferral(t.Context(), in)
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range n {
			switch {
			case errs[i] == nil && results[i].Created:
				created++
			case errs[i] == nil:
			case fingerprints && errors.Is(errs[i], outbox.ErrConflict):
			default:
				t.Errorf("create %d: %v", i, errs[i])
			}
		}
		if created != 1 {
			t.Errorf("%d creates succeeded, want exactly 1", created)
		}
		return results
	}

	results := run(false)
	winner := ""
	for _, r := range results {
		if r.Created {
			winner = r.Referral.Record.ID
		}
	}
	for i, r := range results {
		if r.Referral.Record.ID != winner {
			t.Errorf("create %d returned referral %q, want the winner %q", i, r.Referral.Record.ID, winner)
		}
	}
	run(true)
	all, _ := search(t, s, outbox.ReferralQuery{})
	if len(all) != 2 {
		t.Errorf("referrals: %v, want one per identifier", all)
	}
	if ms := list(t, s, outbox.MessageQuery{}); len(ms) != 2 {
		t.Errorf("messages: %v, want one per referral", ids(ms))
	}
}

// testConcurrentCreatesSharingIdentifiers: creates racing with the same two identifiers, listed in either
// order, make one referral per pair, and every other create gets that one back (the same request again).
func testConcurrentCreatesSharingIdentifiers(t *testing.T, open Opener) {
	s := open(t, Options{})
	const pairs, racers = 12, 6
	var wg sync.WaitGroup
	results := make([][]outbox.CreateResult, pairs)
	errs := make([][]error, pairs)
	start := make(chan struct{})
	for p := range pairs {
		results[p], errs[p] = make([]outbox.CreateResult, racers), make([]error, racers)
		x := mapping.Identifier{System: "https://example.org/a", Value: fmt.Sprintf("x-%d", p)}
		y := mapping.Identifier{System: "https://example.org/b", Value: fmt.Sprintf("y-%d", p)}
		for i := range racers {
			in := renamed(intake(1), fmt.Sprintf("-%d-%d", p, i))
			in.Identifiers = []mapping.Identifier{x, y}
			if i%2 == 1 {
				in.Identifiers = []mapping.Identifier{y, x}
			}
			in.Fingerprint = fmt.Sprintf("body-%d", p)
			wg.Go(func() {
				<-start
				results[p][i], errs[p][i] = s.CreateReferral(t.Context(), in)
			})
		}
	}
	close(start)
	wg.Wait()
	for p := range pairs {
		created, winner := 0, ""
		for i, r := range results[p] {
			if errs[p][i] != nil {
				t.Errorf("pair %d, create %d: %v", p, i, errs[p][i])
				continue
			}
			if r.Created {
				created++
				winner = r.Referral.Record.ID
			}
		}
		if created != 1 {
			t.Errorf("pair %d: %d creates succeeded, want exactly 1", p, created)
			continue
		}
		for i, r := range results[p] {
			if errs[p][i] == nil && r.Referral.Record.ID != winner {
				t.Errorf("pair %d, create %d returned referral %q, want the winner %q", p, i, r.Referral.Record.ID, winner)
			}
		}
	}
	if all, _ := search(t, s, outbox.ReferralQuery{Limit: 100}); len(all) != pairs {
		t.Errorf("%d referrals, want one per pair (%d)", len(all), pairs)
	}
}

func testAtomicCreate(t *testing.T, open Opener) {
	for _, stage := range []string{StageReferral, StageIdentifiers, StageMessages, StageEvents} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			var fail atomic.Bool
			fail.Store(true)
			var seen []string
			var mu sync.Mutex
			s := open(t, Options{FailAfter: func(st string, in mapping.Intake) error {
				mu.Lock()
				seen = append(seen, st)
				mu.Unlock()
				if fail.Load() && st == stage {
					return errInjected
				}
				return nil
			}})
			in := intake(1)
			in.Events = append(in.Events, event("msg-001-2", mapping.EventReferralCreated, sub1))
			_, err := s.CreateReferral(t.Context(), in)
			wantErr(t, "create with failure after "+stage, err, errInjected)
			assertNoTrace(t, s, in)
			counts, oldest, err := s.CountMessages(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for st, c := range counts {
				if c != 0 {
					t.Errorf("%d %s messages after a failed create", c, st)
				}
			}
			if !oldest.IsZero() {
				t.Errorf("oldest pending %v after a failed create", oldest)
			}
			if all, _ := search(t, s, outbox.ReferralQuery{}); len(all) != 0 {
				t.Errorf("referrals after a failed create: %v", all)
			}

			// The identifier was not left behind: the same intake now goes through.
			fail.Store(false)
			diff(t, "create after failure", create(t, s, in), stored(in))
			mu.Lock()
			defer mu.Unlock()
			want := []string{StageReferral, StageIdentifiers, StageMessages, StageEvents}
			i := slices.Index(want, stage)
			diff(t, "stages", seen, append(slices.Clone(want[:i+1]), want...))
		})
	}
}

func testGroupCommitFailureIsolated(t *testing.T, open Opener) {
	const failing = "ref-004"
	s := open(t, Options{FailAfter: func(st string, in mapping.Intake) error {
		if st == StageMessages && in.Referral.Record.ID == failing {
			return errInjected
		}
		return nil
	}})
	const n = 12
	errs := make([]error, n+1)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			<-start
			_, errs[i] = s.CreateReferral(t.Context(), intake(i))
		})
	}
	close(start)
	wg.Wait()
	for i := 1; i <= n; i++ {
		in := intake(i)
		if in.Referral.Record.ID == failing {
			wantErr(t, "failing create", errs[i], errInjected)
			assertNoTrace(t, s, in)
			continue
		}
		if errs[i] != nil {
			t.Errorf("create %d: %v", i, errs[i])
			continue
		}
		// Concurrent creates commit in any order; UpdatedAt is stamped in commit order, never before the
		// intake's time (testUpdatedAtFollowsCommitOrder).
		got, want := get(t, s, in.Referral.Record.ID), stored(in)
		if got.Record.UpdatedAt.Before(want.Record.UpdatedAt) {
			t.Errorf("%s: UpdatedAt %v before the intake's %v", in.Referral.Record.ID, got.Record.UpdatedAt, want.Record.UpdatedAt)
		}
		want.Record.UpdatedAt = got.Record.UpdatedAt
		diff(t, "referral "+in.Referral.Record.ID, got, want)
		if ms := list(t, s, outbox.MessageQuery{ReferralID: in.Referral.Record.ID}); len(ms) != 1 {
			t.Errorf("messages of %s: %v", in.Referral.Record.ID, ids(ms))
		}
	}
	counts, _, err := s.CountMessages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.StatePending] != n-1 {
		t.Errorf("pending = %d, want %d", counts[outbox.StatePending], n-1)
	}
}

// searchFixtures creates five referrals spread over practices, services, statuses and people.
func searchFixtures(t *testing.T, s outbox.Store) {
	t.Helper()
	type fx struct {
		practice string
		dest     mapping.Destination
		status   mapping.TaskStatus
		patient  string
		req      string
		business mapping.BusinessStatus // "": the intake's (queued)
		step     mapping.DeadlineStep   // the deadline ladder's rung
	}
	for i, f := range []fx{
		{"A81001", walks, mapping.StatusRequested, "Patient/p1", "PractitionerRole/r1", "", mapping.DeadlineReminded},
		{"A81001", debt, mapping.StatusAccepted, "Patient/p2", "PractitionerRole/r1", mapping.BusinessDeliveryFailed, ""},
		{"B82002", walks, mapping.StatusCompleted, "Patient/p1", "PractitionerRole/r2", "", ""},
		{"B82002", debt, mapping.StatusRequested, "Patient/p3", "PractitionerRole/r3", mapping.BusinessOverdue, mapping.DeadlineEscalated},
		{"C83003", walks, mapping.StatusInProgress, "Patient/p4", "PractitionerRole/r3", "", ""},
	} {
		in := toService(intake(i+1), f.dest)
		in.Referral.PracticeODS = f.practice
		in.Referral.Record.Status = f.status
		in.Referral.Patient.Reference = f.patient
		in.Referral.Requester.Reference = f.req
		in.Referral.Record.DeadlineStep = f.step
		if f.business != "" {
			in.Referral.BusinessStatus = f.business
		}
		create(t, s, in)
	}
}

func testSearchFilters(t *testing.T, open Opener) {
	s := open(t, Options{})
	searchFixtures(t, s)
	sec := func(n int) time.Time { return at(time.Duration(n) * time.Second) }
	ident := func(sys, v string) *mapping.Identifier { return &mapping.Identifier{System: sys, Value: v} }
	all := []string{"ref-001", "ref-002", "ref-003", "ref-004", "ref-005"}
	for _, tc := range []struct {
		name string
		q    outbox.ReferralQuery
		want []string
	}{
		{"none", outbox.ReferralQuery{}, all},
		{"id", outbox.ReferralQuery{ID: "ref-003"}, []string{"ref-003"}},
		{"task id", outbox.ReferralQuery{TaskID: "task-002"}, []string{"ref-002"}},
		{"service request id", outbox.ReferralQuery{ServiceRequestID: "sr-004"}, []string{"ref-004"}},
		{"unknown id", outbox.ReferralQuery{ID: "nope"}, []string{}},
		{"identifier", outbox.ReferralQuery{Identifier: ident(identSystem, "REF-005")}, []string{"ref-005"}},
		{"identifier value only", outbox.ReferralQuery{Identifier: ident("", "REF-001")}, []string{"ref-001"}},
		{"identifier other system", outbox.ReferralQuery{Identifier: ident("urn:other", "REF-001")}, []string{}},
		{"one practice", outbox.ReferralQuery{Practices: []string{"A81001"}}, []string{"ref-001", "ref-002"}},
		{"two practices", outbox.ReferralQuery{Practices: []string{"A81001", "B82002"}}, all[:4]},
		{"no practice", outbox.ReferralQuery{Practices: []string{}}, []string{}},
		{"service", outbox.ReferralQuery{ServiceID: walks.ID}, []string{"ref-001", "ref-003", "ref-005"}},
		{"practice and service", outbox.ReferralQuery{Practices: []string{"B82002"}, ServiceID: walks.ID}, []string{"ref-003"}},
		{"status", outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested}}, []string{"ref-001", "ref-004"}},
		{"statuses", outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested, mapping.StatusCompleted}},
			[]string{"ref-001", "ref-003", "ref-004"}},
		{"patient", outbox.ReferralQuery{PatientRef: "Patient/p1"}, []string{"ref-001", "ref-003"}},
		{"nhs number", outbox.ReferralQuery{PatientNHSNumber: "9000000002"}, []string{"ref-002"}},
		{"requester", outbox.ReferralQuery{RequesterRef: "PractitionerRole/r3"}, []string{"ref-004", "ref-005"}},
		{"updated after (gt)", outbox.ReferralQuery{UpdatedAfter: sec(2)}, all[2:]},
		{"updated from (ge)", outbox.ReferralQuery{UpdatedFrom: sec(2)}, all[1:]},
		{"updated before (lt)", outbox.ReferralQuery{UpdatedBefore: sec(4)}, all[:3]},
		{"updated until (le)", outbox.ReferralQuery{UpdatedUntil: sec(4)}, all[:4]},
		{"updated between", outbox.ReferralQuery{UpdatedAfter: sec(1), UpdatedBefore: sec(5)}, all[1:4]},
		{"between microseconds", outbox.ReferralQuery{UpdatedFrom: sec(3).Add(-time.Microsecond),
			UpdatedUntil: sec(3).Add(time.Microsecond)}, []string{"ref-003"}},
		{"after cursor", outbox.ReferralQuery{After: &outbox.Cursor{UpdatedAt: sec(3), ID: "ref-003"}}, all[3:]},
		{"created until (le)", outbox.ReferralQuery{CreatedUntil: sec(3)}, all[:3]},
		{"created until, microseconds", outbox.ReferralQuery{CreatedUntil: sec(3).Add(-time.Microsecond)}, all[:2]},
		{"business status", outbox.ReferralQuery{BusinessStatuses: []mapping.BusinessStatus{mapping.BusinessDeliveryFailed}}, []string{"ref-002"}},
		{"business statuses", outbox.ReferralQuery{BusinessStatuses: []mapping.BusinessStatus{mapping.BusinessDeliveryFailed, mapping.BusinessOverdue}}, []string{"ref-002", "ref-004"}},
		{"deadline step", outbox.ReferralQuery{DeadlineSteps: []mapping.DeadlineStep{mapping.DeadlineReminded}}, []string{"ref-001"}},
		{"no deadline step yet", outbox.ReferralQuery{DeadlineSteps: []mapping.DeadlineStep{mapping.DeadlineNone}}, []string{"ref-002", "ref-003", "ref-005"}},
		{"deadline steps", outbox.ReferralQuery{DeadlineSteps: []mapping.DeadlineStep{mapping.DeadlineReminded, mapping.DeadlineEscalated}}, []string{"ref-001", "ref-004"}},
		{"combined", outbox.ReferralQuery{ServiceID: walks.ID, Statuses: []mapping.TaskStatus{mapping.StatusCompleted,
			mapping.StatusInProgress}, UpdatedFrom: sec(4)}, []string{"ref-005"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, next := search(t, s, tc.q)
			diff(t, "ids", got, tc.want)
			if next != nil {
				t.Errorf("next cursor %+v, want nil (one page)", next)
			}
		})
	}

	// Full results carry the referral as stored.
	rs, _, err := s.SearchReferrals(t.Context(), outbox.ReferralQuery{ID: "ref-002"})
	if err != nil || len(rs) != 1 {
		t.Fatalf("search ref-002: %v %v", rs, err)
	}
	diff(t, "searched referral", rs[0], get(t, s, "ref-002"))

	// A full page has a cursor to its last row; the page that ends the results has none.
	got, next := search(t, s, outbox.ReferralQuery{Limit: 2})
	diff(t, "page 1", got, all[:2])
	diff(t, "cursor", next, &outbox.Cursor{UpdatedAt: sec(2), ID: "ref-002"})
	if _, next := search(t, s, outbox.ReferralQuery{Limit: 5}); next != nil {
		t.Errorf("exactly the last row: cursor %+v, want nil", next)
	}
}

func testKeysetPaging(t *testing.T, open Opener) {
	s := open(t, Options{})
	const n = 25
	var want []string
	for i := 1; i <= n; i++ {
		in := intake(i)
		// Intakes carrying the same time (three per second, created in reverse id order) still come back
		// in creation order: the store stamps UpdatedAt strictly increasing in commit order (see
		// testUpdatedAtFollowsCommitOrder), so the (UpdatedAt, ID) order is the commit order.
		in.Referral.Record.ID = fmt.Sprintf("ref-%03d", 100-i)
		in.Referral.Record.CreatedAt = at(time.Duration(i/3) * time.Second)
		in.Referral.Record.UpdatedAt = in.Referral.Record.CreatedAt
		if i%2 == 0 {
			in = toService(in, debt)
		}
		create(t, s, in)
		want = append(want, in.Referral.Record.ID)
	}

	page := func(q outbox.ReferralQuery) ([]string, int) {
		var got []string
		pages := 0
		for {
			ids, next := search(t, s, q)
			pages++
			got = append(got, ids...)
			if next == nil {
				return got, pages
			}
			if pages > n {
				t.Fatal("paging does not end")
			}
			q.After = next
		}
	}
	got, pages := page(outbox.ReferralQuery{Limit: 7})
	diff(t, "all pages", got, want)
	if pages != 4 {
		t.Errorf("%d pages of 7 for 25, want 4", pages)
	}
	got, _ = page(outbox.ReferralQuery{Limit: 3, ServiceID: debt.ID})
	var wantDebt []string
	for _, id := range want {
		if r := get(t, s, id); r.Record.Service.ID == debt.ID {
			wantDebt = append(wantDebt, id)
		}
	}
	diff(t, "debt pages", got, wantDebt)
}

func testUpdateReferral(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	in := intake(1)
	created := create(t, s, in)
	drain(s)
	now := at(time.Hour)
	accept := func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		if stored, err := s.GetReferral(ctx, "ref-001"); err != nil {
			t.Errorf("GetReferral during update: %v", err)
		} else {
			diff(t, "current referral given to the update", cur, stored)
		}
		next := cur.Referral
		next.Record.Status = mapping.StatusAccepted
		next.Record.StatusReason = "welcome"
		return next, []mapping.Event{event("msg-001-2", mapping.EventReferralUpdated, walks)}, nil
	}

	_, err := s.UpdateReferral(ctx, "ref-001", 2, now, accept)
	wantErr(t, "stale If-Match", err, outbox.ErrVersionMismatch)
	diff(t, "after a version mismatch", get(t, s, "ref-001"), created)
	if signalled(s) {
		t.Error("Changes signalled by a failed update")
	}

	got, err := s.UpdateReferral(ctx, "task-001", 1, now, accept)
	if err != nil {
		t.Fatal(err)
	}
	want := created
	want.Record.Status = mapping.StatusAccepted
	want.Record.StatusReason = "welcome"
	want.Record.Version = 2
	want.Record.UpdatedAt = now
	diff(t, "updated referral", got, want)
	diff(t, "read back", get(t, s, "sr-001"), want)
	if !signalled(s) {
		t.Error("Changes not signalled after an update with events")
	}
	ms := list(t, s, outbox.MessageQuery{ReferralID: "ref-001"})
	diff(t, "messages", ids(ms), []string{"msg-001-1", "msg-001-2"})
	if len(ms) == 2 {
		m := ms[1]
		if m.State != outbox.StatePending || !m.CreatedAt.Equal(now) || !m.NextAttemptAt.Equal(now) ||
			!m.BudgetFrom.Equal(now) || m.Type != mapping.EventReferralUpdated || m.Seq <= ms[0].Seq {
			t.Errorf("update's message: %+v", m)
		}
	}
	// The index columns follow the update.
	ids1, _ := search(t, s, outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusAccepted}, UpdatedFrom: now})
	diff(t, "search by new status", ids1, []string{"ref-001"})
	ids2, _ := search(t, s, outbox.ReferralQuery{Statuses: []mapping.TaskStatus{mapping.StatusRequested}})
	diff(t, "search by old status", ids2, []string{})

	// expectVersion 0 skips the check.
	later := now.Add(time.Minute)
	got, err = s.UpdateReferral(ctx, "ref-001", 0, later, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusInProgress
		next.BusinessStatus = mapping.BusinessDelivered
		return next, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Record.Version != 3 || !got.Record.UpdatedAt.Equal(later) || got.BusinessStatus != mapping.BusinessDelivered {
		t.Errorf("unconditional update: version %d at %v business %q", got.Record.Version, got.Record.UpdatedAt, got.BusinessStatus)
	}

	// The update's own error comes back unchanged and writes nothing; so do a panic and a change of identity.
	errBoom := errors.New("transition refused")
	_, err = s.UpdateReferral(ctx, "ref-001", 3, later, func(outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return mapping.Referral{}, nil, errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("update error: %v, want %v", err, errBoom)
	}
	_, err = s.UpdateReferral(ctx, "ref-001", 3, later, func(outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		panic("bad update")
	})
	if err == nil {
		t.Error("panicking update: no error")
	}
	_, err = s.UpdateReferral(ctx, "ref-001", 3, later, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.TaskID = "task-other"
		return next, nil, nil
	})
	if err == nil {
		t.Error("update changing the task id: no error")
	}
	_, err = s.UpdateReferral(ctx, "ref-001", 3, later, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusCompleted
		return next, []mapping.Event{event("msg-001-1", mapping.EventReferralUpdated, walks)}, nil // duplicate id
	})
	if err == nil {
		t.Error("update with a duplicate message id: no error")
	}
	diff(t, "after refused updates", get(t, s, "ref-001"), got)
	if ms := list(t, s, outbox.MessageQuery{ReferralID: "ref-001"}); len(ms) != 2 {
		t.Errorf("messages after refused updates: %v", ids(ms))
	}
	if _, err := s.UpdateReferral(ctx, "nope", 0, later, accept); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("update of unknown referral: %v, want ErrNotFound", err)
	}

	entries, err := s.Timeline(ctx, "ref-001")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "timeline", entries, []outbox.TimelineEntry{
		{ReferralID: "ref-001", Version: 1, At: in.Referral.Record.CreatedAt, Cause: outbox.CauseCreate,
			Status: mapping.StatusRequested, BusinessStatus: mapping.BusinessQueued, Messages: []string{"msg-001-1"}},
		{ReferralID: "ref-001", Version: 2, At: now, Cause: outbox.CauseUpdate, Status: mapping.StatusAccepted,
			BusinessStatus: mapping.BusinessQueued, StatusReason: "welcome", Messages: []string{"msg-001-2"}},
		{ReferralID: "ref-001", Version: 3, At: later, Cause: outbox.CauseUpdate, Status: mapping.StatusInProgress,
			BusinessStatus: mapping.BusinessDelivered, StatusReason: "welcome"},
	})
	if _, err := s.Timeline(ctx, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Timeline(nope): %v, want ErrNotFound", err)
	}
}

func testUpdateReferralUnchanged(t *testing.T, open Opener) {
	s := open(t, Options{})
	created := create(t, s, intake(1))
	got, err := s.UpdateReferral(t.Context(), "ref-001", 1, at(time.Hour), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return cur.Referral, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "unchanged update result", got, created)
	diff(t, "unchanged update stored", get(t, s, "ref-001"), created)
	if entries, err := s.Timeline(t.Context(), "ref-001"); err != nil || len(entries) != 1 {
		t.Errorf("timeline after an unchanged update: %v %v", entries, err)
	}
}

// testReferralPractice: the referring practice of a referral, by referral id alone (not by its Task or
// ServiceRequest id), as stored; ErrNotFound for any other id.
func testReferralPractice(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	in := intake(1)
	in.Referral.PracticeODS = "B82002"
	create(t, s, in)
	if ods, err := s.ReferralPractice(ctx, "ref-001"); err != nil || ods != "B82002" {
		t.Errorf("practice of ref-001: %q, %v; want B82002", ods, err)
	}
	for _, id := range []string{"task-001", "sr-001", "ref-002", ""} {
		if ods, err := s.ReferralPractice(ctx, id); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("practice of %q: %q, %v; want ErrNotFound", id, ods, err)
		}
	}
}

// testCreateRefusesTakenIDs: a create whose referral, Task or ServiceRequest id, or one of whose message ids,
// is already taken fails and writes nothing (none of its rows: its identifiers stay free, its other messages
// are not queued), on every backend however it writes the rows.
func testCreateRefusesTakenIDs(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	taken := map[string]func(*mapping.Intake){
		"referral id":        func(in *mapping.Intake) { in.Referral.Record.ID = "ref-001" },
		"task id":            func(in *mapping.Intake) { in.Referral.Record.TaskID = "task-001" },
		"service request id": func(in *mapping.Intake) { in.Referral.Record.ServiceRequestID = "sr-001" },
		"message id (the last)": func(in *mapping.Intake) {
			in.Events = append(in.Events, event("msg-001-1", mapping.EventReferralCreated, debt))
		},
	}
	for what, spoil := range taken {
		in := intake(2)
		spoil(&in)
		if _, err := s.CreateReferral(ctx, in); err == nil {
			t.Errorf("a create with a taken %s: no error", what)
		}
		if _, err := s.GetReferral(ctx, "sr-002"); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("after a create with a taken %s: its ServiceRequest reads %v; want ErrNotFound", what, err)
		}
		if d, err := s.GetMessage(ctx, "msg-002-1"); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("after a create with a taken %s: its message reads %+v, %v; want ErrNotFound", what, d.Message, err)
		}
	}
	// Its identifier is still free: the same referral with fresh ids goes in.
	res, err := s.CreateReferral(ctx, intake(2))
	if err != nil || !res.Created {
		t.Fatalf("the create with nothing taken: %+v, %v", res, err)
	}
	if d, err := s.GetMessage(ctx, "msg-002-1"); err != nil || d.Message.ReferralID != "ref-002" {
		t.Errorf("its message: %+v, %v", d.Message, err)
	}
}

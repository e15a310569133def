package outboxtest

import (
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// testSearchListsAndCount: _id lists (any of the task or ServiceRequest ids; an empty list matches nothing),
// the ServiceRequest status filtered in the query (so a page is full and there is no next page of nothing),
// practices matched whatever their case, and CountReferrals counting every match whatever the page.
func testSearchListsAndCount(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for n := 1; n <= 6; n++ {
		in := intake(n)
		if n%2 == 0 {
			in.Referral.PracticeODS = "b82002" // stored in upper case
		}
		create(t, s, in)
	}
	// Revoke the ServiceRequests of referrals 2 and 5 (their Tasks are cancelled).
	for i, id := range []string{"ref-002", "ref-005"} {
		if _, err := s.UpdateReferral(ctx, id, 0, at(time.Minute+time.Duration(i)*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.Record.Status = mapping.StatusCancelled
			next.ServiceRequestStatus = "revoked"
			return next, nil, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q outbox.ReferralQuery) int {
		t.Helper()
		n, err := s.CountReferrals(ctx, q)
		if err != nil {
			t.Fatalf("CountReferrals(%+v): %v", q, err)
		}
		return n
	}
	for _, c := range []struct {
		name string
		q    outbox.ReferralQuery
		want []string
	}{
		{"task ids", outbox.ReferralQuery{TaskIDs: []string{"task-004", "task-001", "nope"}}, []string{"ref-001", "ref-004"}},
		{"ServiceRequest ids", outbox.ReferralQuery{ServiceRequestIDs: []string{"sr-003", "sr-006"}}, []string{"ref-003", "ref-006"}},
		{"empty id list", outbox.ReferralQuery{TaskIDs: []string{}}, []string{}},
		{"ids and a practice", outbox.ReferralQuery{TaskIDs: []string{"task-001", "task-002"}, Practices: []string{"B82002"}}, []string{"ref-002"}},
		{"practice in lower case", outbox.ReferralQuery{Practices: []string{"b82002"}}, []string{"ref-004", "ref-006", "ref-002"}},
		{"revoked", outbox.ReferralQuery{ServiceRequestStatuses: []string{"revoked"}}, []string{"ref-002", "ref-005"}},
		{"active or revoked", outbox.ReferralQuery{ServiceRequestStatuses: []string{"active", "revoked"}, Practices: []string{"A81001"}}, []string{"ref-001", "ref-003", "ref-005"}},
		{"completed", outbox.ReferralQuery{ServiceRequestStatuses: []string{"completed"}}, []string{}},
		{"no status listed", outbox.ReferralQuery{ServiceRequestStatuses: []string{}}, []string{}},
	} {
		got, _ := search(t, s, c.q)
		diff(t, c.name, got, c.want)
		if n := count(c.q); n != len(c.want) {
			t.Errorf("%s: CountReferrals = %d, want %d", c.name, n, len(c.want))
		}
	}
	// The status filter is applied before paging: pages of one hold the two revoked referrals, then stop.
	q := outbox.ReferralQuery{ServiceRequestStatuses: []string{"revoked"}, Limit: 1}
	var pages [][]string
	for {
		got, next := search(t, s, q)
		pages = append(pages, got)
		if next == nil {
			break
		}
		q.After = next
		if len(pages) > 5 {
			t.Fatal("paging does not end")
		}
	}
	diff(t, "revoked, a page at a time", pages, [][]string{{"ref-002"}, {"ref-005"}})
	// The count ignores the page: cursor and limit.
	if n := count(outbox.ReferralQuery{Limit: 1, After: &outbox.Cursor{UpdatedAt: at(0), ID: ""}}); n != 6 {
		t.Errorf("count with a page: %d, want 6", n)
	}
	if n := count(outbox.ReferralQuery{Practices: []string{}}); n != 0 {
		t.Errorf("count of no practices: %d", n)
	}
	if n := count(outbox.ReferralQuery{UpdatedAfter: at(time.Minute)}); n != 1 {
		t.Errorf("count after a time: %d, want 1", n)
	}
}

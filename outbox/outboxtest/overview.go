package outboxtest

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// testAttemptResponse: the receiver's answer kept with an attempt reads back as it was written, on every
// backend, and is stored as valid text (no NUL, valid UTF-8) and bounded whatever a caller passes.
func testAttemptResponse(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	create(t, s, intake(2))
	now := at(time.Minute)
	claim(t, s, "a", now, lease, 10)
	answer := `{"error":"unknown service code","detail":"Café référence"}`
	for id, resp := range map[string]string{"msg-001-1": answer, "msg-002-1": "bad\x00\xffbytes" + strings.Repeat("x", 5000)} {
		err := s.CompleteAttempt(ctx, id, now, outbox.AttemptResult{Owner: "a", State: outbox.StateDead,
			Attempt: outbox.Attempt{StartedAt: now, StatusCode: 422, Error: "HTTP 422", Response: resp}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := message(t, s, "msg-001-1"); len(d.Attempts) != 1 || d.Attempts[0].Response != answer {
		t.Errorf("stored response %+v, want %q", d.Attempts, answer)
	}
	got := message(t, s, "msg-002-1").Attempts[0].Response
	if len(got) > 2*outbox.MaxResponseBytes || strings.ContainsRune(got, 0) || !utf8.ValidString(got) ||
		!strings.HasPrefix(got, "badbytes") {
		t.Errorf("stored response of a bad caller: %d bytes %q…", len(got), got[:min(len(got), 20)])
	}
}

// msgID is the id of intake(n)'s message.
func msgID(n int) string { return fmt.Sprintf("msg-%03d-1", n) }

// testOverviewCounts: messages counted by destination and state, deliveries since a time, and the
// unacknowledged referrals of each service (waiting, overdue, oldest).
func testOverviewCounts(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for i := 1; i <= 5; i++ {
		in := intake(i)
		if i > 3 {
			in = toService(in, debt)
		}
		create(t, s, in)
	}
	now := at(time.Minute)
	kill(t, s, "msg-001-1", now)
	claim(t, s, "a", now, lease, 10)
	complete(t, s, "msg-002-1", "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	complete(t, s, "msg-004-1", "a", at(2*time.Minute), outbox.StateDelivered, time.Time{}, 204, "")
	complete(t, s, "msg-003-1", "a", now, outbox.StatePending, now.Add(time.Hour), 503, "HTTP 503")
	// msg-005-1 stays inflight.

	counts, err := s.CountByDestination(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "by destination", counts, []outbox.DestinationCount{
		{Destination: debt, State: outbox.StateDelivered, Count: 1},
		{Destination: debt, State: outbox.StateInflight, Count: 1},
		{Destination: walks, State: outbox.StateDead, Count: 1},
		{Destination: walks, State: outbox.StateDelivered, Count: 1},
		{Destination: walks, State: outbox.StatePending, Count: 1},
	})
	for _, tc := range []struct {
		since time.Time
		want  int
	}{{now, 2}, {now.Add(time.Second), 1}, {at(3 * time.Minute), 0}} {
		if n, err := s.CountDelivered(ctx, tc.since); err != nil || n != tc.want {
			t.Errorf("CountDelivered(%v) = %d, %v; want %d", tc.since, n, err, tc.want)
		}
	}

	// Referral 2 is acknowledged; referral 3 is overdue.
	if _, err := setStatus(t, s, "ref-002", now, mapping.StatusReceived, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateReferral(ctx, "ref-003", 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.BusinessStatus = mapping.BusinessOverdue
		return next, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	stats, err := s.InboxStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "inbox stats", stats, []outbox.InboxStat{
		{ServiceID: debt.ID, Waiting: 2, Overdue: 0, OldestWaiting: at(4 * time.Second)},
		{ServiceID: walks.ID, Waiting: 2, Overdue: 1, OldestWaiting: at(time.Second)},
	})
}

// testListByType: messages filtered by event type.
func testListByType(t *testing.T, open Opener) {
	s := open(t, Options{})
	create(t, s, intake(1))
	create(t, s, intake(2))
	addEvents(t, s, "ref-001", at(time.Minute), event("msg-001-2", mapping.EventReferralUpdated, walks),
		event("msg-001-3", mapping.EventNotification, sub1))
	diff(t, "updated", ids(list(t, s, outbox.MessageQuery{Types: []mapping.EventType{mapping.EventReferralUpdated}})),
		[]string{"msg-001-2"})
	diff(t, "created or notification", ids(list(t, s, outbox.MessageQuery{Types: []mapping.EventType{
		mapping.EventReferralCreated, mapping.EventNotification}})), []string{"msg-001-1", "msg-002-1", "msg-001-3"})
	diff(t, "updated of referral 2", ids(list(t, s, outbox.MessageQuery{ReferralID: "ref-002",
		Types: []mapping.EventType{mapping.EventReferralUpdated}})), []string{})
}

// testReplayPaced: a paced replay makes its messages due one pace apart, in Seq order, from DueFrom (or now).
func testReplayPaced(t *testing.T, open Opener) {
	s := open(t, Options{})
	for i := 1; i <= 3; i++ {
		create(t, s, intake(i))
	}
	now := at(time.Minute)
	for i := 1; i <= 3; i++ {
		kill(t, s, msgID(i), now)
	}
	from := now.Add(10 * time.Second)
	got, err := s.ReplayMessages(t.Context(), now, outbox.ReplayRequest{Filter: &outbox.MessageQuery{}, Reason: "back",
		Actor: "ops", Pace: 100 * time.Millisecond, DueFrom: from})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replayed", ids(got), []string{"msg-001-1", "msg-002-1", "msg-003-1"})
	for i, id := range []string{"msg-001-1", "msg-002-1", "msg-003-1"} {
		m := message(t, s, id).Message
		want := from.Add(time.Duration(i) * 100 * time.Millisecond)
		if !m.NextAttemptAt.Equal(want) || !m.BudgetFrom.Equal(now) {
			t.Errorf("%s: due %v budget %v; want due %v, budget from %v", id, m.NextAttemptAt, m.BudgetFrom, want, now)
		}
	}
	diff(t, "claim at the first due time", ids(claim(t, s, "a", from, lease, 10)), []string{"msg-001-1"})
}

package outboxtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// notice is the suite's notification payload (Options.Notify): what the fan-out passed to the renderer.
type notice struct {
	Sub      string             `json:"sub"`
	Referral string             `json:"referral"`
	Version  int                `json:"version"`
	Status   mapping.TaskStatus `json:"status"`
	N        int64              `json:"n"`
	Events   int64              `json:"events"` // sub.EventsSinceStart as given to the renderer
	At       time.Time          `json:"at"`
}

// errNotify is what testNotify returns for a referral whose status reason asks for it.
var errNotify = errors.New("notify failed")

// failNotify is a status reason that makes testNotify fail.
const failNotify = "notify-fails"

func testNotify(sub outbox.Subscription, ref outbox.Referral, n int64, now time.Time) (json.RawMessage, error) {
	if ref.Record.StatusReason == failNotify {
		return nil, errNotify
	}
	return json.Marshal(notice{Sub: sub.ID, Referral: ref.Record.ID, Version: ref.Record.Version,
		Status: ref.Record.Status, N: n, Events: sub.EventsSinceStart, At: now})
}

// subscription is an active subscription fixture for practice.
func subscription(id, practice string, created time.Time) outbox.Subscription {
	return outbox.Subscription{
		ID: id, OwnerClientID: "client-" + practice, PracticeODS: practice,
		Criteria: "Task?requester:identifier=" + mapping.ODSOrganizationSystem + "|" + practice,
		Endpoint: "https://gp.example/hooks/" + id, Header: []string{"Authorization: Bearer secret-" + id},
		Payload: mapping.PayloadFullResource, BaseURL: "https://socialrx.example/fhir", CreatedAt: created,
		Resource: json.RawMessage(`{"resourceType":"Subscription","id":"` + id + `"}`),
	}
}

func createSub(t *testing.T, s outbox.Store, sub outbox.Subscription) outbox.Subscription {
	t.Helper()
	got, err := s.CreateSubscription(t.Context(), sub, 0)
	if err != nil {
		t.Fatalf("CreateSubscription(%s): %v", sub.ID, err)
	}
	return got
}

func getSub(t *testing.T, s outbox.Store, id string) outbox.Subscription {
	t.Helper()
	got, err := s.GetSubscription(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSubscription(%s): %v", id, err)
	}
	return got
}

// notices returns the notifications queued for subscription id, in Seq order, with their messages.
func notices(t *testing.T, s outbox.Store, id string) ([]notice, []outbox.Message) {
	t.Helper()
	dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: id}
	ms := list(t, s, outbox.MessageQuery{Destination: &dest, Limit: 1000})
	out := make([]notice, 0, len(ms))
	for _, m := range ms {
		if m.Type != mapping.EventNotification {
			t.Errorf("message %s to %s has type %q, want %q", m.ID, dest, m.Type, mapping.EventNotification)
		}
		var n notice
		if err := json.Unmarshal(m.Payload, &n); err != nil {
			t.Fatalf("message %s: payload %s: %v", m.ID, m.Payload, err)
		}
		out = append(out, n)
	}
	return out, ms
}

// setStatus moves a referral to st through UpdateReferral at now.
func setStatus(t *testing.T, s outbox.Store, id string, now time.Time, st mapping.TaskStatus, reason string) (outbox.Referral, error) {
	t.Helper()
	return s.UpdateReferral(t.Context(), id, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = st
		next.Record.StatusReason = reason
		return next, nil, nil
	})
}

func testSubscriptionCRUD(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	ctx := t.Context()
	in := subscription("sub-a", "A81001", at(time.Second))
	in.Status = outbox.SubscriptionOff // ignored: created active
	in.EventsSinceStart = 7            // ignored: starts at 0
	got := createSub(t, s, in)
	want := subscription("sub-a", "A81001", at(time.Second))
	want.Status, want.UpdatedAt = outbox.SubscriptionActive, want.CreatedAt
	diff(t, "created", got, want)
	diff(t, "read back", getSub(t, s, "sub-a"), want)
	if _, err := s.CreateSubscription(ctx, in, 0); err == nil {
		t.Error("CreateSubscription with an existing id succeeded")
	}
	bad := subscription("sub-bad", "A81001", at(time.Second))
	bad.Payload = ""
	if _, err := s.CreateSubscription(ctx, bad, 0); err == nil {
		t.Error("CreateSubscription without payload content succeeded")
	}
	createSub(t, s, subscription("sub-b", "B82002", at(2*time.Second)))
	createSub(t, s, subscription("sub-c", "A81001", at(3*time.Second)))

	off, err := s.UpdateSubscriptionStatus(ctx, "sub-c", outbox.SubscriptionOff, at(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if off.Status != outbox.SubscriptionOff || !off.UpdatedAt.Equal(at(time.Minute)) {
		t.Errorf("after off: status %s updated %v", off.Status, off.UpdatedAt)
	}
	again, err := s.UpdateSubscriptionStatus(ctx, "sub-c", outbox.SubscriptionOff, at(time.Hour))
	if err != nil || !again.UpdatedAt.Equal(at(time.Minute)) {
		t.Errorf("setting off again: %v, updated %v (want unchanged)", err, again.UpdatedAt)
	}
	_, err = s.UpdateSubscriptionStatus(ctx, "nope", outbox.SubscriptionOff, at(time.Hour))
	wantErr(t, "UpdateSubscriptionStatus(unknown)", err, outbox.ErrNotFound)
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-a", "", at(time.Hour)); err == nil {
		t.Error("UpdateSubscriptionStatus with the zero status succeeded")
	}
	_, err = s.GetSubscription(ctx, "nope")
	wantErr(t, "GetSubscription(unknown)", err, outbox.ErrNotFound)

	listIDs := func(q outbox.SubscriptionQuery) []string {
		t.Helper()
		ss, err := s.ListSubscriptions(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, x := range ss {
			out = append(out, x.ID)
		}
		return out
	}
	diff(t, "all", listIDs(outbox.SubscriptionQuery{}), []string{"sub-a", "sub-b", "sub-c"})
	diff(t, "by owner", listIDs(outbox.SubscriptionQuery{OwnerClientID: "client-A81001"}), []string{"sub-a", "sub-c"})
	diff(t, "by practice", listIDs(outbox.SubscriptionQuery{PracticeODS: "B82002"}), []string{"sub-b"})
	diff(t, "active of A81001", listIDs(outbox.SubscriptionQuery{PracticeODS: "A81001",
		Statuses: []outbox.SubscriptionStatus{outbox.SubscriptionActive}}), []string{"sub-a"})
	for _, st := range outbox.AllSubscriptionStatuses() {
		if !st.Valid() {
			t.Errorf("%q is listed but not valid", st)
		}
	}
}

func testSubscriptionFanOut(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	ctx := t.Context()
	createSub(t, s, subscription("sub-a", "A81001", t0))
	createSub(t, s, subscription("sub-b", "B82002", t0)) // another practice: never notified here
	createSub(t, s, subscription("sub-off", "A81001", t0))
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-off", outbox.SubscriptionOff, t0); err != nil {
		t.Fatal(err)
	}

	// Version 1: CreateReferral.
	create(t, s, intake(1))
	// An identical resend writes no version and so no notification.
	if res, err := s.CreateReferral(ctx, intake(1)); err != nil || res.Created {
		t.Fatalf("resend: created %v, %v", res.Created, err)
	}
	// Version 2: UpdateReferral.
	if _, err := setStatus(t, s, "ref-001", at(time.Minute), mapping.StatusReceived, ""); err != nil {
		t.Fatal(err)
	}
	// No change: nothing.
	if _, err := s.UpdateReferral(ctx, "ref-001", 0, at(2*time.Minute), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return cur.Referral, nil, outbox.ErrNoChange
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := setStatus(t, s, "ref-001", at(2*time.Minute), mapping.StatusReceived, ""); err != nil { // unchanged
		t.Fatal(err)
	}
	// Version 3: CompleteAttempt's update (the service delivery moves businessStatus).
	now := at(3 * time.Minute)
	diff(t, "claim walks", ids(claim(t, s, "a", now, lease, 1)), []string{"msg-001-1"})
	if err := s.CompleteAttempt(ctx, "msg-001-1", now, outbox.AttemptResult{
		Attempt: outbox.Attempt{StartedAt: now, StatusCode: 400, Error: "HTTP 400"}, Owner: "a",
		State: outbox.StateDead, Update: outbox.MarkDeliveryFailed,
	}); err != nil {
		t.Fatal(err)
	}
	// Version 4: ReplayMessages' update.
	if _, err := s.ReplayMessages(ctx, at(4*time.Minute), outbox.ReplayRequest{IDs: []string{"msg-001-1"},
		Reason: "fixed", Actor: "ops", Update: outbox.QueuedAgain}); err != nil {
		t.Fatal(err)
	}
	// A failing renderer aborts the whole change: no version, no message, no number used.
	if _, err := setStatus(t, s, "ref-001", at(5*time.Minute), mapping.StatusRejected, failNotify); !errors.Is(err, errNotify) {
		t.Fatalf("update with a failing renderer: %v, want errNotify", err)
	}
	if r := get(t, s, "ref-001"); r.Record.Version != 4 || r.Record.Status != mapping.StatusReceived {
		t.Errorf("after the failed update: version %d status %s, want 4 received", r.Record.Version, r.Record.Status)
	}

	got, ms := notices(t, s, "sub-a")
	want := []notice{
		{Sub: "sub-a", Referral: "ref-001", Version: 1, Status: mapping.StatusRequested, N: 1, Events: 1, At: at(time.Second)},
		{Sub: "sub-a", Referral: "ref-001", Version: 2, Status: mapping.StatusReceived, N: 2, Events: 2, At: at(time.Minute)},
		{Sub: "sub-a", Referral: "ref-001", Version: 3, Status: mapping.StatusReceived, N: 3, Events: 3, At: at(3 * time.Minute)},
		{Sub: "sub-a", Referral: "ref-001", Version: 4, Status: mapping.StatusReceived, N: 4, Events: 4, At: at(4 * time.Minute)},
	}
	diff(t, "notifications of sub-a", got, want)
	for i, m := range ms {
		if m.State != outbox.StatePending || m.ReferralID != "ref-001" || !m.CreatedAt.Equal(want[i].At) ||
			!m.NextAttemptAt.Equal(want[i].At) || m.ID == "" {
			t.Errorf("notification %d: %+v", i+1, m)
		}
	}
	if n := getSub(t, s, "sub-a").EventsSinceStart; n != 4 {
		t.Errorf("sub-a EventsSinceStart = %d, want 4", n)
	}
	for _, id := range []string{"sub-b", "sub-off"} {
		if got, _ := notices(t, s, id); len(got) != 0 {
			t.Errorf("%s got %d notifications, want none", id, len(got))
		}
		if n := getSub(t, s, id).EventsSinceStart; n != 0 {
			t.Errorf("%s EventsSinceStart = %d, want 0", id, n)
		}
	}

	// Same transaction: each notification belongs to the version that caused it (the timeline lists it).
	tl, err := s.Timeline(ctx, "ref-001")
	if err != nil {
		t.Fatal(err)
	}
	if len(tl) != 4 {
		t.Fatalf("timeline has %d versions, want 4", len(tl))
	}
	for i, e := range tl {
		if !slices.Contains(e.Messages, ms[i].ID) {
			t.Errorf("version %d (%s) does not list its notification %s: %v", e.Version, e.Cause, ms[i].ID, e.Messages)
		}
	}

	// Another practice's referral notifies only that practice's subscription.
	other := intake(2)
	other.Referral.PracticeODS = "B82002"
	create(t, s, other)
	if got, _ := notices(t, s, "sub-b"); len(got) != 1 || got[0].Referral != "ref-002" || got[0].N != 1 {
		t.Errorf("sub-b notifications: %+v, want one for ref-002 numbered 1", got)
	}
	if got, _ := notices(t, s, "sub-a"); len(got) != 4 {
		t.Errorf("sub-a got %d notifications after another practice's referral, want still 4", len(got))
	}
}

func testSubscriptionFanOutAtomic(t *testing.T, open Opener) {
	fail := intake(1)
	s := open(t, Options{Notify: testNotify, FailAfter: func(stage string, in mapping.Intake) error {
		if stage == StageEvents && in.Referral.Record.ID == fail.Referral.Record.ID {
			return errInjected
		}
		return nil
	}})
	createSub(t, s, subscription("sub-a", "A81001", t0))
	if _, err := s.CreateReferral(t.Context(), fail); !errors.Is(err, errInjected) {
		t.Fatalf("CreateReferral: %v, want the injected failure", err)
	}
	assertNoTrace(t, s, fail)
	if got, _ := notices(t, s, "sub-a"); len(got) != 0 {
		t.Errorf("a rolled-back create left %d notifications", len(got))
	}
	if n := getSub(t, s, "sub-a").EventsSinceStart; n != 0 {
		t.Errorf("a rolled-back create used event numbers: EventsSinceStart = %d", n)
	}
	create(t, s, intake(2))
	if got, _ := notices(t, s, "sub-a"); len(got) != 1 || got[0].N != 1 || got[0].Referral != "ref-002" {
		t.Errorf("after the rollback: %+v, want ref-002 numbered 1", got)
	}
}

func testSubscriptionNumberingConcurrent(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	createSub(t, s, subscription("sub-a", "A81001", t0))
	createSub(t, s, subscription("sub-z", "A81001", t0))
	const referrals, updates = 8, 5
	for i := 1; i <= referrals; i++ {
		create(t, s, intake(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, referrals*updates)
	for i := 1; i <= referrals; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ref-%03d", i)
			for u := 1; u <= updates; u++ {
				_, err := s.UpdateReferral(t.Context(), id, 0, at(time.Duration(u)*time.Minute),
					func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
						next := cur.Referral
						next.Record.Notes = append(slices.Clone(next.Record.Notes), fmt.Sprintf("note %d", u))
						return next, nil, nil
					})
				if err != nil {
					errs <- fmt.Errorf("%s update %d: %w", id, u, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	const total = referrals * (1 + updates)
	for _, sub := range []string{"sub-a", "sub-z"} {
		got, ms := notices(t, s, sub)
		if len(got) != total {
			t.Fatalf("%s: %d notifications, want %d", sub, len(got), total)
		}
		lastVersion := map[string]int{}
		for i, n := range got {
			if n.N != int64(i+1) || n.Events != n.N {
				t.Errorf("%s: notification %d in Seq order is numbered %d (events %d): numbers must be gap-free and in commit order",
					sub, i+1, n.N, n.Events)
			}
			if n.Version != lastVersion[n.Referral]+1 {
				t.Errorf("%s: %s version %d after version %d", sub, n.Referral, n.Version, lastVersion[n.Referral])
			}
			lastVersion[n.Referral] = n.Version
			if i > 0 && ms[i].Seq <= ms[i-1].Seq {
				t.Errorf("%s: Seq not increasing", sub)
			}
		}
		if e := getSub(t, s, sub).EventsSinceStart; e != total {
			t.Errorf("%s EventsSinceStart = %d, want %d", sub, e, total)
		}
	}
}

func testSubscriptionClaimOrder(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	createSub(t, s, subscription("sub-a", "A81001", t0))
	for i := 1; i <= 3; i++ {
		create(t, s, intake(i)) // msg-00i-1 to walks, and notification i to sub-a
	}
	_, ms := notices(t, s, "sub-a")
	if len(ms) != 3 {
		t.Fatalf("%d notifications, want 3", len(ms))
	}
	n1, n2, n3 := ms[0].ID, ms[1].ID, ms[2].ID
	now := at(time.Minute)

	// The service messages are heads of their referrals; of sub-a's three notifications (three referrals)
	// only the first is a head: a subscription's head of line is per destination.
	got := claim(t, s, "a", now, lease, 10)
	diff(t, "first claim", ids(got), []string{"msg-001-1", n1, "msg-002-1", "msg-003-1"})
	for _, id := range []string{"msg-001-1", "msg-002-1", "msg-003-1"} {
		complete(t, s, id, "a", now, outbox.StateDelivered, time.Time{}, 200, "")
	}
	diff(t, "while notification 1 is inflight", ids(claim(t, s, "b", now, lease, 10)), []string{})

	// A retry keeps later notifications (of other referrals) waiting.
	retry := now.Add(5 * time.Minute)
	complete(t, s, n1, "a", now, outbox.StatePending, retry, 503, "HTTP 503")
	diff(t, "before the retry is due", ids(claim(t, s, "b", now, lease, 10)), []string{})
	if due, err := s.NextDue(t.Context()); err != nil || !due.Equal(retry) {
		t.Errorf("NextDue = %v, %v; want the retry %v (notifications 2 and 3 are blocked)", due, err, retry)
	}
	diff(t, "retry due", ids(claim(t, s, "b", retry, lease, 10)), []string{n1})
	complete(t, s, n1, "b", retry, outbox.StateDelivered, time.Time{}, 200, "")
	diff(t, "after 1 is delivered", ids(claim(t, s, "b", retry, lease, 10)), []string{n2})

	// A dead notification blocks the rest until it is replayed.
	complete(t, s, n2, "b", retry, outbox.StateDead, time.Time{}, 401, "HTTP 401")
	diff(t, "behind a dead notification", ids(claim(t, s, "c", retry, lease, 10)), []string{})
	if due, err := s.NextDue(t.Context()); err != nil || !due.IsZero() {
		t.Errorf("NextDue = %v, %v; want zero (only a blocked notification is pending)", due, err)
	}
	later := retry.Add(time.Hour)
	before := get(t, s, "ref-002")
	if _, err := s.ReplayMessages(t.Context(), later, outbox.ReplayRequest{IDs: []string{n2}, Reason: "auth fixed", Actor: "ops",
		Update: func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next := cur.Referral
			next.BusinessStatus = mapping.BusinessDeliveryFailed // would be a change
			return next, nil, nil
		}}); err != nil {
		t.Fatal(err)
	}
	// Replaying a GP notification does not touch its referral (Update concerns service deliveries), so it
	// writes no version and no new notification.
	diff(t, "referral after replaying its notification", get(t, s, "ref-002"), before)
	if got, _ := notices(t, s, "sub-a"); len(got) != 3 {
		t.Errorf("replay wrote notifications: %d, want 3", len(got))
	}
	diff(t, "after the replay", ids(claim(t, s, "c", later, lease, 10)), []string{n2})
	complete(t, s, n2, "c", later, outbox.StateDelivered, time.Time{}, 200, "")
	diff(t, "last", ids(claim(t, s, "c", later, lease, 10)), []string{n3})
}

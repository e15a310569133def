package outboxtest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// subscriptionStates: the statuses and queue of a Subscription beyond create and delete (R4 Backport IG):
// the handshake first, error when a notification goes dead (later changes still numbered and queued behind
// it), back to active on a delivery, off never touched; heartbeats queued only when due.

// subMessages lists the messages of subscription id in Seq order.
func subMessages(t *testing.T, s outbox.Store, id string) []outbox.Message {
	t.Helper()
	dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: id}
	return list(t, s, outbox.MessageQuery{Destination: &dest, Limit: 1000})
}

func types(ms []outbox.Message) []mapping.EventType {
	out := []mapping.EventType{}
	for _, m := range ms {
		out = append(out, m.Type)
	}
	return out
}

// completeSub reports an attempt on a subscription message with the status change a dispatcher asks for.
func completeSub(t *testing.T, s outbox.Store, m outbox.Message, owner string, now time.Time, st outbox.MessageState, ch *outbox.SubscriptionChange) {
	t.Helper()
	res := outbox.AttemptResult{Attempt: outbox.Attempt{StartedAt: now, StatusCode: 404, Error: "HTTP 404 Not Found"},
		Owner: owner, State: st, Subscription: ch}
	if st == outbox.StateDelivered {
		res.Attempt.StatusCode, res.Attempt.Error = 200, ""
	}
	if err := s.CompleteAttempt(t.Context(), m.ID, now, res); err != nil {
		t.Fatalf("CompleteAttempt(%s): %v", m.ID, err)
	}
}

// testSubscriptionHandshakeAndError: a subscription created with a handshake has it queued first (no
// referral, not numbered); notifications follow it in order. A dead notification with the dispatcher's
// change puts it in error with the error text, and later changes are still numbered and queued (waiting); a
// replayed notification delivered with the change back brings it to active and clears the error; an off
// subscription is never moved by a change.
func testSubscriptionHandshakeAndError(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	ctx := t.Context()
	sub := subscription("sub-1", "A81001", at(time.Second))
	sub.Topic = "https://socialrx.dev/fhir/SubscriptionTopic/practice-task-changes"
	sub.HeartbeatPeriod = 2 * time.Minute
	sub.Handshake = json.RawMessage(`{"handshake":true}`)
	got := createSub(t, s, sub)
	if got.Handshake != nil || got.Topic != sub.Topic || got.HeartbeatPeriod != 2*time.Minute || got.EventsSinceStart != 0 {
		t.Errorf("created: %+v", got)
	}
	if rb := getSub(t, s, "sub-1"); rb.Topic != sub.Topic || rb.HeartbeatPeriod != sub.HeartbeatPeriod || rb.Error != "" {
		t.Errorf("read back: %+v", rb)
	}
	create(t, s, intake(2)) // notification 1
	ms := subMessages(t, s, "sub-1")
	diff(t, "queue", types(ms), []mapping.EventType{mapping.EventHandshake, mapping.EventNotification})
	if ms[0].ReferralID != "" || string(ms[0].Payload) != `{"handshake":true}` || !ms[0].CreatedAt.Equal(at(time.Second)) {
		t.Errorf("handshake message: %+v", ms[0])
	}
	if d := message(t, s, ms[0].ID); d.Message.ID != ms[0].ID || d.Message.ReferralID != "" {
		t.Errorf("GetMessage(handshake): %+v", d.Message)
	}
	// The handshake is claimed first; the notification waits behind it.
	c := claim(t, s, "d1", at(3*time.Second), time.Minute, 10)
	if slices.Contains(ids(c), ms[1].ID) || !slices.Contains(ids(c), ms[0].ID) {
		t.Fatalf("claimed %v: the handshake must go first, alone for its subscription", ids(c))
	}
	toError := &outbox.SubscriptionChange{ID: "sub-1", From: outbox.SubscriptionActive, To: outbox.SubscriptionError, Error: "HTTP 404 Not Found"}
	completeSub(t, s, ms[0], "d1", at(4*time.Second), outbox.StateDead, toError)
	if st := getSub(t, s, "sub-1"); st.Status != outbox.SubscriptionError || st.Error != "HTTP 404 Not Found" || !st.UpdatedAt.Equal(at(4*time.Second)) {
		t.Fatalf("after a dead handshake: %+v", st)
	}
	// In error, changes are still numbered and queued, behind the dead message.
	if _, err := setStatus(t, s, "ref-002", at(5*time.Second), mapping.StatusReceived, ""); err != nil {
		t.Fatal(err)
	}
	nms := subMessages(t, s, "sub-1")
	if got := getSub(t, s, "sub-1"); got.EventsSinceStart != 2 || len(nms) != 3 {
		t.Errorf("in error: %d events, %d messages; want 2 events numbered, 3 messages", got.EventsSinceStart, len(nms))
	}
	for _, m := range claim(t, s, "d2", at(6*time.Second), time.Minute, 10) {
		if m.Destination.Kind == mapping.DestinationSubscription {
			t.Errorf("while the handshake is dead, %s of its subscription was claimed", m.ID)
		}
	}
	// Replay the dead handshake; delivered with the change back, the subscription is active again.
	if _, err := s.ReplayMessages(ctx, at(7*time.Second), outbox.ReplayRequest{IDs: []string{ms[0].ID}, Reason: "endpoint fixed", Actor: "client-A81001"}); err != nil {
		t.Fatal(err)
	}
	c = claim(t, s, "d3", at(8*time.Second), time.Minute, 10)
	if !slices.Contains(ids(c), ms[0].ID) {
		t.Fatalf("replayed handshake not claimed: %v", ids(c))
	}
	back := &outbox.SubscriptionChange{ID: "sub-1", From: outbox.SubscriptionError, To: outbox.SubscriptionActive}
	completeSub(t, s, ms[0], "d3", at(9*time.Second), outbox.StateDelivered, back)
	if st := getSub(t, s, "sub-1"); st.Status != outbox.SubscriptionActive || st.Error != "" || !st.UpdatedAt.Equal(at(9*time.Second)) {
		t.Errorf("after the replayed handshake was delivered: %+v", st)
	}
	// A change whose From no longer holds changes nothing; an off subscription is never moved.
	if _, err := s.UpdateSubscriptionStatus(ctx, "sub-1", outbox.SubscriptionOff, at(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	c = claim(t, s, "d4", at(11*time.Second), time.Minute, 10)
	for _, m := range c {
		if m.Destination.Kind == mapping.DestinationSubscription {
			completeSub(t, s, m, "d4", at(12*time.Second), outbox.StateDead, toError)
		}
	}
	if st := getSub(t, s, "sub-1"); st.Status != outbox.SubscriptionOff || st.Error != "" {
		t.Errorf("an off subscription was moved: %+v", st)
	}
	// An invalid change is refused without writing the attempt's outcome.
	if err := s.CompleteAttempt(ctx, "nope", at(13*time.Second), outbox.AttemptResult{Owner: "x", State: outbox.StateDead,
		Subscription: &outbox.SubscriptionChange{ID: "sub-1", From: "bogus", To: outbox.SubscriptionError}}); err == nil {
		t.Error("an invalid subscription change was accepted")
	}
}

// testSubscriptionHeartbeats: QueueHeartbeats queues one heartbeat for each active subscription that asked for
// them, has nothing waiting and has had nothing queued for its period; never for one without a period, in
// error or off, nor twice within a period.
func testSubscriptionHeartbeats(t *testing.T, open Opener) {
	s := open(t, Options{Notify: testNotify})
	ctx := t.Context()
	mk := func(id, practice string, period time.Duration) {
		sub := subscription(id, practice, at(0))
		sub.HeartbeatPeriod = period
		createSub(t, s, sub)
	}
	mk("hb-a", "A81001", time.Minute)
	mk("hb-b", "B82002", 5*time.Minute)
	mk("hb-none", "C83003", 0)
	mk("hb-off", "D84004", time.Minute)
	if _, err := s.UpdateSubscriptionStatus(ctx, "hb-off", outbox.SubscriptionOff, at(time.Second)); err != nil {
		t.Fatal(err)
	}
	var rendered []string
	render := func(sub outbox.Subscription, now time.Time) (json.RawMessage, error) {
		rendered = append(rendered, sub.ID)
		return json.Marshal(map[string]any{"heartbeat": sub.ID, "at": now, "events": sub.EventsSinceStart})
	}
	beat := func(now time.Time) []string {
		t.Helper()
		rendered = nil
		n, err := s.QueueHeartbeats(ctx, now, render)
		if err != nil {
			t.Fatalf("QueueHeartbeats(%v): %v", now, err)
		}
		if n != len(rendered) {
			t.Errorf("QueueHeartbeats says %d, rendered %d", n, len(rendered))
		}
		slices.Sort(rendered)
		return rendered
	}
	deliverAll := func(now time.Time, dead string) {
		t.Helper()
		for _, m := range claim(t, s, "d-"+now.String(), now, time.Minute, 100) {
			if m.Destination.ID == dead {
				completeSub(t, s, m, "d-"+now.String(), now, outbox.StateDead, &outbox.SubscriptionChange{ID: m.Destination.ID,
					From: outbox.SubscriptionActive, To: outbox.SubscriptionError, Error: "HTTP 410 Gone"})
				continue
			}
			completeSub(t, s, m, "d-"+now.String(), now, outbox.StateDelivered, nil)
		}
	}
	diff(t, "before any period", beat(at(59*time.Second)), []string{})
	diff(t, "after a minute", beat(at(time.Minute)), []string{"hb-a"})
	ms := subMessages(t, s, "hb-a")
	if len(ms) != 1 || ms[0].Type != mapping.EventHeartbeat || ms[0].ReferralID != "" || !ms[0].CreatedAt.Equal(at(time.Minute)) {
		t.Fatalf("heartbeat message: %+v", ms)
	}
	var hb map[string]any
	if err := json.Unmarshal(ms[0].Payload, &hb); err != nil || hb["heartbeat"] != "hb-a" {
		t.Errorf("heartbeat payload %s", ms[0].Payload)
	}
	// While it waits (pending), no second heartbeat, even periods later.
	diff(t, "while one waits", beat(at(3*time.Minute)), []string{})
	deliverAll(at(3*time.Minute), "")
	// A period after the newest message (the heartbeat queued at 1:00), the next; hb-b's first at five minutes.
	diff(t, "a period after the last", beat(at(4*time.Minute+59*time.Second)), []string{"hb-a"})
	deliverAll(at(4*time.Minute+59*time.Second), "")
	diff(t, "five minutes", beat(at(5*time.Minute)), []string{"hb-b"})
	// A notification is traffic: the next heartbeat comes a period after it.
	in := intake(7)
	in.Referral.Record.CreatedAt, in.Referral.Record.UpdatedAt = at(5*time.Minute+30*time.Second), at(5*time.Minute+30*time.Second)
	create(t, s, in) // practice A81001: a notification to hb-a
	deliverAll(at(5*time.Minute+30*time.Second), "hb-none")
	diff(t, "within a period of the notification", beat(at(6*time.Minute+10*time.Second)), []string{})
	diff(t, "a period after the notification", beat(at(6*time.Minute+30*time.Second)), []string{"hb-a"})
	diff(t, "hb-a's queue", types(subMessages(t, s, "hb-a")),
		[]mapping.EventType{mapping.EventHeartbeat, mapping.EventHeartbeat, mapping.EventNotification, mapping.EventHeartbeat})
	// A subscription in error gets none; the other goes on.
	deliverAll(at(6*time.Minute+30*time.Second), "hb-a")
	if st := getSub(t, s, "hb-a"); st.Status != outbox.SubscriptionError {
		t.Fatalf("hb-a: %+v", st)
	}
	diff(t, "in error", beat(at(20*time.Minute)), []string{"hb-b"})
	if _, err := s.QueueHeartbeats(ctx, at(21*time.Minute), nil); err == nil {
		t.Error("QueueHeartbeats without a renderer succeeded")
	}
}

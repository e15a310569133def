package mapping

import (
	"testing"
	"time"
)

// TestBusinessAfterMove walks every transport fact (and none) with every actor, with and without a webhook.
func TestBusinessAfterMove(t *testing.T) {
	t.Parallel()
	type key struct {
		cur     BusinessStatus
		by      Actor
		webhook bool
	}
	// Only these combinations change the fact; every other one keeps it.
	changes := map[key]BusinessStatus{
		{BusinessAwaitingPickup, ActorCommunity, false}: BusinessPickedUp,
		{BusinessAwaitingPickup, ActorCommunity, true}:  BusinessPickedUp,
		{BusinessAwaitingPickup, ActorRequester, false}: "",
		{BusinessAwaitingPickup, ActorRequester, true}:  "",
		{BusinessOverdue, ActorCommunity, false}:        BusinessPickedUp,
		{BusinessOverdue, ActorCommunity, true}:         BusinessDelivered,
	}
	seen := 0
	for _, cur := range append(AllBusinessStatuses(), "") {
		for _, by := range AllActors() {
			for _, webhook := range []bool{false, true} {
				want, ok := changes[key{cur, by, webhook}]
				if ok {
					seen++
				} else {
					want = cur
				}
				if got := BusinessAfterMove(cur, by, webhook); got != want {
					t.Errorf("BusinessAfterMove(%q, %s, webhook %v) = %q, want %q", cur, by, webhook, got, want)
				}
			}
		}
	}
	if seen != len(changes) {
		t.Errorf("walked %d of the %d changing combinations", seen, len(changes))
	}
}

// TestPullOnlyTaskNeverContradicts: a pull-only referral's Task stops saying awaiting-pickup as soon as the
// service acts on it (a move or a note), through the whole state machine; a GP cancellation of a referral
// still waiting clears the fact.
func TestPullOnlyTaskNeverContradicts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 7, 1, 9, 0, 0, 0, time.UTC)
	waiting := Referral{Record: Record{ID: "r", Status: StatusRequested, Version: 1}, BusinessStatus: BusinessAwaitingPickup}
	for _, tt := range []struct {
		name   string
		change StatusChange
		want   BusinessStatus
	}{
		{"mark as seen", StatusChange{To: StatusReceived, By: ActorCommunity}, BusinessPickedUp},
		{"accept", StatusChange{To: StatusAccepted, By: ActorCommunity}, BusinessPickedUp},
		{"decline", StatusChange{To: StatusRejected, By: ActorCommunity, Reason: "full"}, BusinessPickedUp},
		{"a note only", StatusChange{To: StatusRequested, By: ActorCommunity, Notes: []string{"phoned"}, NoteAuthor: "Lunch club"}, BusinessPickedUp},
		{"GP cancels", StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "moved away"}, ""},
		{"GP entered in error", StatusChange{To: StatusEnteredInError, By: ActorRequester}, ""},
		{"GP adds a note", StatusChange{To: StatusRequested, By: ActorRequester, Notes: []string{"x"}, NoteAuthor: "gp"}, ""},
	} {
		next, _, err := ApplyStatus(waiting, tt.change, now)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if next.BusinessStatus != tt.want {
			t.Errorf("%s: businessStatus %q, want %q", tt.name, next.BusinessStatus, tt.want)
		}
		task := TaskFor(next)
		if tt.want == "" && task.BusinessStatus != nil {
			t.Errorf("%s: Task.businessStatus %+v, want none", tt.name, task.BusinessStatus)
		}
	}
	// The rest of the walk keeps picked-up.
	cur := waiting
	for _, c := range []StatusChange{{To: StatusAccepted, By: ActorCommunity}, {To: StatusInProgress, By: ActorCommunity},
		{To: StatusOnHold, By: ActorCommunity, Reason: "poorly"}, {To: StatusInProgress, By: ActorCommunity},
		{To: StatusCompleted, By: ActorCommunity, Outcome: &Outcome{Text: "joined"}}} {
		var err error
		if cur, _, err = ApplyStatus(cur, c, now); err != nil {
			t.Fatalf("%s: %v", c.To, err)
		}
		if cur.BusinessStatus != BusinessPickedUp {
			t.Errorf("after %s: businessStatus %q", c.To, cur.BusinessStatus)
		}
	}
}

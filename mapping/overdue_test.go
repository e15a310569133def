package mapping

import (
	"slices"
	"testing"
	"time"
)

func TestMarkOverdue(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	deadline := 72 * time.Hour
	base := func(st TaskStatus, bs BusinessStatus) Referral {
		return Referral{Record: Record{ID: "r", Status: st, CreatedAt: t0, Version: 2}, BusinessStatus: bs}
	}
	tests := []struct {
		name string
		ref  Referral
		now  time.Time
		want bool
	}{
		{"before the deadline", base(StatusRequested, BusinessDelivered), t0.Add(deadline - time.Second), false},
		{"at the deadline, delivered", base(StatusRequested, BusinessDelivered), t0.Add(deadline), true},
		{"pull-only, not picked up", base(StatusRequested, BusinessAwaitingPickup), t0.Add(deadline + time.Hour), true},
		{"still queued", base(StatusRequested, BusinessQueued), t0.Add(deadline), true},
		{"delivery failed stays failed", base(StatusRequested, BusinessDeliveryFailed), t0.Add(deadline), false},
		{"already overdue", base(StatusRequested, BusinessOverdue), t0.Add(deadline), false},
		{"acknowledged", base(StatusReceived, BusinessDelivered), t0.Add(deadline), false},
	}
	for _, tt := range tests {
		got, changed := MarkOverdue(tt.ref, tt.now, deadline)
		if changed != tt.want {
			t.Errorf("%s: changed = %v, want %v", tt.name, changed, tt.want)
		}
		if changed && got.BusinessStatus != BusinessOverdue {
			t.Errorf("%s: businessStatus %q", tt.name, got.BusinessStatus)
		}
		if !changed && got.BusinessStatus != tt.ref.BusinessStatus {
			t.Errorf("%s: unchanged referral was modified", tt.name)
		}
	}
}

func TestAcknowledgementClearsOverdue(t *testing.T) {
	t.Parallel()
	cur := Referral{Record: Record{ID: "r", Status: StatusRequested, Version: 3}, BusinessStatus: BusinessOverdue}
	next, _, err := ApplyStatus(cur, StatusChange{To: StatusReceived, By: ActorCommunity, ServiceHasWebhook: true}, time.Now())
	if err != nil || next.BusinessStatus != BusinessDelivered {
		t.Fatalf("received: %v, businessStatus %q", err, next.BusinessStatus)
	}
	next, _, err = ApplyStatus(cur, StatusChange{To: StatusCancelled, By: ActorRequester, Reason: "patient moved away"}, time.Now())
	if err != nil || next.BusinessStatus != BusinessOverdue {
		t.Fatalf("GP cancellation keeps the transport fact: %v, %q", err, next.BusinessStatus)
	}
}

// TestOverdueFrom: OverdueFrom lists exactly the transport facts MarkOverdue marks (every fact walked).
func TestOverdueFrom(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	for _, bs := range append(AllBusinessStatuses(), "") {
		cur := Referral{Record: Record{Status: StatusRequested, CreatedAt: t0}, BusinessStatus: bs}
		_, marked := MarkOverdue(cur, t0.Add(time.Hour), time.Minute)
		if listed := slices.Contains(OverdueFrom(), bs); listed != marked {
			t.Errorf("%q: listed %v, MarkOverdue marks it %v", bs, listed, marked)
		}
	}
}

package referral_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// submitToLinkWorkers posts the fixture the demo routes to its default service, the link workers.
func (e *env) submitToLinkWorkers() outbox.Referral {
	e.t.Helper()
	res, err := e.svc.Submit(context.Background(), e.caller("practice-a81001"),
		referral.Submission{Parsed: fixture(e.t, "link-worker-befriending-default.json", nil)})
	if err != nil || !res.Created || res.Referral.Record.Service.ID != "link-workers" {
		e.t.Fatalf("Submit = %+v, %v", res.Referral.Record.Service, err)
	}
	return res.Referral
}

// TestForward: the link worker forwards a referral to two groups; each group sees only its own child, the
// GP sees both as Tasks part of the link worker's; a full group, an unknown one and a non-link-worker are
// refused naming the service; the first accept wins and the other child is cancelled ("the person chose
// another group"); the person's consent withdrawal on the original reaches the children. On both backends.
func TestForward(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		lw, walks, lunch := e.caller("link-workers"), e.caller("frome-walks"), e.caller("lunch-club")
		ref := e.submitToLinkWorkers()

		// Refusals name the service and write nothing.
		if _, err := e.svc.SetCapacity(ctx, e.caller("debt-advice"), referral.CapacityRequest{Status: mapping.CapacityFull}, "test"); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.svc.Forward(ctx, lw, referral.ForwardRequest{ReferralID: ref.Record.ID, Services: []string{"frome-walks", "debt-advice"}})
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != fault.Conflict || fe.Issues[0].Code != mapping.CodeForwardFull || fe.Issues[0].Field != "services[1]" {
			t.Fatalf("a full group: %v", err)
		}
		_, _, err = e.svc.Forward(ctx, lw, referral.ForwardRequest{ReferralID: ref.Record.ID, Services: []string{"nowhere"}})
		kindIs(t, "an unknown group", err, fault.Invalid)
		walked := e.submit()
		_, _, err = e.svc.Forward(ctx, walks, referral.ForwardRequest{ReferralID: walked.Record.ID, Services: []string{"lunch-club"}})
		kindIs(t, "a group that is not the link worker", err, fault.Forbidden)
		if got, _ := e.store.GetReferral(ctx, ref.Record.ID); got.Record.Version != ref.Record.Version {
			t.Fatalf("a refused forward wrote version %d", got.Record.Version)
		}

		parent, children, err := e.svc.Forward(ctx, lw, referral.ForwardRequest{ReferralID: ref.Record.ID,
			Services: []string{"frome-walks", "lunch-club"}, Note: "She would like company on Fridays."})
		if err != nil || len(children) != 2 || len(parent.Children) != 2 {
			t.Fatalf("forward: %v, %d children", err, len(children))
		}
		task := mapping.TaskFor(children[0].Referral)
		if len(task.PartOf) != 1 || task.PartOf[0].Reference != "Task/"+ref.Record.TaskID ||
			task.Focus.Reference != "ServiceRequest/"+ref.Record.ServiceRequestID || task.Owner.Display != "Frome Walking for Health" {
			t.Errorf("child Task: partOf %+v, focus %+v, owner %+v", task.PartOf, task.Focus, task.Owner)
		}
		if outs := mapping.TaskFor(parent.Referral).Output; len(outs) != 2 || outs[1].ValueReference.Reference != "Task/"+children[1].Record.TaskID {
			t.Errorf("parent Task output %+v", outs)
		}
		// Each group sees its own child only; the GP's search by part-of finds both.
		if _, err := e.svc.Get(ctx, walks, referral.ByRecordID, children[1].Record.ID); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("frome-walks reads lunch-club's child: %v", err)
		}
		if got, err := e.svc.Get(ctx, walks, referral.ByRecordID, children[0].Record.ID); err != nil || got.Record.Service.ID != "frome-walks" {
			t.Errorf("frome-walks reads its child: %v", err)
		}
		kids, _, err := e.store.SearchReferrals(ctx, outbox.ReferralQuery{ParentTaskID: ref.Record.TaskID})
		if err != nil || len(kids) != 2 {
			t.Errorf("part-of search: %d, %v", len(kids), err)
		}
		// Suggesting the same group twice is refused.
		_, _, err = e.svc.Forward(ctx, lw, referral.ForwardRequest{ReferralID: ref.Record.ID, Services: []string{"lunch-club"}})
		kindIs(t, "a group already suggested", err, fault.Conflict)

		// The lunch club accepts first: the walking group's child is cancelled.
		if _, _, err := e.svc.ChangeStatus(ctx, lunch, referral.StatusRequest{ReferralID: children[1].Record.ID, Status: mapping.StatusAccepted}); err != nil {
			t.Fatal(err)
		}
		other, _ := e.store.GetReferral(ctx, children[0].Record.ID)
		if other.Record.Status != mapping.StatusCancelled || other.Record.StatusReason != mapping.ChoseAnotherGroup {
			t.Errorf("the other child: %s %q", other.Record.Status, other.Record.StatusReason)
		}
		if p, _ := e.store.GetReferral(ctx, ref.Record.ID); p.ChosenChild != children[1].Record.ID {
			t.Errorf("the person's choice %q", p.ChosenChild)
		}
		checkConsentReachesChildren(t, e, ref, children)
	})
}

// forwardToTwo submits a referral the link workers hold and forwards it to the walking group and the lunch
// club; it returns the link worker's referral and the two children.
func (e *env) forwardToTwo() (outbox.Referral, []outbox.Referral) {
	e.t.Helper()
	ref := e.submitToLinkWorkers()
	_, children, err := e.svc.Forward(context.Background(), e.caller("link-workers"),
		referral.ForwardRequest{ReferralID: ref.Record.ID, Services: []string{"frome-walks", "lunch-club"}})
	if err != nil || len(children) != 2 {
		e.t.Fatalf("forward: %v", err)
	}
	return ref, children
}

// TestConsentReachesChildrenOnRetry: the parent's withdrawal committed but its propagation to the forwarded
// referrals never ran (a crash between the two): the GP system's retry of the withdrawal — a repeat, no
// change to the parent — finishes it. On both backends.
func TestConsentReachesChildrenOnRetry(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref, children := e.forwardToTwo()
		// The parent's withdrawal alone, as if the process died before propagating it.
		n := 0
		now := time.UnixMicro(e.clock.Add(1000)).UTC()
		if _, err := e.store.UpdateReferral(ctx, ref.Record.ID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			return mapping.ApplyStatus(cur.Referral, mapping.StatusChange{To: mapping.StatusCancelled, By: mapping.ActorRequester,
				ConsentWithdrawn: true, NewID: func() string { n++; return fmt.Sprintf("retry-test-%d", n) }}, now)
		}); err != nil {
			t.Fatal(err)
		}
		for _, ch := range children {
			if got, _ := e.store.GetReferral(ctx, ch.Record.ID); got.Record.ConsentWithdrawn {
				t.Fatal("the simulation propagated the withdrawal; the test proves nothing")
			}
		}
		checkConsentReachesChildren(t, e, ref, children) // the GP system retries
	})
}

// TestGPCancelReachesChildren: the GP cancels the link worker's Task with a reason: every referral forwarded
// from it is cancelled with that reason, except one already final (it keeps its status). On both backends.
func TestGPCancelReachesChildren(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref, children := e.forwardToTwo()
		// The lunch club declines (final); the walking group has not answered.
		if _, _, err := e.svc.ChangeStatus(ctx, e.caller("lunch-club"), referral.StatusRequest{ReferralID: children[1].Record.ID,
			Status: mapping.StatusRejected, Reason: "No places until spring"}); err != nil {
			t.Fatal(err)
		}
		cur, err := e.store.GetReferral(ctx, ref.Record.ID)
		if err != nil {
			t.Fatal(err)
		}
		task := mapping.TaskFor(cur.Referral)
		task.Status, task.StatusReason = "cancelled", &fhir.CodeableConcept{Text: "The person moved away"}
		body, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.UpdateTask(ctx, e.caller("practice-a81001"), cur, mapping.ActorRequester, cur.Record.Version, body); err != nil {
			t.Fatal(err)
		}
		walks, _ := e.store.GetReferral(ctx, children[0].Record.ID)
		lunch, _ := e.store.GetReferral(ctx, children[1].Record.ID)
		if walks.Record.Status != mapping.StatusCancelled || walks.Record.StatusReason != "The person moved away" {
			t.Errorf("the walking group's child: %s %q, want cancelled with the GP's reason", walks.Record.Status, walks.Record.StatusReason)
		}
		if lunch.Record.Status != mapping.StatusRejected {
			t.Errorf("the declined child became %s", lunch.Record.Status)
		}
	})
}

// checkConsentReachesChildren: the GP records the consent withdrawal on the link worker's Task; every
// child becomes a stub too.
func checkConsentReachesChildren(t *testing.T, e *env, ref outbox.Referral, children []outbox.Referral) {
	ctx := context.Background()
	cur, err := e.store.GetReferral(ctx, ref.Record.ID)
	if err != nil {
		t.Fatal(err)
	}
	task := mapping.TaskFor(cur.Referral)
	task.Status = "cancelled"
	task.StatusReason = &fhir.CodeableConcept{Coding: []fhir.Coding{{System: mapping.CancelReasonSystem, Code: mapping.ConsentWithdrawnCode}}}
	body, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	gp := e.caller("practice-a81001")
	if _, err := e.svc.UpdateTask(ctx, gp, cur, mapping.ActorRequester, cur.Record.Version, body); err != nil {
		t.Fatal(err)
	}
	for _, ch := range children {
		got, err := e.store.GetReferral(ctx, ch.Record.ID)
		if err != nil || !got.Record.ConsentWithdrawn || got.Record.Patient.Called() != "" {
			t.Errorf("child %s after the consent withdrawal: withdrawn %v, %v", ch.Record.ID, got.Record.ConsentWithdrawn, err)
		}
	}
}

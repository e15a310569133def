package outboxtest

import (
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// testRetention: with an injected clock, delivered payloads older than the period are scrubbed (metadata
// and attempts kept), younger ones and dead ones never; closed referrals older than theirs lose their personal
// fields, open ones keep them; a dry run counts exactly what the real prune then scrubs; a second prune finds
// nothing.
func testRetention(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	for n := 1; n <= 4; n++ {
		create(t, s, intake(n)) // msg-00n-1 referral.created to walks, created at t0+n s
	}
	// ref-001's and ref-002's created are delivered at t0+10s; ref-003's goes dead; ref-004's stays pending.
	owned := claim(t, s, "o", at(10*time.Second), time.Minute, 10)
	if len(owned) != 4 {
		t.Fatalf("claimed %d", len(owned))
	}
	for _, m := range owned {
		res := outbox.AttemptResult{Owner: "o", State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StartedAt: at(10 * time.Second), StatusCode: 200, Response: "thanks Test Patient"}}
		switch m.ReferralID {
		case "ref-003":
			res.State, res.Attempt.StatusCode = outbox.StateDead, 410
		case "ref-004":
			res.State, res.NextAttemptAt, res.Attempt.StatusCode = outbox.StatePending, at(time.Hour), 503
		}
		if err := s.CompleteAttempt(ctx, m.ID, at(10*time.Second), res); err != nil {
			t.Fatal(err)
		}
	}
	// ref-002 and ref-003 are closed at t0+20s; ref-001 stays open.
	for _, id := range []string{"ref-002", "ref-003"} {
		if _, err := setStatus(t, s, id, at(20*time.Second), mapping.StatusCompleted, ""); err != nil {
			t.Fatal(err)
		}
	}
	before := map[string]string{}
	for _, m := range list(t, s, outbox.MessageQuery{}) {
		before[m.ID] = string(m.Payload)
	}

	// Periods: delivered before t0+15s, closed before t0+30s; nothing younger.
	req := outbox.PruneRequest{DeliveredBefore: at(15 * time.Second), ClosedBefore: at(30 * time.Second), Batch: 1}
	early := req
	early.DeliveredBefore, early.ClosedBefore, early.DryRun = at(5*time.Second), at(15*time.Second), true
	if n, err := s.Prune(ctx, at(time.Hour), early); err != nil || n != (outbox.PruneResult{}) {
		t.Fatalf("a prune with younger limits: %+v %v, want nothing", n, err)
	}
	dry := req
	dry.DryRun = true
	want, err := s.Prune(ctx, at(time.Hour), dry)
	if err != nil {
		t.Fatal(err)
	}
	if want != (outbox.PruneResult{Payloads: 2, Referrals: 2}) {
		t.Errorf("dry run: %+v, want 2 payloads (ref-001's, ref-002's) and 2 referrals (ref-002, ref-003)", want)
	}
	for _, m := range list(t, s, outbox.MessageQuery{}) {
		if string(m.Payload) != before[m.ID] {
			t.Errorf("the dry run changed %s", m.ID)
		}
	}
	var progress []outbox.PruneResult
	req.Progress = func(r outbox.PruneResult) { progress = append(progress, r) }
	got, err := s.Prune(ctx, at(time.Hour), req)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("prune scrubbed %+v, the dry run counted %+v", got, want)
	}
	if len(progress) != 4 || progress[len(progress)-1] != got {
		t.Errorf("progress (batches of 1): %+v", progress)
	}
	for _, id := range []string{"msg-001-1", "msg-002-1"} {
		d := message(t, s, id)
		if len(d.Message.Payload) != 0 || d.Message.State != outbox.StateDelivered || len(d.Attempts) != 1 ||
			d.Attempts[0].StatusCode != 200 {
			t.Errorf("%s after retention: payload %q state %s attempts %+v", id, d.Message.Payload, d.Message.State, d.Attempts)
		}
	}
	if d := message(t, s, "msg-003-1"); string(d.Message.Payload) != before["msg-003-1"] || d.Message.State != outbox.StateDead ||
		d.Attempts[0].Response == "" {
		t.Errorf("a dead message was scrubbed: %q %s %+v", d.Message.Payload, d.Message.State, d.Attempts)
	}
	if d := message(t, s, "msg-004-1"); string(d.Message.Payload) != before["msg-004-1"] {
		t.Errorf("a pending message was scrubbed: %q", d.Message.Payload)
	}
	for id, closed := range map[string]bool{"ref-001": false, "ref-002": true, "ref-003": true, "ref-004": false} {
		r := get(t, s, id)
		if erased := r.Record.Patient.NHSNumber == ""; erased != closed {
			t.Errorf("%s: erased %v, want %v (%+v)", id, erased, closed, r.Record.Patient)
		}
		if closed && (r.Patient != (mapping.Reference{}) || r.Record.ConsentWithdrawn) {
			t.Errorf("%s: %+v", id, r.Referral)
		}
		if closed {
			vs, err := s.ReferralVersions(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				if v.Record.Patient.NHSNumber != "" {
					t.Errorf("%s version %d keeps the NHS number", id, v.Record.Version)
				}
			}
		}
	}
	if again, err := s.Prune(ctx, at(2*time.Hour), req); err != nil || again != (outbox.PruneResult{}) {
		t.Errorf("a second prune: %+v %v, want nothing", again, err)
	}
}

package referral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

var walksDest = mapping.Destination{Kind: mapping.DestinationService, ID: "frome-walks"}

// opsT0 is when the operations fixtures are created.
var opsT0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// deadMessages creates n referrals to dest, each with one referral.created that went dead (HTTP 410), and
// returns the message ids in Seq order.
func deadMessages(t *testing.T, st outbox.Store, dest mapping.Destination, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%04d", dest.ID, i)
		in := mapping.Intake{
			Referral: mapping.Referral{Record: mapping.Record{ID: id, TaskID: "t-" + id, ServiceRequestID: "sr-" + id,
				Status: mapping.StatusRequested, Service: mapping.ServiceRef{ID: dest.ID}, CreatedAt: opsT0,
				Patient: mapping.Person{Name: "Test Patient", NHSNumber: "9434765919"}},
				PracticeODS: "A81001", BusinessStatus: mapping.BusinessQueued},
			ServiceRequest: json.RawMessage(`{}`), Fingerprint: "fp-" + id,
			Identifiers: []mapping.Identifier{{System: "https://example.org/ids", Value: "GP-" + id}},
			Events: []mapping.Event{{ID: "m-" + id, Type: mapping.EventReferralCreated, Destination: dest,
				Payload: json.RawMessage(`{"data":{"patient":{"name":"Test Patient"}}}`)}},
		}
		if _, err := st.CreateReferral(ctx, in); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, "m-"+id)
	}
	at := opsT0.Add(time.Minute)
	for {
		ms, err := st.ClaimMessages(ctx, "killer", at, time.Minute, 1000, outbox.ClaimFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return ids
		}
		for _, m := range ms {
			if err := st.CompleteAttempt(ctx, m.ID, at, outbox.AttemptResult{Owner: "killer", State: outbox.StateDead,
				Attempt: outbox.Attempt{StatusCode: 410, Error: "HTTP 410 Gone"}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func operator(st outbox.Store, mod func(*referral.Operator)) referral.Operator {
	op := referral.Operator{Store: st, Clock: func() time.Time { return opsT0.Add(time.Hour) }}
	if mod != nil {
		mod(&op)
	}
	return op
}

// TestBulkReplayEveryPage: a filtered replay of 250 dead messages, 100 to a page, replays all 250 and says
// so; its dry run finds the same 250; progress is reported page by page; a pace spreads the due times
// across the pages; listing pages through all of them too.
func TestBulkReplayEveryPage(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ids := deadMessages(t, e.store, walksDest, 250)
		var progress []string
		op := operator(e.store, func(o *referral.Operator) {
			o.Progress = func(done, total int) { progress = append(progress, fmt.Sprintf("%d/%d", done, total)) }
		})
		dead := outbox.MessageQuery{States: []outbox.MessageState{outbox.StateDead}, ServiceID: walksDest.ID}
		n, err := op.Count(ctx, dead)
		if err != nil || n != 250 {
			t.Fatalf("count of dead messages: %d, %v", n, err)
		}
		var listed []string
		if n, err := op.Each(ctx, dead, func(page []outbox.Message) error {
			for _, m := range page {
				listed = append(listed, m.ID)
			}
			return nil
		}); err != nil || n != 250 || strings.Join(listed, ",") != strings.Join(ids, ",") {
			t.Fatalf("Each listed %d (%v), want all 250 in order", n, err)
		}
		f := dead
		dry, err := op.Replay(ctx, outbox.ReplayRequest{Filter: &f, Reason: "walks back", Actor: "cli:alice", DryRun: true})
		if err != nil || len(dry) != 250 {
			t.Fatalf("dry run: %d, %v", len(dry), err)
		}
		if n, _ := op.Count(ctx, dead); n != 250 {
			t.Fatalf("the dry run changed messages: %d dead left", n)
		}
		progress = nil
		pace := 100 * time.Millisecond
		got, err := op.Replay(ctx, outbox.ReplayRequest{Filter: &f, Reason: "walks back", Actor: "cli:alice", Pace: pace})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(dry) || len(got) != 250 {
			t.Errorf("replayed %d, dry run said %d, want 250", len(got), len(dry))
		}
		if want := "100/250 200/250 250/250"; strings.Join(progress, " ") != want {
			t.Errorf("progress %q, want %q", strings.Join(progress, " "), want)
		}
		if n, _ := op.Count(ctx, dead); n != 0 {
			t.Errorf("%d dead messages left after the bulk replay", n)
		}
		for i, m := range got {
			if m.Payload != nil {
				t.Fatalf("a bulk result carries a payload")
			}
			d, err := e.store.GetMessage(ctx, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := opsT0.Add(time.Hour).Add(time.Duration(i) * pace)
			if d.Message.State != outbox.StatePending || !d.Message.NextAttemptAt.Equal(want) || len(d.Replays) != 1 ||
				d.Replays[0].Actor != "cli:alice" {
				t.Fatalf("message %d (%s): %s due %v, want pending due %v (one pace apart across pages)", i, m.ID,
					d.Message.State, d.Message.NextAttemptAt, want)
			}
		}
	})
}

// TestDiscardRules: discard needs a reason and an actor, refuses an inflight message naming why (and
// discards nothing), and marks the referral delivery-failed.
func TestDiscardRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ids := deadMessages(t, e.store, walksDest, 2)
		op := operator(e.store, nil)
		if _, err := op.Discard(ctx, outbox.DiscardRequest{IDs: ids[:1], Actor: "ops"}); !errors.Is(err, outbox.ErrBadRequest) {
			t.Errorf("discard without a reason: %v", err)
		}
		if _, err := op.Discard(ctx, outbox.DiscardRequest{IDs: ids[:1], Reason: "x"}); !errors.Is(err, outbox.ErrBadRequest) {
			t.Errorf("discard without an actor: %v", err)
		}
		if _, err := op.Discard(ctx, outbox.DiscardRequest{IDs: []string{"nope"}, Reason: "x", Actor: "ops"}); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("discard of an unknown id: %v", err)
		}
		// Replay the second and claim it: inflight.
		if _, err := op.Replay(ctx, outbox.ReplayRequest{IDs: ids[1:], Reason: "retry", Actor: "ops"}); err != nil {
			t.Fatal(err)
		}
		if ms, err := e.store.ClaimMessages(ctx, "d", opsT0.Add(2*time.Hour), time.Minute, 10, outbox.ClaimFilter{}); err != nil || len(ms) != 1 {
			t.Fatalf("claim: %v %v", ms, err)
		}
		_, err := op.Discard(ctx, outbox.DiscardRequest{IDs: ids, Reason: "wrong patient", Actor: "ops"})
		if !errors.Is(err, outbox.ErrBadRequest) || !strings.Contains(err.Error(), ids[1]+" is inflight") {
			t.Errorf("discard of an inflight message: %v", err)
		}
		if d, _ := e.store.GetMessage(ctx, ids[0]); d.Message.State != outbox.StateDead {
			t.Errorf("a refused discard discarded %s: %s", ids[0], d.Message.State)
		}
		got, err := op.Discard(ctx, outbox.DiscardRequest{IDs: ids[:1], Reason: "  wrong patient ", Actor: "ops"})
		if err != nil || len(got) != 1 {
			t.Fatalf("discard: %v, %v", got, err)
		}
		d, _ := e.store.GetMessage(ctx, ids[0])
		if d.Message.State != outbox.StateDiscarded || d.Discard == nil || d.Discard.Reason != "wrong patient" {
			t.Errorf("discarded: %+v %+v", d.Message.State, d.Discard)
		}
		if _, err := op.Replay(ctx, outbox.ReplayRequest{IDs: ids[:1], Reason: "oops", Actor: "ops"}); !errors.Is(err, outbox.ErrBadRequest) ||
			!strings.Contains(err.Error(), "discarded") {
			t.Errorf("replay of a discarded message: %v", err)
		}
		if r, _ := e.store.GetReferral(ctx, d.Message.ReferralID); r.BusinessStatus != mapping.BusinessDeliveryFailed {
			t.Errorf("referral after discard: %q, want delivery-failed", r.BusinessStatus)
		}
	})
}

// TestPauseRules: only a directory service with a webhook can be paused (a typo or a pull-only service is
// refused, naming why); without a directory, a service the outbox has sent to; pausing twice keeps the first
// pause; resuming a service that is not paused is refused.
func TestPauseRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		withDir := operator(e.store, func(o *referral.Operator) { o.Directory = &e.cfg.Directory })
		for svc, want := range map[string]string{"frome-walk": "no community service", "museum-volunteers": "pull-only", " ": "name the"} {
			if _, _, err := withDir.Pause(ctx, svc, "down", "ops"); !errors.Is(err, outbox.ErrBadRequest) || !strings.Contains(err.Error(), want) {
				t.Errorf("pause %q: %v, want a refusal saying %q", svc, err, want)
			}
		}
		if _, _, err := withDir.Pause(ctx, "frome-walks", "", "ops"); !errors.Is(err, outbox.ErrBadRequest) {
			t.Errorf("pause without a reason: %v", err)
		}
		p, started, err := withDir.Pause(ctx, "frome-walks", "receiver down, INC-7", "cli:alice")
		if err != nil || !started || p.Reason != "receiver down, INC-7" || p.PausedBy != "cli:alice" {
			t.Fatalf("pause: %+v %v %v", p, started, err)
		}
		if _, started, err := withDir.Pause(ctx, "frome-walks", "again", "cli:bob"); err != nil || started {
			t.Errorf("second pause: started %v, %v", started, err)
		}
		if ps, err := withDir.Pauses(ctx); err != nil || len(ps) != 1 || ps[0].PausedBy != "cli:alice" {
			t.Errorf("pauses: %+v, %v", ps, err)
		}
		noDir := operator(e.store, nil)
		if _, _, err := noDir.Pause(ctx, "arts-on-prescription", "down", "ops"); !errors.Is(err, outbox.ErrBadRequest) {
			t.Errorf("pause of a service never sent to, without a directory: %v", err)
		}
		deadMessages(t, e.store, mapping.Destination{Kind: mapping.DestinationService, ID: "arts-on-prescription"}, 1)
		if _, started, err := noDir.Pause(ctx, "arts-on-prescription", "down", "ops"); err != nil || !started {
			t.Errorf("pause of a service sent to, without a directory: %v %v", started, err)
		}
		if _, err := withDir.Resume(ctx, "frome-walks", "cli:bob"); err != nil {
			t.Errorf("resume: %v", err)
		}
		if _, err := withDir.Resume(ctx, "frome-walks", "cli:bob"); !errors.Is(err, outbox.ErrBadRequest) || !strings.Contains(err.Error(), "not paused") {
			t.Errorf("resume of a service not paused: %v", err)
		}
	})
}

// TestOverview: the system at a glance, with every pull-only inbox listed (zeros too) and the waiting ones
// counted with their oldest wait.
func TestOverview(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		deadMessages(t, e.store, walksDest, 3)
		op := operator(e.store, func(o *referral.Operator) { o.Directory = &e.cfg.Directory })
		if _, _, err := op.Pause(ctx, "frome-walks", "down", "ops"); err != nil {
			t.Fatal(err)
		}
		ov, err := op.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ov.Counts[outbox.StateDead] != 3 || len(ov.Destinations) != 1 || ov.Destinations[0].Counts[outbox.StateDead] != 3 ||
			ov.Destinations[0].Pause == nil || len(ov.Pauses) != 1 {
			t.Errorf("overview counts: %+v", ov)
		}
		var pull []string
		for _, in := range ov.Inboxes {
			if in.PullOnly {
				pull = append(pull, in.ServiceID)
			}
			if in.ServiceID == "frome-walks" && (in.Waiting != 3 || in.OldestWait != time.Hour || in.PullOnly) {
				t.Errorf("frome-walks inbox: %+v", in)
			}
		}
		if want := "museum-volunteers,debt-advice,lunch-club,befriending,link-workers"; strings.Join(pull, ",") != want {
			t.Errorf("pull-only inboxes %v, want %s", pull, want)
		}
	})
}

// TestFindReferrals: by id, by ServiceRequest.identifier (with or without its system) and by NHS number.
func TestFindReferrals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		deadMessages(t, e.store, walksDest, 2)
		op := operator(e.store, nil)
		for q, want := range map[string]int{"frome-walks-0001": 1, "t-frome-walks-0000": 1, "GP-frome-walks-0000": 1,
			"https://example.org/ids|GP-frome-walks-0001": 1, "943 476 5919": 2, "nothing-like-this": 0} {
			got, err := op.FindReferrals(ctx, q)
			if err != nil || len(got) != want {
				t.Errorf("FindReferrals(%q) = %d referrals, %v; want %d", q, len(got), err, want)
			}
		}
		if _, err := op.FindReferrals(ctx, "  "); !errors.Is(err, outbox.ErrBadRequest) {
			t.Errorf("empty search: %v", err)
		}
	})
}

// TestRevealIsAudited: revealing a payload writes who and which message to the log, at info.
func TestRevealIsAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, backends[0].open(t))
	ids := deadMessages(t, e.store, walksDest, 1)
	var logs bytes.Buffer
	op := operator(e.store, func(o *referral.Operator) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	d, err := op.Reveal(context.Background(), ids[0], "console:ops/alice", "req-123")
	if err != nil || !strings.Contains(string(d.Message.Payload), "Test Patient") {
		t.Fatalf("reveal: %v", err)
	}
	line := logs.String()
	for _, want := range []string{"level=INFO", "payload revealed", "actor=console:ops/alice", "message_id=" + ids[0], "request_id=req-123"} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "Test Patient") {
		t.Errorf("the audit line holds patient data: %s", line)
	}
}

// TestMaskPayload: a person's details and free text are masked, ids, types, states and times are kept, and
// the shape stays.
func TestMaskPayload(t *testing.T) {
	t.Parallel()
	in := `{"type":"referral.created","timestamp":"2026-11-21T10:05:00Z","data":{"id":"r1","status":"requested",
		"version":2,"patient":{"name":"Ada Lovelace","nhs_number":"9434765919","birth_date":"1815-12-10","address":["1 St James's Square"]},
		"reasons":["lonely since her husband died"],"needs":"company","referrer":{"name":"Dr Who","ods_code":"A81001"},
		"consent":{"recorded":true}}}`
	got := string(referral.MaskPayload(json.RawMessage(in)))
	for _, secret := range []string{"Ada", "9434765919", "1815", "James", "lonely", "company", "Dr Who"} {
		if strings.Contains(got, secret) {
			t.Errorf("masked payload shows %q: %s", secret, got)
		}
	}
	for _, kept := range []string{`"type":"referral.created"`, `"id":"r1"`, `"status":"requested"`, `"version":2`,
		`"ods_code":"A81001"`, `"recorded":true`, `"timestamp":"2026-11-21T10:05:00Z"`, `"address":["•••"]`} {
		if !strings.Contains(got, kept) {
			t.Errorf("masked payload lacks %s: %s", kept, got)
		}
	}
	if got := string(referral.MaskPayload(json.RawMessage(`not json`))); got != `"•••"` {
		t.Errorf("masked non-JSON: %s", got)
	}
}

package referral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/referral"
)

// The use cases, called directly (no HTTP), on a real SQLite file and on a real PostgreSQL schema: each test
// runs once per backend.

var quiet = slog.New(slog.DiscardHandler)

// backend opens one store for a test.
type backend struct {
	name string
	open func(t *testing.T) outbox.Store
}

var backends = []backend{
	{"sqlite", func(t *testing.T) outbox.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "socialrx.db"), sqlite.Options{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
	{"postgres", func(t *testing.T) outbox.Store {
		st, err := postgres.Open(context.Background(), pgtest.FreshSchema(t), postgres.Options{Logger: quiet, MaxConns: 4, NoListen: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
}

// eachBackend runs f as a parallel subtest on every backend.
func eachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, b.open(t)))
		})
	}
}

// env is a Service over one store with the demo directory and a clock that moves 1 ms per reading.
type env struct {
	t     *testing.T
	store outbox.Store
	svc   *referral.Service
	cfg   *config.Config
	clock *atomic.Int64
	keys  *outbox.Keyring
}

func newEnv(t *testing.T, st outbox.Store) *env {
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := outbox.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, cfg: cfg, clock: &atomic.Int64{}, keys: keys}
	e.clock.Store(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMicro())
	e.svc, err = referral.New(referral.Options{Store: st, Config: cfg, Logger: quiet, Secrets: keys, MaxSubscriptionsPerClient: 3,
		Clock: func() time.Time { return time.UnixMicro(e.clock.Add(1000)).UTC() }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// caller is the Caller of a demo client.
func (e *env) caller(id string) referral.Caller {
	e.t.Helper()
	for _, c := range e.cfg.Clients {
		if c.ID == id {
			return referral.Caller{Client: c, RequestID: "test-request"}
		}
	}
	e.t.Fatalf("no demo client %q", id)
	return referral.Caller{}
}

// fixture parses a referral fixture of testdata/referrals.
func fixture(t *testing.T, name string, edit func(map[string]any)) *fhir.Submission {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "referrals", name))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := fhir.ParseServiceRequest(b)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return sub
}

// submit posts the walking-group fixture (routed to frome-walks, a webhook service) as practice A81001.
func (e *env) submit() outbox.Referral {
	e.t.Helper()
	res, err := e.svc.Submit(context.Background(), e.caller("practice-a81001"),
		referral.Submission{Parsed: fixture(e.t, "walking-group-performer.json", nil)})
	if err != nil || !res.Created {
		e.t.Fatalf("Submit = %+v, %v", res, err)
	}
	return res.Referral
}

func kindIs(t *testing.T, what string, err error, want fault.Kind) {
	t.Helper()
	if got := fault.KindOf(err); err == nil || got != want {
		t.Errorf("%s: error %v (kind %s), want kind %s", what, err, got, want)
	}
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref := e.submit()
		if ref.Record.Service.ID != "frome-walks" || ref.Record.Status != mapping.StatusRequested || ref.PracticeODS != "A81001" {
			t.Fatalf("referral %+v", ref.Record)
		}
		// An identical resend returns the same referral, writing nothing.
		res, err := e.svc.Submit(ctx, e.caller("practice-a81001"), referral.Submission{Parsed: fixture(t, "walking-group-performer.json", nil)})
		if err != nil || res.Created || res.Referral.Record.ID != ref.Record.ID {
			t.Errorf("resend = created %v, %s, %v", res.Created, res.Referral.Record.ID, err)
		}
		// The same identifier with other content is a conflict.
		changed := fixture(t, "walking-group-performer.json", func(m map[string]any) { m["priority"] = "urgent" })
		_, err = e.svc.Submit(ctx, e.caller("practice-a81001"), referral.Submission{Parsed: changed})
		if !errors.Is(err, outbox.ErrConflict) {
			t.Errorf("changed resend: %v, want ErrConflict", err)
		}
		// Another practice's client may neither refer from A81001 nor learn that the identifier exists.
		_, err = e.svc.Submit(ctx, e.caller("practice-b82002"), referral.Submission{Parsed: fixture(t, "walking-group-performer.json", nil)})
		kindIs(t, "another practice", err, fault.Forbidden)
		for _, id := range []string{"frome-walks", "ops"} {
			_, err = e.svc.Submit(ctx, e.caller(id), referral.Submission{Parsed: fixture(t, "walking-group-performer.json", nil)})
			kindIs(t, id+" submitting", err, fault.Forbidden)
		}
		// A conditional create that finds the referral returns it.
		id := mapping.Identifier{System: "https://fhir.frome-valley-mc.example/Id/referral", Value: "FVMC-2025-0142"}
		res, err = e.svc.Submit(ctx, e.caller("practice-a81001"), referral.Submission{Parsed: changed, IfNoneExist: &id})
		if err != nil || res.Created || res.Referral.Record.ID != ref.Record.ID {
			t.Errorf("If-None-Exist = created %v, %v", res.Created, err)
		}
		// A business rule broken is a fault.Rule error naming it; nothing is written.
		doNot := fixture(t, "walking-group-performer.json", func(m map[string]any) {
			m["identifier"] = []any{map[string]any{"system": "urn:test", "value": "do-not"}}
			m["doNotPerform"] = true
		})
		_, err = e.svc.Submit(ctx, e.caller("practice-a81001"), referral.Submission{Parsed: doNot})
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Kind != fault.Rule || len(fe.Issues) == 0 {
			t.Errorf("doNotPerform: %v, want a fault.Rule *fhir.Error", err)
		}
		refs, _, err := e.svc.Search(ctx, e.caller("ops"), referral.Query{})
		if err != nil || len(refs) != 1 {
			t.Errorf("referrals stored: %d, %v; want 1", len(refs), err)
		}
	})
}

func TestVisibility(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref := e.submit()
		for _, tc := range []struct {
			client string
			kind   referral.IDKind
			id     string
			sees   bool
		}{
			{"practice-a81001", referral.ByTaskID, ref.Record.TaskID, true},
			{"frome-valley-pcn", referral.ByServiceRequestID, ref.Record.ServiceRequestID, true},
			{"frome-walks", referral.ByRecordID, ref.Record.ID, true},
			{"ops", referral.ByTaskID, ref.Record.TaskID, true},
			{"practice-b82002", referral.ByTaskID, ref.Record.TaskID, false},
			{"museum-volunteers", referral.ByRecordID, ref.Record.ID, false},
			{"practice-a81001", referral.ByTaskID, ref.Record.ServiceRequestID, false}, // the right referral, the wrong kind of id
		} {
			got, err := e.svc.Get(ctx, e.caller(tc.client), tc.kind, tc.id)
			switch {
			case tc.sees && (err != nil || got.Record.ID != ref.Record.ID):
				t.Errorf("%s Get %s: %v", tc.client, tc.kind, err)
			case !tc.sees && !errors.Is(err, outbox.ErrNotFound):
				t.Errorf("%s Get %s: %v, want not found", tc.client, tc.kind, err)
			}
			refs, _, err := e.svc.Search(ctx, e.caller(tc.client), referral.Query{})
			if err != nil || (len(refs) == 1) != (tc.sees || tc.kind == referral.ByTaskID && tc.id == ref.Record.ServiceRequestID) {
				t.Errorf("%s Search: %d referrals, %v", tc.client, len(refs), err)
			}
		}
		// A GP asking for another practice's referrals, or a community service for another service's, finds none.
		var q referral.Query
		q.RequesterODS = "B82002"
		if refs, _, err := e.svc.Search(ctx, e.caller("practice-a81001"), q); err != nil || len(refs) != 0 {
			t.Errorf("GP asking for another practice: %d, %v", len(refs), err)
		}
		q = referral.Query{}
		q.ServiceID = "museum-volunteers"
		if refs, _, err := e.svc.Search(ctx, e.caller("frome-walks"), q); err != nil || len(refs) != 0 {
			t.Errorf("service asking for another service: %d, %v", len(refs), err)
		}
		if refs, _, err := e.svc.Search(ctx, e.caller("ops"), referral.Query{None: true}); err != nil || len(refs) != 0 {
			t.Errorf("a query that matches nothing: %d, %v", len(refs), err)
		}
	})
}

func TestChangeStatus(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref := e.submit()
		walks := e.caller("frome-walks")
		move := func(st mapping.TaskStatus, expect int, reason, note string) (outbox.Referral, error) {
			_, after, err := e.svc.ChangeStatus(ctx, walks, referral.StatusRequest{ReferralID: ref.Record.ID,
				ExpectVersion: expect, Status: st, Reason: reason, Note: note})
			return after, err
		}
		got, err := move(mapping.StatusAccepted, 1, "", "")
		if err != nil || got.Record.Status != mapping.StatusAccepted || got.Record.Version != 2 {
			t.Fatalf("accept: %+v, %v", got.Record, err)
		}
		if got, err = move(mapping.StatusAccepted, 0, "", ""); err != nil || got.Record.Version != 2 {
			t.Errorf("repeat: version %d, %v; want 2 (no change)", got.Record.Version, err)
		}
		if got, err = move(mapping.StatusAccepted, 0, "", "Called, left a message"); err != nil || got.Record.Version != 3 ||
			len(got.TaskNotes) != 1 || got.TaskNotes[0].Author != "Frome Walking for Health" {
			t.Errorf("note-only change: %+v %+v, %v", got.Record, got.TaskNotes, err)
		}
		if _, err = move(mapping.StatusInProgress, 2, "", ""); !errors.Is(err, outbox.ErrVersionMismatch) {
			t.Errorf("stale version: %v", err)
		}
		_, err = move(mapping.StatusCompleted, 0, "", "")
		var te *mapping.TransitionError
		if !errors.As(err, &te) || fault.KindOf(err) != fault.Conflict {
			t.Errorf("illegal move: %v, want a conflict", err)
		}
		if _, err = move(mapping.StatusInProgress, 0, "", ""); err != nil {
			t.Fatal(err)
		}
		_, err = move(mapping.StatusOnHold, 0, "  ", "")
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != fault.Rule || fe.Issues[0].Code != mapping.CodeReasonRequired || fe.Issues[0].Field != mapping.FieldReason {
			t.Errorf("hold without a reason: %v", err)
		}
		// Another service, and a GP client, cannot move it; nothing changed meanwhile.
		_, _, err = e.svc.ChangeStatus(ctx, e.caller("museum-volunteers"), referral.StatusRequest{ReferralID: ref.Record.ID, Status: mapping.StatusCompleted})
		if !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("another service: %v", err)
		}
		_, _, err = e.svc.ChangeStatus(ctx, e.caller("practice-a81001"), referral.StatusRequest{ReferralID: ref.Record.ID, Status: mapping.StatusCompleted})
		kindIs(t, "GP on the community path", err, fault.Forbidden)
		cur, err := e.svc.Get(ctx, walks, referral.ByRecordID, ref.Record.ID)
		if err != nil || cur.Record.Status != mapping.StatusInProgress || cur.Record.Version != 4 {
			t.Errorf("after refused moves: %+v, %v", cur.Record, err)
		}
	})
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref := e.submit()
		gp := e.caller("practice-a81001")
		if _, err := e.svc.ServiceRequestForUpdate(ctx, e.caller("frome-walks"), ref.Record.ServiceRequestID); fault.KindOf(err) != fault.Forbidden {
			t.Errorf("the service revoking: %v, want forbidden", err)
		}
		if _, err := e.svc.ServiceRequestForUpdate(ctx, e.caller("practice-b82002"), ref.Record.ServiceRequestID); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("another practice revoking: %v, want not found", err)
		}
		cur, err := e.svc.ServiceRequestForUpdate(ctx, gp, ref.Record.ServiceRequestID)
		if err != nil {
			t.Fatal(err)
		}
		sr, err := e.svc.ServiceRequest(ctx, cur)
		if err != nil || sr.Status != "active" || sr.Version != "1" {
			t.Fatalf("ServiceRequest: %s v%s, %v", sr.Status, sr.Version, err)
		}
		set := func(k string, v any) []byte {
			b, err := referral.SetJSONField(sr.Body, k, v)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		if _, err := e.svc.Revoke(ctx, gp, cur, "", set("priority", "stat")); fault.KindOf(err) != fault.Rule {
			t.Errorf("changing priority: %v, want a rule error", err)
		}
		if _, err := e.svc.Revoke(ctx, gp, cur, "7", set("status", "revoked")); !errors.Is(err, outbox.ErrVersionMismatch) {
			t.Errorf("stale If-Match: %v", err)
		}
		next, err := e.svc.Revoke(ctx, gp, cur, "1", set("status", "revoked"))
		if err != nil || next.Record.Status != mapping.StatusCancelled || next.Record.StatusReason != referral.RevokeReason {
			t.Fatalf("revoke: %+v, %v", next.Record, err)
		}
		after, err := e.svc.ServiceRequest(ctx, next)
		if err != nil || after.Status != "revoked" || after.Version != "2" || !bytes.Contains(after.Body, []byte(`"status":"revoked"`)) {
			t.Errorf("revoked ServiceRequest: %s v%s, %v", after.Status, after.Version, err)
		}
		again, err := e.svc.Revoke(ctx, gp, next, "", set("status", "revoked"))
		if err != nil || again.Record.Version != next.Record.Version {
			t.Errorf("revoking again: version %d, %v; want unchanged", again.Record.Version, err)
		}
	})
}

func TestUpdateTask(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		ref := e.submit()
		if _, _, err := e.svc.TaskForUpdate(ctx, e.caller("ops"), ref.Record.TaskID); fault.KindOf(err) != fault.Forbidden {
			t.Errorf("admin updating a Task: %v", err)
		}
		walks := e.caller("frome-walks")
		cur, actor, err := e.svc.TaskForUpdate(ctx, walks, ref.Record.TaskID)
		if err != nil || actor != mapping.ActorCommunity {
			t.Fatalf("TaskForUpdate: %s, %v", actor, err)
		}
		if err := referral.ExpectVersion(cur, 2); !errors.Is(err, outbox.ErrVersionMismatch) {
			t.Errorf("ExpectVersion(2) of v1: %v", err)
		}
		// The service sends back the Task as it is shown to it (cut to its sharing profile); the whole Task,
		// with the NHS number it may not see, is a change of Task.for.
		if _, err := e.svc.UpdateTask(ctx, walks, cur, actor, 1, mustJSON(t, mapping.TaskFor(cur.Referral))); fault.KindOf(err) != fault.Rule {
			t.Errorf("the service sends back the GP's whole Task: %v, want a rule error on Task.for", err)
		}
		task := mapping.TaskFor(e.svc.ViewFor(walks.Client, cur).Referral)
		task.Status = string(mapping.StatusReceived)
		body, err := json.Marshal(task)
		if err != nil {
			t.Fatal(err)
		}
		next, err := e.svc.UpdateTask(ctx, walks, cur, actor, 1, body)
		if err != nil || next.Record.Status != mapping.StatusReceived || next.Record.Version != 2 {
			t.Fatalf("UpdateTask: %+v, %v", next.Record, err)
		}
		same, err := e.svc.UpdateTask(ctx, walks, next, actor, 2, mustJSON(t, mapping.TaskFor(e.svc.ViewFor(walks.Client, next).Referral)))
		if err != nil || same.Record.Version != 2 {
			t.Errorf("the Task sent back as read: version %d, %v; want no change", same.Record.Version, err)
		}
		task = mapping.TaskFor(e.svc.ViewFor(walks.Client, next).Referral)
		task.Priority = "stat"
		if _, err := e.svc.UpdateTask(ctx, walks, next, actor, 2, mustJSON(t, task)); fault.KindOf(err) != fault.Rule {
			t.Errorf("changing priority: %v, want a rule error", err)
		}
		if _, err := e.svc.UpdateTask(ctx, walks, next, actor, 2, []byte(`{"resourceType":"Task"}`)); fault.KindOf(err) != fault.Invalid {
			t.Errorf("not a valid Task: %v, want invalid", err)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		gp := e.caller("practice-a81001")
		body := []byte(`{"resourceType":"Subscription","status":"requested","reason":"Keep our record in step",
			"criteria":"Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|A81001",
			"channel":{"type":"rest-hook","endpoint":"https://gp.example.org/hook","payload":"application/fhir+json",
			"header":["Authorization: Bearer secret"]}}`)
		if _, err := e.svc.Subscribe(ctx, e.caller("frome-walks"), body, "https://socialrx.example/fhir"); fault.KindOf(err) != fault.Forbidden {
			t.Errorf("a community client subscribing: %v", err)
		}
		other := bytes.Replace(body, []byte("|A81001"), []byte("|B82002"), 1)
		if _, err := e.svc.Subscribe(ctx, gp, other, "https://socialrx.example/fhir"); fault.KindOf(err) != fault.Rule {
			t.Errorf("another practice's criteria: %v, want a rule error", err)
		}
		sub, err := e.svc.Subscribe(ctx, gp, body, "https://socialrx.example/fhir")
		if err != nil || sub.Status != outbox.SubscriptionActive || sub.PracticeODS != "A81001" || bytes.Contains(sub.Resource, []byte("secret")) {
			t.Fatalf("Subscribe: %+v, %v", sub, err)
		}
		e.submit() // one notification numbered for the subscription
		if got, err := e.svc.Subscription(ctx, gp, sub.ID, false); err != nil || got.EventsSinceStart != 1 {
			t.Errorf("after a referral: events %d, %v; want 1", got.EventsSinceStart, err)
		}
		if _, err := e.svc.Subscription(ctx, e.caller("practice-b82002"), sub.ID, false); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("another client reading it: %v", err)
		}
		if _, err := e.svc.Subscription(ctx, e.caller("ops"), sub.ID, false); err != nil {
			t.Errorf("an admin reading it: %v", err)
		}
		if _, err := e.svc.Unsubscribe(ctx, e.caller("ops"), sub.ID); !errors.Is(err, outbox.ErrNotFound) {
			t.Errorf("an admin deleting it: %v, want not found (owner only)", err)
		}
		off, err := e.svc.Unsubscribe(ctx, gp, sub.ID)
		if err != nil || off.Status != outbox.SubscriptionOff {
			t.Errorf("Unsubscribe: %+v, %v", off.Status, err)
		}
	})
}

func TestUseOnce(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		until := time.UnixMicro(e.clock.Load()).Add(time.Hour)
		if fresh, err := e.svc.UseOnce(ctx, "jti:abc", until); err != nil || !fresh {
			t.Errorf("first use: %v, %v", fresh, err)
		}
		if fresh, err := e.svc.UseOnce(ctx, "jti:abc", until); err != nil || fresh {
			t.Errorf("second use: %v, %v; want refused", fresh, err)
		}
	})
}

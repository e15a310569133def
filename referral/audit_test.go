package referral_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// TestAuditLifecycle: a referral's whole life — the GP's post and reads, the service's reads and moves, the
// GP's cancellation, an engineer's timeline and find — leaves one audit record per access with the right
// actor, role, route, action and resource, the server's request id with the client's beside it, and the
// client's address; the GP's view of the trail is its practices' only; the trail verifies (both backends).
func TestAuditLifecycle(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		audit := outbox.NewAuditLog(e.store, outbox.AuditLogOptions{Instance: "test"})
		t.Cleanup(audit.Close)
		svc, err := referral.New(referral.Options{Store: e.store, Config: e.cfg, Logger: quiet, Auditor: audit})
		if err != nil {
			t.Fatal(err)
		}
		req := func(via, id, clientID, addr string) context.Context {
			return referral.WithOrigin(context.Background(), &referral.Origin{RequestID: id, ClientRequestID: clientID, Address: addr, Via: via})
		}
		gp, walks := e.caller("practice-a81001"), e.caller("frome-walks")
		res, err := svc.Submit(req(referral.ViaFHIR, "r1", "gp-own-id", "192.0.2.1"), gp,
			referral.Submission{Parsed: fixture(t, "walking-group-performer.json", nil)})
		if err != nil || !res.Created {
			t.Fatalf("submit: %v", err)
		}
		rec := res.Referral.Record
		if _, err := svc.Get(req(referral.ViaFHIR, "r2", "", "192.0.2.1"), gp, referral.ByTaskID, rec.TaskID); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Get(req(referral.ViaCommunity, "r3", "", "198.51.100.7"), walks, referral.ByRecordID, rec.ID); err != nil {
			t.Fatal(err)
		}
		for i, st := range []mapping.TaskStatus{mapping.StatusReceived, mapping.StatusAccepted} {
			if _, _, err := svc.ChangeStatus(req(referral.ViaInbox, []string{"r4", "r5"}[i], "", "198.51.100.7"), walks,
				referral.StatusRequest{ReferralID: rec.ID, Status: st}); err != nil {
				t.Fatal(err)
			}
		}
		refs, _, err := svc.Search(req(referral.ViaFHIR, "r6", "", "192.0.2.1"), gp,
			referral.Query{ReferralQuery: outbox.ReferralQuery{ID: rec.ID}, Resource: referral.ByTaskID})
		if err != nil || len(refs) != 1 {
			t.Fatalf("search: %d, %v", len(refs), err)
		}
		// Another practice's search finds nothing, and so records nothing.
		if refs, _, err := svc.Search(req(referral.ViaFHIR, "r7", "", "192.0.2.9"), e.caller("practice-b82002"),
			referral.Query{Resource: referral.ByTaskID}); err != nil || len(refs) != 0 {
			t.Fatalf("other practice's search: %d, %v", len(refs), err)
		}
		// An engineer in the console reads the timeline.
		ctx := req(referral.ViaConsole, "r8", "", "203.0.113.5")
		referral.SetActor(ctx, "console:ops/alice", "admin")
		if _, err := svc.Operator().Timeline(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		// The CLI's engineer finds it by NHS number.
		if found, err := svc.Operator().FindReferrals(referral.WithOrigin(context.Background(), referral.CLIOrigin("cli:bob")), rec.Patient.NHSNumber); err != nil || len(found) != 1 {
			t.Fatalf("find: %d, %v", len(found), err)
		}

		got, err := e.store.ListAudit(context.Background(), outbox.AuditQuery{ReferralID: rec.ID})
		if err != nil {
			t.Fatal(err)
		}
		type row struct{ actor, role, via, action, resource, req, clientReq, addr string }
		want := []row{
			{"practice-a81001", "gp", "fhir", "create", "ServiceRequest/" + rec.ServiceRequestID, "r1", "gp-own-id", "192.0.2.1"},
			{"practice-a81001", "gp", "fhir", "read", "Task/" + rec.TaskID, "r2", "", "192.0.2.1"},
			{"frome-walks", "community", "community-api", "read", "Referral/" + rec.ID, "r3", "", "198.51.100.7"},
			{"frome-walks", "community", "inbox", "update", "Referral/" + rec.ID, "r4", "", "198.51.100.7"},
			{"frome-walks", "community", "inbox", "update", "Referral/" + rec.ID, "r5", "", "198.51.100.7"},
			{"practice-a81001", "gp", "fhir", "read", "Task/" + rec.TaskID, "r6", "", "192.0.2.1"},
			{"console:ops/alice", "admin", "console", "read", "Referral/" + rec.ID, "r8", "", "203.0.113.5"},
			{"cli:bob", "operator", "cli", "read", "Referral/" + rec.ID, "", "", ""},
		}
		if len(got) != len(want) {
			t.Fatalf("%d audit records, want %d: %+v", len(got), len(want), got)
		}
		for i, g := range got {
			w := want[i]
			if w.req == "" {
				w.req = g.RequestID // the CLI run's own id
			}
			have := row{g.ActorID, g.ActorRole, g.Via, string(g.Action), g.ResourceType + "/" + g.ResourceID, g.RequestID, g.ClientRequestID, g.Address}
			if have != w || g.PracticeODS != "A81001" || g.ServiceID != "frome-walks" || g.ReferralID != rec.ID {
				t.Errorf("record %d = %+v, want %+v (practice A81001, service frome-walks)", i+1, g, w)
			}
		}
		if got[7].RequestID == "" {
			t.Error("the CLI's record has no request id")
		}
		// The GP's view of the trail: its practice's records; another practice sees none of them.
		mine, err := svc.Audit(context.Background(), gp, outbox.AuditQuery{ReferralID: rec.ID})
		if err != nil || len(mine) != len(want) {
			t.Errorf("the GP's view: %d records, %v", len(mine), err)
		}
		theirs, err := svc.Audit(context.Background(), e.caller("practice-b82002"), outbox.AuditQuery{ReferralID: rec.ID})
		if err != nil || len(theirs) != 0 {
			t.Errorf("another practice's view: %d records, %v", len(theirs), err)
		}
		if _, err := svc.Audit(context.Background(), walks, outbox.AuditQuery{}); err == nil {
			t.Error("a community client read the audit trail")
		}
		// The change events name their actor: the GP client that posted the referral.
		msgs, err := e.store.ListMessages(context.Background(), outbox.MessageQuery{ReferralID: rec.ID})
		if err != nil || len(msgs) == 0 {
			t.Fatalf("messages: %d, %v", len(msgs), err)
		}
		var body struct {
			Type  string
			Actor *mapping.EventActor
		}
		if err := json.Unmarshal(msgs[0].Payload, &body); err != nil || body.Type != "referral.created" || body.Actor == nil ||
			*body.Actor != (mapping.EventActor{ID: "practice-a81001", Role: "gp"}) {
			t.Errorf("referral.created names no actor, or the wrong one: %s", msgs[0].Payload)
		}
		rep, err := outbox.VerifyAudit(context.Background(), e.store, nil)
		if err != nil || !rep.OK {
			t.Fatalf("verify: %+v, %v", rep, err)
		}
	})
}

// TestCreationAuditedInItsTransaction: the record of a referral's creation is written in the transaction that
// creates it, on a chain the AuditLog lends, so it does not wait for the AuditLog's own appends: with the
// AuditLog closed (its appender gone, as in a process killed between two commits), a new referral is still
// created with its record, and the trail verifies. A resend is a read, which cannot be recorded now, and so
// is refused (both backends).
func TestCreationAuditedInItsTransaction(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		audit := outbox.NewAuditLog(e.store, outbox.AuditLogOptions{Instance: "test"})
		svc, err := referral.New(referral.Options{Store: e.store, Config: e.cfg, Logger: quiet, Auditor: audit})
		if err != nil {
			t.Fatal(err)
		}
		audit.Close()
		ctx := referral.WithOrigin(context.Background(), &referral.Origin{RequestID: "r1", Address: "192.0.2.1", Via: referral.ViaFHIR})
		gp := e.caller("practice-a81001")
		sub := referral.Submission{Parsed: fixture(t, "walking-group-performer.json", nil)}
		res, err := svc.Submit(ctx, gp, sub)
		if err != nil || !res.Created {
			t.Fatalf("submit: created %v, %v", res.Created, err)
		}
		rec := res.Referral.Record
		got, err := e.store.ListAudit(context.Background(), outbox.AuditQuery{ReferralID: rec.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Action != outbox.AuditCreate || got[0].ResourceID != rec.ServiceRequestID ||
			got[0].RequestID != "r1" || got[0].ActorID != "practice-a81001" || got[0].Chain == audit.Chain() {
			t.Fatalf("records of the new referral: %+v; want its creation's, on a chain other than the AuditLog's %s", got, audit.Chain())
		}
		if _, err := svc.Submit(ctx, gp, sub); fault.KindOf(err) != fault.Unavailable {
			t.Errorf("a resend that cannot be audited: %v, want refused (unavailable)", err)
		}
		rep, err := outbox.VerifyAudit(context.Background(), e.store, nil)
		if err != nil || !rep.OK || rep.Records != 1 {
			t.Fatalf("verify: %+v, %v", rep, err)
		}
	})
}

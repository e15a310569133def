package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/outbox"
)

type auditPage struct {
	Records []struct {
		Seq             int64  `json:"seq"`
		Actor           string `json:"actor"`
		Role            string `json:"role"`
		Via             string `json:"via"`
		Action          string `json:"action"`
		Resource        string `json:"resource"`
		ReferralID      string `json:"referral_id"`
		Address         string `json:"address"`
		RequestID       string `json:"request_id"`
		ClientRequestID string `json:"client_request_id"`
	} `json:"records"`
	NextAfterSeq int64 `json:"next_after_seq"`
}

func readAudit(t *testing.T, h *harness, query string) auditPage {
	t.Helper()
	r := h.do(http.MethodGet, "/admin/v1/audit"+query, tokAdmin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /admin/v1/audit%s: %d %s", query, r.status, r.body)
	}
	var p auditPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestAuditOverHTTP: over real HTTP, the request id is the server's (a UUIDv7 in X-Request-ID and the
// OperationOutcome, whatever X-Request-ID the client sent), the client's is kept beside it in the audit
// record, with the actor, route and the client's address; GET /admin/v1/audit filters and pages, refuses
// bad parameters naming them, and is for admins only.
func TestAuditOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ids := refer(h, tokGP, "walking-group-performer.json")
	read := h.do(http.MethodGet, "/fhir/Task/"+ids.task, tokGP, nil, "X-Request-ID: my-own-request-0001")
	serverID := read.header.Get("X-Request-ID")
	if read.status != http.StatusOK || !uuidPattern.MatchString(serverID) {
		t.Fatalf("read: %d, X-Request-ID %q (want the server's own UUIDv7)", read.status, serverID)
	}
	bad := h.do(http.MethodGet, "/fhir/Task?colour=blue", tokGP, nil, "X-Request-ID: my-own-request-0002")
	if id := bad.header.Get("X-Request-ID"); !uuidPattern.MatchString(id) || !regexp.MustCompile(`"id":"`+id+`"`).Match(bad.body) {
		t.Errorf("an error's X-Request-ID %q is not the server's, or not the OperationOutcome's id: %s", id, bad.body)
	}
	if r := setStatus(h, tokWalks, ids.referral, `{"status": "received"}`); r.status != http.StatusOK {
		t.Fatalf("received: %d %s", r.status, r.body)
	}

	p := readAudit(t, h, "?referral="+ids.referral)
	// The status change reads the referral (its answer is the record) and changes it: two records, one request.
	if len(p.Records) != 4 {
		t.Fatalf("%d records for the referral, want 4 (create, read, read and update): %+v", len(p.Records), p.Records)
	}
	create, rd, upd := p.Records[0], p.Records[1], p.Records[3]
	if p.Records[2].RequestID != upd.RequestID || p.Records[2].Action != "read" {
		t.Errorf("the status change's read: %+v", p.Records[2])
	}
	if create.Actor != "practice-a81001" || create.Action != "create" || create.Via != "fhir" || create.Resource != "ServiceRequest/"+ids.sr {
		t.Errorf("create record: %+v", create)
	}
	if rd.RequestID != serverID || rd.ClientRequestID != "my-own-request-0001" || rd.Address != "127.0.0.1" ||
		rd.Actor != "practice-a81001" || rd.Role != "gp" || rd.Action != "read" || rd.Resource != "Task/"+ids.task {
		t.Errorf("read record: %+v (want request id %s beside the client's)", rd, serverID)
	}
	if upd.Actor != "frome-walks" || upd.Role != "community" || upd.Via != "community-api" || upd.Action != "update" {
		t.Errorf("update record: %+v", upd)
	}
	if p := readAudit(t, h, "?client=frome-walks&referral="+ids.referral); len(p.Records) != 2 {
		t.Errorf("client filter: %d records, want 2", len(p.Records))
	}
	if p := readAudit(t, h, "?since=2999-01-01T00:00:00Z"); len(p.Records) != 0 {
		t.Errorf("since the future: %d records", len(p.Records))
	}
	first := readAudit(t, h, "?referral="+ids.referral+"&limit=2")
	if len(first.Records) != 2 || first.NextAfterSeq == 0 {
		t.Fatalf("first page: %+v", first)
	}
	if next := readAudit(t, h, "?referral="+ids.referral+"&limit=2&after_seq="+strconv.FormatInt(first.NextAfterSeq, 10)); len(next.Records) != 2 || next.Records[1].Action != "update" {
		t.Errorf("second page: %+v", next)
	}
	for q, field := range map[string]string{"?since=yesterday": "since", "?limit=0": "limit", "?colour=blue": "colour",
		"?referral=": "referral", "?after_seq=-1": "after_seq"} {
		r := h.do(http.MethodGet, "/admin/v1/audit"+q, tokAdmin, nil)
		if _, f, _ := apiErr(t, r); r.status != http.StatusBadRequest || f != field {
			t.Errorf("%s: %d, field %q, want 400 naming %s", q, r.status, f, field)
		}
	}
	for _, tok := range []string{tokGP, tokWalks} {
		if r := h.do(http.MethodGet, "/admin/v1/audit", tok, nil); r.status != http.StatusForbidden {
			t.Errorf("a non-admin reads the trail: %d", r.status)
		}
	}
}

// TestAuditEventSearch: the practice asks "who saw this referral" as FHIR AuditEvents (R4-valid by the
// official schema): every access, with the actor, its route and address, the interaction and the request
// ids; by entity (ServiceRequest or Task) and date; another practice finds nothing, a community client is
// refused, bad parameters are a 400 naming them; the CapabilityStatement declares it.
func TestAuditEventSearch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ids := refer(h, tokGP, "walking-group-performer.json")
	if r := h.do(http.MethodGet, "/community/v1/referrals/"+ids.referral, tokWalks, nil, "X-Request-ID: walks-own-id-0001"); r.status != http.StatusOK {
		t.Fatalf("community read: %d", r.status)
	}
	type event struct {
		ResourceType string
		ID           string
		Type         struct{ Code string }
		Subtype      []struct{ Code string }
		Action       string
		Agent        []struct {
			Who struct {
				Identifier struct{ Value string }
			}
			Requestor bool
			Network   struct{ Address string }
		}
		Entity []struct {
			What struct {
				Reference  string
				Identifier struct{ System, Value string }
			}
		}
	}
	search := func(token, query string) (int, []event, string) {
		t.Helper()
		r := h.do(http.MethodGet, "/fhir/AuditEvent"+query, token, nil)
		var b struct {
			Entry []struct{ Resource event }
			Link  []struct{ Relation, URL string }
		}
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &b); err != nil {
				t.Fatal(err)
			}
		}
		var out []event
		for _, e := range b.Entry {
			out = append(out, e.Resource)
		}
		next := ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
		return r.status, out, next
	}
	code, evs, _ := search(tokGP, "?entity=ServiceRequest/"+ids.sr)
	if code != http.StatusOK || len(evs) != 2 {
		t.Fatalf("search by entity: %d, %d events, want 2: %+v", code, len(evs), evs)
	}
	create, read := evs[0], evs[1]
	if create.ResourceType != "AuditEvent" || create.Action != "C" || create.Type.Code != "rest" || create.Subtype[0].Code != "create" ||
		create.Agent[0].Who.Identifier.Value != "practice-a81001" || !create.Agent[0].Requestor || create.Agent[0].Network.Address != "127.0.0.1" {
		t.Errorf("create event: %+v", create)
	}
	var refs, reqIDs []string
	for _, e := range read.Entity {
		if e.What.Reference != "" {
			refs = append(refs, e.What.Reference)
		}
		if e.What.Identifier.Value != "" {
			reqIDs = append(reqIDs, e.What.Identifier.Value)
		}
	}
	if read.Action != "R" || read.Agent[0].Who.Identifier.Value != "frome-walks" || len(refs) == 0 || refs[0] != "ServiceRequest/"+ids.sr ||
		len(reqIDs) != 2 || reqIDs[1] != "walks-own-id-0001" {
		t.Errorf("the community read's event: %+v (references %v, request ids %v)", read, refs, reqIDs)
	}
	if code, evs, _ := search(tokGP, "?entity=Task/"+ids.task+"&date=ge2026-01-01&date=lt2999-01-01"); code != http.StatusOK || len(evs) != 2 {
		t.Errorf("by Task and date: %d, %d events", code, len(evs))
	}
	if code, evs, _ := search(tokGP, "?entity=ServiceRequest/"+ids.sr+"&date=lt2000-01-01"); code != http.StatusOK || len(evs) != 0 {
		t.Errorf("before 2000: %d, %d events", code, len(evs))
	}
	code, page, next := search(tokGP, "?entity=ServiceRequest/"+ids.sr+"&_count=1")
	if code != http.StatusOK || len(page) != 1 || next == "" {
		t.Fatalf("first page: %d %d %q", code, len(page), next)
	}
	if _, rest, _ := search(tokGP, next[strings.Index(next, "/AuditEvent")+len("/AuditEvent"):]); len(rest) != 1 || rest[0].ID == page[0].ID {
		t.Errorf("next page: %+v", rest)
	}
	// Another practice sees nothing of it, by entity or at all; a community client may not ask.
	if code, evs, _ := search(tokGP2, "?entity=ServiceRequest/"+ids.sr); code != http.StatusOK || len(evs) != 0 {
		t.Errorf("another practice by entity: %d, %d events", code, len(evs))
	}
	if code, evs, _ := search(tokGP2, ""); code != http.StatusOK || len(evs) != 0 {
		t.Errorf("another practice, everything: %d, %d events", code, len(evs))
	}
	if code, _, _ := search(tokWalks, ""); code != http.StatusForbidden {
		t.Errorf("a community client: %d, want 403", code)
	}
	for q, expr := range map[string]string{"?date=yesterday": "date", "?entity=Patient/1": "entity", "?_count=0": "_count", "?colour=blue": "colour"} {
		r := h.do(http.MethodGet, "/fhir/AuditEvent"+q, tokGP, nil)
		if r.status != http.StatusBadRequest || !hasExpression(issues(t, r), expr) {
			t.Errorf("%s: %d %s, want 400 naming %s", q, r.status, r.body, expr)
		}
	}
	if r := h.do(http.MethodGet, "/fhir/metadata", "", nil); !strings.Contains(string(r.body), `"type":"AuditEvent"`) {
		t.Error("the CapabilityStatement does not declare AuditEvent")
	}
}

// TestAuditSends: every message about a referral that leaves socialrx is in the audit trail as a send by
// socialrx (role system): the referral.created webhook to the community service (resource Message/{id},
// via webhook) and the Subscription notification to the GP system (resource Subscription/{id}, via
// subscription, the message id as the request id); the practice sees both as Export AuditEvents, the
// notification's recipient being its own Subscription.
func TestAuditSends(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			if c.Directory.Services[i].ID == "frome-walks" {
				c.Directory.Services[i].Delivery.URL = rc.url + "/hooks/frome-walks"
				c.Directory.Services[i].Delivery.Secret = "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="
			}
		}
	})
	sub := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, rc.url+"/gp", "id-only"))
	subID := sub["id"].(string)
	reports := make(chan outbox.AttemptReport, 64)
	startDispatcherWith(t, h, outbox.ObserverFunc(func(r outbox.AttemptReport) { reports <- r }), func(o *outbox.DispatcherOptions) {
		audit := outbox.NewAuditLog(h.store, outbox.AuditLogOptions{Instance: "dispatcher"})
		t.Cleanup(audit.Close)
		o.Audit = audit
	})
	ids := refer(h, tokGP, "walking-group-performer.json")
	// The webhook, then the notifications of Task version 1 and of version 2 (businessStatus delivered).
	sent := map[string]string{} // message id → destination kind
	for webhooks, notes := 0, 0; webhooks < 1 || notes < 2; {
		r := waitFor(t, reports, "the webhook and both notifications delivered")
		if r.Outcome == outbox.OutcomeDelivered && r.ReferralID == ids.referral {
			sent[r.MessageID] = string(r.Destination.Kind)
			if r.Destination.Kind == "service" {
				webhooks++
			} else {
				notes++
			}
		}
	}
	found := map[string]bool{}
	for _, rec := range readAudit(t, h, "?referral="+ids.referral).Records {
		if rec.Action != "send" {
			continue
		}
		if rec.Actor != "socialrx" || rec.Role != "system" {
			t.Errorf("send record by %s (%s), want socialrx (system)", rec.Actor, rec.Role)
		}
		switch kind := sent[rec.RequestID]; {
		case kind == "service" && rec.Via == "webhook" && rec.Resource == "Message/"+rec.RequestID,
			kind == "subscription" && rec.Via == "subscription" && rec.Resource == "Subscription/"+subID:
			found[rec.RequestID] = true
		default:
			t.Errorf("a send record for no delivered message, or not as that message was sent: %+v", rec)
		}
	}
	if len(found) != len(sent) {
		t.Fatalf("send records for %d of the %d messages delivered (%v)", len(found), len(sent), sent)
	}
	r := h.do(http.MethodGet, "/fhir/AuditEvent?entity=ServiceRequest/"+ids.sr, tokGP, nil)
	if r.status != http.StatusOK {
		t.Fatalf("AuditEvent search: %d %s", r.status, r.body)
	}
	if n := strings.Count(string(r.body), `"code":"110106"`); n != len(sent) {
		t.Errorf("%d Export AuditEvents, want %d: %s", n, len(sent), r.body)
	}
	if !strings.Contains(string(r.body), `"reference":"Subscription/`+subID+`"`) {
		t.Errorf("the notification's AuditEvent does not name the practice's Subscription: %s", r.body)
	}
}

package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"testing"
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

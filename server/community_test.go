package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

const (
	tokLinkWorkers = "demo-linkworkers-token" // community link-workers (pull-only)
	odsSystem      = "https://fhir.nhs.uk/Id/ods-organization-code"
	jsonCT         = "Content-Type: application/json"
)

// ids are one referral's identifiers.
type ids struct{ referral, task, sr string }

// refer posts a fixture (token "" picks the GP client with tokenFor) and returns the referral's ids.
func refer(h *harness, token, fixture string) ids {
	h.t.Helper()
	r := postFixture(h, token, fixture)
	if r.status != http.StatusCreated && !(r.status == http.StatusOK && strings.Contains(string(r.body), `"status":"201 Created"`)) {
		h.t.Fatalf("post %s: %d %s", fixture, r.status, r.body)
	}
	srID := srFromResponse(h.t, r)["id"].(string)
	ref, err := h.store.GetReferral(context.Background(), srID)
	if err != nil {
		h.t.Fatal(err)
	}
	return ids{referral: ref.Record.ID, task: ref.Record.TaskID, sr: srID}
}

// record decodes a community record.
func record(t *testing.T, r response) mapping.Record {
	t.Helper()
	var rec mapping.Record
	if err := json.Unmarshal(r.body, &rec); err != nil || rec.ID == "" {
		t.Fatalf("want a referral record, got %d %s", r.status, r.body)
	}
	return rec
}

// setStatus posts a community status change.
func setStatus(h *harness, token, referralID, body string, headers ...string) response {
	h.t.Helper()
	return h.do(http.MethodPost, "/community/v1/referrals/"+referralID+"/status", token, []byte(body), append([]string{jsonCT}, headers...)...)
}

// apiErr decodes a JSON API error and checks its shape.
func apiErr(t *testing.T, r response) (code, field, message string) {
	t.Helper()
	var e struct {
		Error     string `json:"error"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" || e.Message == "" {
		t.Fatalf("want a JSON API error, got %d %s", r.status, r.body)
	}
	if e.RequestID == "" || e.RequestID != r.header.Get("X-Request-ID") {
		t.Errorf("request_id %q must equal X-Request-ID %q", e.RequestID, r.header.Get("X-Request-ID"))
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("error Content-Type %q", r.header.Get("Content-Type"))
	}
	return e.Error, e.Field, e.Message
}

// task reads a Task as token and returns it decoded.
func (h *harness) task(token, id string) map[string]any {
	h.t.Helper()
	r := h.do(http.MethodGet, "/fhir/Task/"+id, token, nil)
	if r.status != http.StatusOK {
		h.t.Fatalf("GET Task/%s: %d %s", id, r.status, r.body)
	}
	return r.json(h.t)
}

func meta(res map[string]any, key string) string {
	m, _ := res["meta"].(map[string]any)
	s, _ := m[key].(string)
	return s
}

// version reads the referral's version from the store.
func (h *harness) version(id string) int {
	h.t.Helper()
	ref, err := h.store.GetReferral(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ref.Record.Version
}

// messages lists the outbox messages of one referral of a type.
func (h *harness) messages(referralID string, typ mapping.EventType) []outbox.Message {
	h.t.Helper()
	all, err := h.store.ListMessages(context.Background(), outbox.MessageQuery{ReferralID: referralID})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []outbox.Message
	for _, m := range all {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// poll is the GP's poll: the practice's Tasks changed after since (a meta.lastUpdated).
func (h *harness) poll(token, ods, since string) []map[string]any {
	h.t.Helper()
	q := url.Values{"requester:identifier": {odsSystem + "|" + ods}}
	if since != "" {
		q.Set("_lastUpdated", "gt"+since)
	}
	b := h.do(http.MethodGet, "/fhir/Task?"+q.Encode(), token, nil).json(h.t)
	var out []map[string]any
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		out = append(out, e.(map[string]any)["resource"].(map[string]any))
	}
	return out
}

// recordKeys are the community record's documented top-level fields (README): nothing GP-internal.
var recordKeys = []string{"id", "service_request_id", "task_id", "status", "version", "service", "priority",
	"referred_at", "created_at", "updated_at", "patient", "service_requested", "reasons", "needs", "notes",
	"referrer", "consent", "status_reason", "outcome", "measures"}

func TestCommunityWalkToCompletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // A81001 → frome-walks (webhook)

	polled := h.poll(tokGP, "A81001", "")
	if len(polled) != 1 || polled[0]["id"] != ref.task || meta(polled[0], "versionId") != "1" {
		t.Fatalf("first poll: want Task/%s v1, got %v", ref.task, polled)
	}
	since := meta(polled[0], "lastUpdated")

	inbox := h.do(http.MethodGet, "/community/v1/referrals", tokWalks, nil)
	var page struct {
		Referrals []map[string]any `json:"referrals"`
		Next      string           `json:"next"`
		Resume    string           `json:"resume"`
	}
	if err := json.Unmarshal(inbox.body, &page); err != nil || inbox.status != http.StatusOK {
		t.Fatalf("inbox: %d %s", inbox.status, inbox.body)
	}
	if len(page.Referrals) != 1 || page.Referrals[0]["id"] != ref.referral || page.Referrals[0]["status"] != "requested" || page.Next != "" || page.Resume == "" {
		t.Fatalf("inbox: %s", inbox.body)
	}
	for k := range page.Referrals[0] {
		if !slices.Contains(recordKeys, k) {
			t.Errorf("the community record carries %q, which is not in the documented record", k)
		}
	}
	resume := page.Resume

	// An illegal move names the current state and the allowed moves, and changes nothing.
	r := setStatus(h, tokWalks, ref.referral, `{"status": "completed", "outcome": "x"}`)
	if code, field, msg := apiErr(t, r); r.status != http.StatusConflict || code != "illegal_transition" || field != "status" ||
		!strings.Contains(msg, "requested") || !strings.Contains(msg, "received, accepted, rejected") {
		t.Errorf("requested → completed: want 409 naming the state and moves, got %d %s", r.status, r.body)
	}
	if v := h.version(ref.referral); v != 1 {
		t.Fatalf("a refused move changed the version to %d", v)
	}

	steps := []struct{ body, status string }{
		{`{"status": "received"}`, "received"},
		{`{"status": "accepted"}`, "accepted"},
		{`{"status": "in-progress"}`, "in-progress"},
		{`{"status": "completed", "outcome": "Joined the Tuesday walk; attends weekly",
		   "outcome_code": {"system": "https://socialrx.dev/fhir/CodeSystem/referral-outcome", "code": "engaged", "display": "Engaged with the service"}}`, "completed"},
	}
	for i, st := range steps {
		want := i + 2
		r := setStatus(h, tokWalks, ref.referral, st.body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", st.status, r.status, r.body)
		}
		rec := record(t, r)
		if string(rec.Status) != st.status || rec.Version != want || r.header.Get("ETag") != strconv.Quote(strconv.Itoa(want)) {
			t.Fatalf("%s: record status %s version %d ETag %s", st.status, rec.Status, rec.Version, r.header.Get("ETag"))
		}
		// Repeating the same action is harmless: 200, the same record, no new version.
		again := setStatus(h, tokWalks, ref.referral, st.body)
		if again.status != http.StatusOK || record(t, again).Version != want {
			t.Fatalf("%s repeated: %d %s", st.status, again.status, again.body)
		}
		tk := h.task(tokGP, ref.task)
		if tk["status"] != st.status || meta(tk, "versionId") != strconv.Itoa(want) || tk["lastModified"] != meta(tk, "lastUpdated") {
			t.Fatalf("%s: Task status %v version %s", st.status, tk["status"], meta(tk, "versionId"))
		}
		// GP polling returns exactly the changed Task, once per version.
		polled := h.poll(tokGP, "A81001", since)
		if len(polled) != 1 || polled[0]["id"] != ref.task || meta(polled[0], "versionId") != strconv.Itoa(want) {
			t.Fatalf("%s: poll after %s returned %v", st.status, since, polled)
		}
		since = meta(polled[0], "lastUpdated")
		if again := h.poll(tokGP, "A81001", since); len(again) != 0 {
			t.Fatalf("%s: a second poll returned %d Tasks again", st.status, len(again))
		}
	}

	tk := h.task(tokGP, ref.task)
	out, _ := tk["output"].([]any)
	if len(out) != 2 || out[1].(map[string]any)["valueReference"].(map[string]any)["reference"] != "DocumentReference/"+ref.task+"-letter" {
		t.Fatalf("a completed Task's output: the outcome, then the GP letter (issue 14): %v", tk)
	}
	cc := out[0].(map[string]any)["valueCodeableConcept"].(map[string]any)
	if cc["text"] != "Joined the Tuesday walk; attends weekly" || cc["coding"].([]any)[0].(map[string]any)["code"] != "engaged" {
		t.Errorf("Task.output: %v", out)
	}
	sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil)
	if m := sr.json(t); m["status"] != "completed" || meta(m, "versionId") != "2" || sr.header.Get("ETag") != `W/"2"` {
		t.Errorf("ServiceRequest of a completed referral: status %v version %s ETag %s", m["status"], meta(m, "versionId"), sr.header.Get("ETag"))
	}
	// The community service's own moves are not echoed back to it as webhooks.
	if m := h.messages(ref.referral, mapping.EventReferralUpdated); len(m) != 0 {
		t.Errorf("community moves wrote %d referral.updated messages", len(m))
	}

	// A pull client catching up from its last resume point sees the referral once, as it is now.
	catch := h.do(http.MethodGet, "/community/v1/referrals?since="+url.QueryEscape(resume), tokWalks, nil)
	var later struct {
		Referrals []mapping.Record `json:"referrals"`
		Resume    string           `json:"resume"`
	}
	if err := json.Unmarshal(catch.body, &later); err != nil || len(later.Referrals) != 1 || later.Referrals[0].Version != 5 || later.Referrals[0].Outcome == nil {
		t.Fatalf("catch-up: %d %s", catch.status, catch.body)
	}
	if end := h.do(http.MethodGet, "/community/v1/referrals?since="+url.QueryEscape(later.Resume), tokWalks, nil).json(t); len(end["referrals"].([]any)) != 0 || end["resume"] != later.Resume {
		t.Errorf("caught up: want no referrals and the same resume point, got %v", end)
	}
	// The same by time: everything updated after the completion's time is nothing.
	done := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil))
	after := h.do(http.MethodGet, "/community/v1/referrals?since="+url.QueryEscape(done.UpdatedAt.Format("2006-01-02T15:04:05.999999Z07:00")), tokWalks, nil).json(t)
	if len(after["referrals"].([]any)) != 0 {
		t.Errorf("since the last update's time: want none, got %v", after["referrals"])
	}
	before := h.do(http.MethodGet, "/community/v1/referrals?status=completed,failed&since="+url.QueryEscape(done.CreatedAt.Format("2006-01-02T15:04:05.999999Z07:00")), tokWalks, nil).json(t)
	if len(before["referrals"].([]any)) != 1 {
		t.Errorf("since creation, completed: want 1, got %v", before["referrals"])
	}
}

func TestCommunityDeclineNeedsReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokPCN, "museum-volunteering-bundle.json") // A81002 → museum-volunteers (pull-only)

	for _, body := range []string{`{"status": "rejected"}`, `{"status": "rejected", "reason": "   "}`} {
		r := setStatus(h, tokMuseum, ref.referral, body)
		if code, field, _ := apiErr(t, r); r.status != http.StatusUnprocessableEntity || code != "reason_required" || field != "reason" {
			t.Errorf("%s: want 422 naming reason, got %d %s", body, r.status, r.body)
		}
	}
	if v := h.version(ref.referral); v != 1 {
		t.Fatalf("a refused decline changed the version to %d", v)
	}
	r := setStatus(h, tokMuseum, ref.referral, `{"status": "rejected", "reason": "No volunteering places until spring"}`)
	if r.status != http.StatusOK {
		t.Fatalf("decline: %d %s", r.status, r.body)
	}
	if rec := record(t, r); rec.Status != mapping.StatusRejected || rec.StatusReason != "No volunteering places until spring" || rec.Version != 2 {
		t.Errorf("declined record: %+v", rec)
	}
	tk := h.task(tokPCN, ref.task)
	if reason, _ := tk["statusReason"].(map[string]any); tk["status"] != "rejected" || reason["text"] != "No volunteering places until spring" {
		t.Errorf("declined Task: %v", tk)
	}
	// Declining again (even without the reason) is the same action: harmless.
	if r := setStatus(h, tokMuseum, ref.referral, `{"status": "rejected"}`); r.status != http.StatusOK || record(t, r).Version != 2 {
		t.Errorf("repeat decline: %d %s", r.status, r.body)
	}
	// Completing a declined referral is refused, naming the state; nothing changes.
	r = setStatus(h, tokMuseum, ref.referral, `{"status": "completed", "outcome": "done"}`)
	if code, _, msg := apiErr(t, r); r.status != http.StatusConflict || code != "illegal_transition" || !strings.Contains(msg, "rejected is final") {
		t.Errorf("completing a declined referral: %d %s", r.status, r.body)
	}
	if v := h.version(ref.referral); v != 2 {
		t.Errorf("a refused move changed the version to %d", v)
	}
	// Hold and failure also need a reason.
	other := refer(h, tokPCN, "befriending-bundle-urgent.json") // → befriending
	for _, st := range []string{"accepted", "in-progress"} {
		if r := setStatus(h, "demo-befriending-token", other.referral, `{"status": "`+st+`"}`); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", st, r.status, r.body)
		}
	}
	for _, st := range []string{"on-hold", "failed"} {
		r := setStatus(h, "demo-befriending-token", other.referral, `{"status": "`+st+`"}`)
		if _, field, _ := apiErr(t, r); r.status != http.StatusUnprocessableEntity || field != "reason" {
			t.Errorf("%s without reason: %d %s", st, r.status, r.body)
		}
	}
	r = setStatus(h, "demo-befriending-token", other.referral, `{"status": "failed", "reason": "Could not reach the person", "outcome": "Three calls unanswered"}`)
	if rec := record(t, r); r.status != http.StatusOK || rec.Status != mapping.StatusFailed || rec.Outcome == nil || rec.Outcome.Text != "Three calls unanswered" {
		t.Errorf("failed with reason and outcome: %d %s", r.status, r.body)
	}
}

func TestCommunityAccessIsScoped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	walks := refer(h, tokGP, "walking-group-performer.json")
	museum := refer(h, tokPCN, "museum-volunteering-bundle.json")

	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"GP client", tokGP, http.StatusForbidden},
		{"admin client", tokAdmin, http.StatusForbidden},
	} {
		for _, path := range []string{"/community/v1/referrals", "/community/v1/referrals/" + walks.referral} {
			r := h.do(http.MethodGet, path, tc.token, nil)
			if _, _, _ = apiErr(t, r); r.status != tc.want {
				t.Errorf("%s GET %s: want %d, got %d", tc.name, path, tc.want, r.status)
			}
		}
		if r := setStatus(h, tc.token, walks.referral, `{"status": "received"}`); r.status != tc.want {
			t.Errorf("%s status: want %d, got %d", tc.name, tc.want, r.status)
		}
	}
	// Another service's referral does not exist for this client: 404, never 403.
	for _, r := range []response{
		h.do(http.MethodGet, "/community/v1/referrals/"+museum.referral, tokWalks, nil),
		setStatus(h, tokWalks, museum.referral, `{"status": "received"}`),
		h.do(http.MethodGet, "/community/v1/referrals/no-such-referral", tokWalks, nil),
		h.do(http.MethodGet, "/community/v1/referrals/"+walks.task, tokWalks, nil), // a Task id is not a referral id
	} {
		if code, _, _ := apiErr(t, r); r.status != http.StatusNotFound || code != "not_found" {
			t.Errorf("want 404 not_found, got %d %s", r.status, r.body)
		}
	}
	if v := h.version(museum.referral); v != 1 {
		t.Errorf("another service's request changed the referral (version %d)", v)
	}
	b := h.do(http.MethodGet, "/community/v1/referrals", tokWalks, nil).json(t)
	if refs := b["referrals"].([]any); len(refs) != 1 || refs[0].(map[string]any)["id"] != walks.referral {
		t.Errorf("inbox shows another service's referrals: %v", refs)
	}
	if r := h.do(http.MethodPut, "/community/v1/referrals/"+walks.referral, tokWalks, nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") == "" {
		t.Errorf("PUT record: want 405 with Allow, got %d", r.status)
	}
}

func TestCommunityInboxPaging(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	a := refer(h, tokGP, "walking-group-performer.json")
	b := refer(h, tokGP, "walking-group-literal-subject.json") // also frome-walks
	first := h.do(http.MethodGet, "/community/v1/referrals?limit=1", tokWalks, nil).json(t)
	refs := first["referrals"].([]any)
	next, _ := first["next"].(string)
	if len(refs) != 1 || refs[0].(map[string]any)["id"] != a.referral || next == "" {
		t.Fatalf("page 1: %v", first)
	}
	second := h.do(http.MethodGet, "/community/v1/referrals?limit=1&since="+url.QueryEscape(next), tokWalks, nil).json(t)
	refs = second["referrals"].([]any)
	if len(refs) != 1 || refs[0].(map[string]any)["id"] != b.referral || second["next"] != nil {
		t.Fatalf("page 2: %v", second)
	}
	// A change moves a referral to the end of the order: a poller from the last resume point sees it again.
	if r := setStatus(h, tokWalks, a.referral, `{"status": "received"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	third := h.do(http.MethodGet, "/community/v1/referrals?since="+url.QueryEscape(second["resume"].(string)), tokWalks, nil).json(t)
	if refs := third["referrals"].([]any); len(refs) != 1 || refs[0].(map[string]any)["id"] != a.referral {
		t.Fatalf("after a change: %v", third)
	}
	byStatus := h.do(http.MethodGet, "/community/v1/referrals?status=requested", tokWalks, nil).json(t)
	if refs := byStatus["referrals"].([]any); len(refs) != 1 || refs[0].(map[string]any)["id"] != b.referral {
		t.Errorf("status=requested: %v", byStatus)
	}
}

func TestCommunityRequestsAreValidated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json")

	for _, tc := range []struct {
		query, field string
	}{
		{"status=bogus", "status"},
		{"status=received,", "status"},
		{"limit=0", "limit"},
		{"limit=201", "limit"},
		{"limit=ten", "limit"},
		{"since=yesterday", "since"},
		{"page=2", "page"},
		{"limit=1&limit=2", "limit"},
	} {
		r := h.do(http.MethodGet, "/community/v1/referrals?"+tc.query, tokWalks, nil)
		if _, field, _ := apiErr(t, r); r.status != http.StatusBadRequest || field != tc.field {
			t.Errorf("?%s: want 400 naming %s, got %d %s", tc.query, tc.field, r.status, r.body)
		}
	}
	if r := h.do(http.MethodGet, "/community/v1/referrals?limit=200&status=requested,received", tokWalks, nil); r.status != http.StatusOK {
		t.Errorf("valid query: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		field      string
	}{
		{"unknown fields", `{"status": "received", "colour": "x", "by": "y"}`, 400, "unknown_field", "by,colour"},
		{"blank note", `{"status": "received", "note": "  "}`, 400, "invalid_value", "note"},
		{"note not a string", `{"status": "received", "note": ["x"]}`, 400, "invalid_type", "note"},
		{"note too long", `{"status": "received", "note": "` + strings.Repeat("a", mapping.MaxNoteRunes+1) + `"}`, 400, "too_long", "note"},
		{"unknown nested field", `{"status": "completed", "outcome_code": {"code": "x", "version": "1"}}`, 400, "unknown_field", "outcome_code.version"},
		{"missing status", `{"reason": "x"}`, 400, "required", "status"},
		{"unknown status", `{"status": "done"}`, 400, "invalid_status", "status"},
		{"requester's status", `{"status": "cancelled", "reason": "x"}`, 400, "invalid_status", "status"},
		{"status not a string", `{"status": 3}`, 400, "invalid_type", "status"},
		{"outcome_code not an object", `{"status": "completed", "outcome_code": "engaged"}`, 400, "invalid_type", "outcome_code"},
		{"outcome_code without code", `{"status": "completed", "outcome_code": {"system": "https://x.example/cs"}}`, 400, "required", "outcome_code.code"},
		{"outcome_code bad system", `{"status": "completed", "outcome_code": {"system": "not a uri", "code": "x"}}`, 400, "invalid_value", "outcome_code.system"},
		{"not JSON", `{"status": `, 400, "invalid_json", ""},
		{"duplicate key", `{"status": "received", "status": "accepted"}`, 400, "invalid_json", ""},
		{"an array", `[]`, 400, "invalid_json", ""},
		{"trailing data", `{"status": "received"} {}`, 400, "invalid_json", ""},
		{"reason too long", `{"status": "received", "reason": "` + strings.Repeat("a", 1001) + `"}`, 400, "too_long", "reason"},
		{"outcome with accepted", `{"status": "received", "outcome": "x"}`, 422, "invalid_outcome", "outcome"},
	} {
		r := setStatus(h, tokWalks, ref.referral, tc.body)
		code, field, _ := apiErr(t, r)
		if r.status != tc.status || code != tc.code || field != tc.field {
			t.Errorf("%s: want %d %s %q, got %d %s", tc.name, tc.status, tc.code, tc.field, r.status, r.body)
		}
	}
	r := h.do(http.MethodPost, "/community/v1/referrals/"+ref.referral+"/status", tokWalks, []byte(`{"status": "received"}`), "Content-Type: text/plain")
	if code, _, _ := apiErr(t, r); r.status != http.StatusUnsupportedMediaType || code != "unsupported_media_type" {
		t.Errorf("text/plain: %d %s", r.status, r.body)
	}
	big := `{"status": "received", "reason": "` + strings.Repeat("a", 2<<20) + `"}`
	if r := setStatus(h, tokWalks, ref.referral, big); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: want 413, got %d", r.status)
	}
	// If-Match (optional here): a stale version is a 409 version_conflict (the JSON API's status table).
	if r := setStatus(h, tokWalks, ref.referral, `{"status": "received"}`, `If-Match: "7"`); r.status != http.StatusConflict {
		t.Errorf("stale If-Match: want 409, got %d %s", r.status, r.body)
	} else if code, _, _ := apiErr(t, r); code != "version_conflict" {
		t.Errorf("stale If-Match: code %s", code)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status": "received"}`, `If-Match: soon`); r.status != http.StatusBadRequest {
		t.Errorf("malformed If-Match: want 400, got %d", r.status)
	}
	if v := h.version(ref.referral); v != 1 {
		t.Fatalf("refused requests changed the version to %d", v)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status": "received"}`, `If-Match: "1"`); r.status != http.StatusOK || record(t, r).Version != 2 {
		t.Errorf("current If-Match: %d %s", r.status, r.body)
	}
}

// TestREADMECommunityAPIExample runs the status changes of README.md's community API example, in the order
// written, on a Frome Walking for Health referral: each is a legal move (200), and they end completed.
func TestREADMECommunityAPIExample(t *testing.T) {
	t.Parallel()
	readme := string(readFile(t, "../README.md"))
	start := strings.Index(readme, "\n## Community API")
	if start < 0 {
		t.Fatal("README.md has no Community API section")
	}
	block := readme[start:]
	block = block[strings.Index(block, "```sh"):]
	block = block[:strings.Index(block[5:], "```")+5]
	var bodies []string
	for _, m := range regexp.MustCompile(`-d '(\{[^']*\})'`).FindAllStringSubmatch(block, -1) {
		bodies = append(bodies, m[1])
	}
	if len(bodies) < 2 {
		t.Fatalf("found %d status changes in the README's example:\n%s", len(bodies), block)
	}
	h := newHarness(t, nil)
	ref := refer(h, "", "walking-group-performer.json")
	for i, b := range bodies {
		r := setStatus(h, tokWalks, ref.referral, b)
		if r.status != http.StatusOK {
			t.Fatalf("README example step %d %s: %d %s", i+1, b, r.status, r.body)
		}
	}
	if rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil)); rec.Status != mapping.StatusCompleted {
		t.Errorf("after the README's example the referral is %s, want completed", rec.Status)
	}
}

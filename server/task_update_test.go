package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

const patchCT = "Content-Type: application/json-patch+json"

// putTask sends a Task (a decoded map, changed by the caller) with If-Match W/"version".
func putTask(h *harness, token string, tk map[string]any, ifMatch string) response {
	h.t.Helper()
	b, err := json.Marshal(tk)
	if err != nil {
		h.t.Fatal(err)
	}
	var hs []string
	if ifMatch != "" {
		hs = append(hs, "If-Match: "+ifMatch)
	}
	return h.do(http.MethodPut, "/fhir/Task/"+tk["id"].(string), token, b, hs...)
}

func patchTask(h *harness, token, id, patch, ifMatch string) response {
	h.t.Helper()
	hs := []string{patchCT}
	if ifMatch != "" {
		hs = append(hs, "If-Match: "+ifMatch)
	}
	return h.do(http.MethodPatch, "/fhir/Task/"+id, token, []byte(patch), hs...)
}

// wantOutcome checks a status and that the OperationOutcome names expr.
func wantOutcome(t *testing.T, name string, r response, status int, expr string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: want %d, got %d %s", name, status, r.status, r.body)
		return
	}
	if is := issues(t, r); expr != "" && !hasExpression(is, expr) {
		t.Errorf("%s: the OperationOutcome does not name %s: %s", name, expr, r.body)
	}
}

func TestTaskPutByCommunityPlatform(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // → frome-walks

	tk := h.task(tokWalks, ref.task)
	// The Task sent back as it is: 200, no new version (even though requested is nobody's status to set).
	if r := putTask(h, tokWalks, tk, `W/"1"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "1" {
		t.Errorf("unchanged PUT: %d %s", r.status, r.body)
	}
	tk["status"] = "received"
	wantOutcome(t, "no If-Match", putTask(h, tokWalks, tk, ""), http.StatusPreconditionRequired, "If-Match")
	wantOutcome(t, "malformed If-Match", putTask(h, tokWalks, tk, `W/"one"`), http.StatusBadRequest, "If-Match")
	wantOutcome(t, "stale If-Match", putTask(h, tokWalks, tk, `W/"7"`), http.StatusPreconditionFailed, "")
	wantOutcome(t, "another service", putTask(h, tokMuseum, tk, `W/"1"`), http.StatusNotFound, "")
	wantOutcome(t, "another practice", putTask(h, tokGP2, tk, `W/"1"`), http.StatusNotFound, "")
	wantOutcome(t, "admin", putTask(h, tokAdmin, tk, `W/"1"`), http.StatusForbidden, "")
	if v := h.version(ref.referral); v != 1 {
		t.Fatalf("refused updates changed the version to %d", v)
	}

	r := putTask(h, tokWalks, tk, `W/"1"`)
	if r.status != http.StatusOK || r.header.Get("ETag") != `W/"2"` || r.header.Get("Last-Modified") == "" {
		t.Fatalf("PUT received: %d ETag %q %s", r.status, r.header.Get("ETag"), r.body)
	}
	got := r.json(t)
	if got["status"] != "received" || meta(got, "versionId") != "2" {
		t.Fatalf("PUT received returned %v", got)
	}
	// The same Task again with the current version: nothing to change, no new version.
	if r := putTask(h, tokWalks, got, `W/"2"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "2" {
		t.Errorf("identical PUT: %d %s", r.status, r.body)
	}

	// Anything but status, statusReason, output and note is socialrx's or the GP's: 422 naming every element.
	changed := h.task(tokWalks, ref.task)
	changed["status"] = "accepted"
	changed["priority"] = "urgent"
	changed["owner"] = map[string]any{"reference": "Organization/someone-else"}
	changed["description"] = "new"
	r = putTask(h, tokWalks, changed, `W/"2"`)
	wantOutcome(t, "forbidden elements", r, http.StatusUnprocessableEntity, "Task.priority")
	for _, e := range []string{"Task.owner", "Task.description"} {
		if !hasExpression(issues(t, r), e) {
			t.Errorf("forbidden elements: %s not named: %s", e, r.body)
		}
	}
	for name, edit := range map[string]func(m map[string]any){
		"businessStatus": func(m map[string]any) {
			m["businessStatus"] = map[string]any{"text": "delivered"}
		},
		"note": func(m map[string]any) {
			m["note"] = []any{map[string]any{"text": strings.Repeat("a", mapping.MaxNoteRunes+1)}}
		},
		"statusReason": func(m map[string]any) { // a reason without a status change
			m["statusReason"] = map[string]any{"text": "why not"}
		},
		"status": func(m map[string]any) { m["status"] = "ready" }, // a Task status the state machine does not use
	} {
		m := h.task(tokWalks, ref.task)
		edit(m)
		wantOutcome(t, name, putTask(h, tokWalks, m, `W/"2"`), http.StatusUnprocessableEntity, "Task."+name)
	}
	// Leaving out businessStatus is not a change (transport facts are socialrx's).
	m := h.task(tokWalks, ref.task)
	delete(m, "businessStatus")
	m["status"] = "accepted"
	if r := putTask(h, tokWalks, m, `W/"2"`); r.status != http.StatusOK || r.json(t)["status"] != "accepted" {
		t.Fatalf("PUT accepted without businessStatus: %d %s", r.status, r.body)
	}

	// Structure and identity.
	m = h.task(tokWalks, ref.task)
	m["id"] = "another-id"
	wantOutcome(t, "id differs from the URL", h.do(http.MethodPut, "/fhir/Task/"+ref.task, tokWalks, mustMarshal(t, m), `If-Match: W/"3"`), http.StatusBadRequest, "Task.id")
	m = h.task(tokWalks, ref.task)
	m["colour"] = "blue"
	wantOutcome(t, "unknown element", putTask(h, tokWalks, m, `W/"3"`), http.StatusBadRequest, "Task.colour")
	wantOutcome(t, "a ServiceRequest body", h.do(http.MethodPut, "/fhir/Task/"+ref.task, tokWalks, []byte(`{"resourceType": "ServiceRequest", "id": "x"}`), `If-Match: W/"3"`), http.StatusBadRequest, "")
	wantOutcome(t, "XML", h.do(http.MethodPut, "/fhir/Task/"+ref.task, tokWalks, []byte(`<Task/>`), `If-Match: W/"3"`, "Content-Type: application/fhir+xml"), http.StatusUnsupportedMediaType, "")

	// The requester's moves are not the community's: 409 naming the allowed moves; nothing changes.
	m = h.task(tokWalks, ref.task)
	m["status"] = "cancelled"
	m["statusReason"] = map[string]any{"text": "no"}
	r = putTask(h, tokWalks, m, `W/"3"`)
	wantOutcome(t, "community cancels", r, http.StatusConflict, "Task.status")
	if !strings.Contains(string(r.body), "in-progress") {
		t.Errorf("409 does not name the allowed move: %s", r.body)
	}
	if v := h.version(ref.referral); v != 3 {
		t.Fatalf("refused updates changed the version to %d", v)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTaskPatchWalk(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json")

	for _, tc := range []struct {
		name, patch string
		status      int
		expr        string
	}{
		{"another element", `[{"op": "replace", "path": "/priority", "value": "urgent"}]`, 422, "Task.priority"},
		{"the whole Task", `[{"op": "replace", "path": "", "value": {}}]`, 422, ""},
		{"failed test", `[{"op": "test", "path": "/status", "value": "accepted"}, {"op": "replace", "path": "/status", "value": "received"}]`, 409, "Task.status"},
		{"move", `[{"op": "move", "from": "/status", "path": "/note"}]`, 422, ""},
		{"unknown op", `[{"op": "merge", "path": "/status", "value": "received"}]`, 400, ""},
		{"no value", `[{"op": "replace", "path": "/status"}]`, 400, ""},
		{"unknown member", `[{"op": "replace", "path": "/status", "value": "received", "why": "x"}]`, 400, ""},
		{"not an array", `{"op": "replace", "path": "/status", "value": "received"}`, 400, ""},
		{"empty", `[]`, 400, ""},
		{"nothing to replace", `[{"op": "replace", "path": "/statusReason/text", "value": "x"}]`, 422, "Task.statusReason"},
		{"bad index", `[{"op": "add", "path": "/output/7", "value": {}}]`, 422, "Task.output"},
		{"status invalid", `[{"op": "replace", "path": "/status", "value": 7}]`, 400, ""},
	} {
		wantOutcome(t, tc.name, patchTask(h, tokWalks, ref.task, tc.patch, `W/"1"`), tc.status, tc.expr)
	}
	r := h.do(http.MethodPatch, "/fhir/Task/"+ref.task, tokWalks, []byte(`[{"op": "replace", "path": "/status", "value": "received"}]`), `If-Match: W/"1"`)
	wantOutcome(t, "FHIR JSON is not a patch", r, http.StatusUnsupportedMediaType, "")
	wantOutcome(t, "PATCH without If-Match", patchTask(h, tokWalks, ref.task, `[{"op": "replace", "path": "/status", "value": "received"}]`, ""), http.StatusPreconditionRequired, "If-Match")
	if v := h.version(ref.referral); v != 1 {
		t.Fatalf("refused patches changed the version to %d", v)
	}

	steps := []struct{ patch, status string }{
		{`[{"op": "test", "path": "/status", "value": "requested"}, {"op": "replace", "path": "/status", "value": "received"}]`, "received"},
		{`[{"op": "replace", "path": "/status", "value": "accepted"}]`, "accepted"},
		{`[{"op": "replace", "path": "/status", "value": "in-progress"}]`, "in-progress"},
		{`[{"op": "replace", "path": "/status", "value": "on-hold"}, {"op": "add", "path": "/statusReason", "value": {"text": "Waiting for the spring programme"}}]`, "on-hold"},
		{`[{"op": "replace", "path": "/status", "value": "in-progress"}]`, "in-progress"},
		{`[{"op": "replace", "path": "/status", "value": "completed"}, {"op": "add", "path": "/output", "value": [{"type": {"text": "outcome"}, "valueString": "Walks weekly"}]}]`, "completed"},
	}
	for i, st := range steps {
		v := i + 1
		r := patchTask(h, tokWalks, ref.task, st.patch, `W/"`+itoa(v)+`"`)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", st.status, r.status, r.body)
		}
		tk := r.json(t)
		if tk["status"] != st.status || meta(tk, "versionId") != itoa(v+1) || r.header.Get("ETag") != `W/"`+itoa(v+1)+`"` {
			t.Fatalf("%s: %v", st.status, tk)
		}
		reason, _ := tk["statusReason"].(map[string]any)
		switch st.status {
		case "on-hold":
			if reason["text"] != "Waiting for the spring programme" {
				t.Errorf("on-hold reason: %v", tk["statusReason"])
			}
		default: // a reason is never carried into the next status
			if reason != nil {
				t.Errorf("%s carries statusReason %v", st.status, reason)
			}
		}
	}
	rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil))
	if rec.Status != mapping.StatusCompleted || rec.Outcome == nil || rec.Outcome.Text != "Walks weekly" {
		t.Errorf("community record after the FHIR walk: %+v", rec)
	}
	// Completed is final, for the GP too.
	wantOutcome(t, "GP cancels a completed referral",
		patchTask(h, tokGP, ref.task, `[{"op": "replace", "path": "/status", "value": "cancelled"}, {"op": "add", "path": "/statusReason", "value": {"text": "x"}}]`, `W/"7"`),
		http.StatusConflict, "Task.status")
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestTaskCancelledByGP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // → frome-walks, webhook
	if r := setStatus(h, tokWalks, ref.referral, `{"status": "accepted"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	// A GP sending the Task back unchanged is harmless.
	m := h.task(tokGP, ref.task)
	if r := putTask(h, tokGP, m, `W/"2"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "2" {
		t.Errorf("GP unchanged PUT: %d %s", r.status, r.body)
	}
	// A GP may not make the community's moves, and must give a reason to cancel.
	m["status"] = "in-progress"
	wantOutcome(t, "GP starts", putTask(h, tokGP, m, `W/"2"`), http.StatusConflict, "Task.status")
	m["status"] = "cancelled"
	wantOutcome(t, "GP cancels without reason", putTask(h, tokGP, m, `W/"2"`), http.StatusUnprocessableEntity, "Task.statusReason")
	if v := h.version(ref.referral); v != 2 {
		t.Fatalf("refused updates changed the version to %d", v)
	}
	m["statusReason"] = map[string]any{"text": "Patient moved out of the area"}
	r := putTask(h, tokGP, m, `W/"2"`)
	if r.status != http.StatusOK {
		t.Fatalf("GP cancels: %d %s", r.status, r.body)
	}
	tk := r.json(t)
	if tk["status"] != "cancelled" || tk["statusReason"].(map[string]any)["text"] != "Patient moved out of the area" || meta(tk, "versionId") != "3" {
		t.Errorf("cancelled Task: %v", tk)
	}
	rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil))
	if rec.Status != mapping.StatusCancelled || rec.StatusReason != "Patient moved out of the area" {
		t.Errorf("community sees %s (%q)", rec.Status, rec.StatusReason)
	}
	msgs := h.messages(ref.referral, mapping.EventReferralCancelled)
	if len(msgs) != 1 || msgs[0].Destination != (mapping.Destination{Kind: mapping.DestinationService, ID: "frome-walks"}) {
		t.Fatalf("want one referral.cancelled to frome-walks, got %+v", msgs)
	}
	var ev struct {
		Type string         `json:"type"`
		Data mapping.Record `json:"data"`
	}
	if err := json.Unmarshal(msgs[0].Payload, &ev); err != nil || ev.Data.Status != mapping.StatusCancelled || ev.Data.Version != 3 {
		t.Errorf("referral.cancelled payload: %s", msgs[0].Payload)
	}
	sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil).json(t)
	if sr["status"] != "revoked" || meta(sr, "versionId") != "2" {
		t.Errorf("the ServiceRequest of a cancelled referral: status %v version %s", sr["status"], meta(sr, "versionId"))
	}
	// Cancelling again is harmless; the community can do nothing any more.
	if r := putTask(h, tokGP, tk, `W/"3"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "3" {
		t.Errorf("repeat cancel: %d %s", r.status, r.body)
	}
	r = setStatus(h, tokWalks, ref.referral, `{"status": "in-progress"}`)
	if code, _, msg := apiErr(t, r); r.status != http.StatusConflict || code != "illegal_transition" || !strings.Contains(msg, "cancelled is final") {
		t.Errorf("community after cancel: %d %s", r.status, r.body)
	}
	if n := len(h.messages(ref.referral, mapping.EventReferralCancelled)); n != 1 {
		t.Errorf("%d referral.cancelled messages after the repeats", n)
	}
}

// rawDo is a goroutine-safe request (no testing.T).
func rawDo(method, url, token, contentType, ifMatch string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("If-Match", ifMatch)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestTaskConcurrentUpdatesAreSerialised(t *testing.T) {
	t.Parallel()
	v := fhirtest.NewValidator(t)
	h := newHarness(t, v)
	ref := refer(h, tokGP, "walking-group-performer.json")
	tk := h.task(tokWalks, ref.task)

	// Eight clients read version 1 and move the Task at once, by PUT and by PATCH, to different statuses.
	const n = 8
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			to := []string{"received", "accepted"}[i%2]
			if i%4 < 2 {
				m := map[string]any{}
				for k, v := range tk {
					m[k] = v
				}
				m["status"] = to
				b, _ := json.Marshal(m)
				results[i].status, results[i].body, results[i].err = rawDo(http.MethodPut, h.url+"/fhir/Task/"+ref.task, tokWalks, fhirJSON, `W/"1"`, b)
				return
			}
			results[i].status, results[i].body, results[i].err = rawDo(http.MethodPatch, h.url+"/fhir/Task/"+ref.task, tokWalks,
				"application/json-patch+json", `W/"1"`, []byte(`[{"op": "replace", "path": "/status", "value": "`+to+`"}]`))
		})
	}
	wg.Wait()
	won := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if err := v.Validate(t, r.body); err != nil {
			t.Errorf("client %d: invalid FHIR: %v", i, err)
		}
		switch r.status {
		case http.StatusOK:
			won++
		case http.StatusPreconditionFailed:
		default:
			t.Errorf("client %d: want 200 or 412, got %d %s", i, r.status, r.body)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent updates with If-Match W/\"1\" succeeded, want exactly 1", won)
	}
	if v := h.version(ref.referral); v != 2 {
		t.Fatalf("version after the race: %d, want 2", v)
	}
}

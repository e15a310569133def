package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

// taskNotes reads Task.note of a decoded Task.
func taskNotes(t *testing.T, tk map[string]any) []map[string]any {
	t.Helper()
	raw, _ := tk["note"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, n := range raw {
		out = append(out, n.(map[string]any))
	}
	return out
}

// communityNotes reads task_notes of a community record.
func communityNotes(t *testing.T, r response) []mapping.TaskNote {
	t.Helper()
	var rec struct {
		TaskNotes []mapping.TaskNote `json:"task_notes"`
	}
	if err := json.Unmarshal(r.body, &rec); err != nil {
		t.Fatalf("record: %v %s", err, r.body)
	}
	return rec.TaskNotes
}

// TestTaskNotesOverHTTP: notes are added by PATCH (add /note/-, also the first), by PUT (with or without a
// status change) and by the community API; author and time are socialrx's; a note-only change is a new
// version that GP polling returns; an edit or removal is a 422 naming Task.note[i]; a same-status update
// without a new note is no change.
func TestTaskNotesOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // → frome-walks
	gp, _ := h.cfg.Authenticate(tokGP)
	v1 := h.task(tokGP, ref.task)
	since := meta(v1, "lastUpdated")

	// The first note, by JSON Patch: client-sent author and time are replaced by socialrx's.
	r := patchTask(h, tokWalks, ref.task, `[{"op": "add", "path": "/note/-", "value":
		{"text": "Left a voicemail", "authorString": "Mallory", "time": "2001-01-01T00:00:00Z"}}]`, `W/"1"`)
	if r.status != http.StatusOK || meta(r.json(t), "versionId") != "2" {
		t.Fatalf("PATCH add /note/-: %d %s", r.status, r.body)
	}
	tk := h.task(tokGP, ref.task)
	notes := taskNotes(t, tk)
	if len(notes) != 1 || notes[0]["text"] != "Left a voicemail" || notes[0]["authorString"] != "Frome Walking for Health" ||
		notes[0]["time"] == "2001-01-01T00:00:00Z" || notes[0]["time"] != meta(tk, "lastUpdated") || tk["status"] != "requested" {
		t.Fatalf("Task after the first note: %v", tk)
	}
	// GP polling returns the note-only change.
	if got := h.poll(tokGP, "A81001", since); len(got) != 1 || meta(got[0], "versionId") != "2" {
		t.Errorf("poll after a note: %v", got)
	}

	// The Task sent back as it is (same status, notes unchanged): no change, no new version.
	if r := putTask(h, tokGP, tk, `W/"2"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "2" {
		t.Errorf("unchanged PUT: %d %s", r.status, r.body)
	}
	// Edits and removals are refused, naming the note; nothing changes.
	edited := h.task(tokGP, ref.task)
	taskNotes(t, edited)[0]["text"] = "Spoke to them"
	wantOutcome(t, "edit a note", putTask(h, tokGP, edited, `W/"2"`), http.StatusUnprocessableEntity, "Task.note[0]")
	removed := h.task(tokGP, ref.task)
	delete(removed, "note")
	wantOutcome(t, "remove the notes", putTask(h, tokGP, removed, `W/"2"`), http.StatusUnprocessableEntity, "Task.note[0]")
	wantOutcome(t, "patch a note", patchTask(h, tokWalks, ref.task, `[{"op": "replace", "path": "/note/0/text", "value": "x"}]`, `W/"2"`),
		http.StatusUnprocessableEntity, "Task.note[0]")
	wantOutcome(t, "patch-remove a note", patchTask(h, tokWalks, ref.task, `[{"op": "remove", "path": "/note/0"}]`, `W/"2"`),
		http.StatusUnprocessableEntity, "Task.note[0]")
	if v := h.version(ref.referral); v != 2 {
		t.Fatalf("refused note changes moved the version to %d", v)
	}

	// The GP adds a note by PUT (same status): one new version, authored by the GP client.
	tk = h.task(tokGP, ref.task)
	tk["note"] = append(tk["note"].([]any), map[string]any{"text": "Prefers afternoons"})
	if r := putTask(h, tokGP, tk, `W/"2"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "3" {
		t.Fatalf("GP note: %d %s", r.status, r.body)
	}
	// The service acknowledges with a note in the same PUT.
	tk = h.task(tokWalks, ref.task)
	tk["status"] = "received"
	tk["note"] = append(tk["note"].([]any), map[string]any{"text": "Received, will call"})
	if r := putTask(h, tokWalks, tk, `W/"3"`); r.status != http.StatusOK || meta(r.json(t), "versionId") != "4" || r.json(t)["status"] != "received" {
		t.Fatalf("status and note: %d %s", r.status, r.body)
	}

	// The community API: a note rides along with a status change, or alone with the current status.
	r = setStatus(h, tokWalks, ref.referral, `{"status": "accepted", "note": "Welcome call booked"}`)
	if r.status != http.StatusOK || record(t, r).Version != 5 || len(communityNotes(t, r)) != 4 {
		t.Fatalf("community accept with note: %d %s", r.status, r.body)
	}
	r = setStatus(h, tokWalks, ref.referral, `{"status": "accepted", "note": "Called back"}`)
	if r.status != http.StatusOK || record(t, r).Version != 6 || record(t, r).Status != mapping.StatusAccepted {
		t.Fatalf("community note only: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, ref.referral, `{"status": "accepted"}`); r.status != http.StatusOK || record(t, r).Version != 6 {
		t.Errorf("community repeat without note: %d %s", r.status, r.body)
	}
	got := communityNotes(t, h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil))
	wantAuthors := []string{"Frome Walking for Health", gp.ID, "Frome Walking for Health", "Frome Walking for Health", "Frome Walking for Health"}
	wantTexts := []string{"Left a voicemail", "Prefers afternoons", "Received, will call", "Welcome call booked", "Called back"}
	if len(got) != len(wantTexts) {
		t.Fatalf("community record notes: %+v", got)
	}
	for i, n := range got {
		if n.Author != wantAuthors[i] || n.Text != wantTexts[i] || n.Time.IsZero() {
			t.Errorf("note %d: %+v", i, n)
		}
	}
	tk = h.task(tokGP, ref.task)
	if notes := taskNotes(t, tk); len(notes) != 5 || notes[4]["text"] != "Called back" || meta(tk, "versionId") != "6" {
		t.Errorf("Task notes: %v", tk["note"])
	}
	inbox := h.do(http.MethodGet, "/community/v1/referrals", tokWalks, nil)
	if !strings.Contains(string(inbox.body), `"task_notes"`) {
		t.Errorf("inbox without task_notes: %s", inbox.body)
	}
}

// TestConcurrentNotesSerialised: two platforms add a note to the same version at once; If-Match lets exactly
// one win (200, one new version), the other gets 412 and its note is not kept.
func TestConcurrentNotesSerialised(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json")
	const n = 6
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			patch := `[{"op": "add", "path": "/note/-", "value": {"text": "note ` + itoa(i) + `"}}]`
			results[i].status, results[i].body, results[i].err = rawDo(http.MethodPatch, h.url+"/fhir/Task/"+ref.task, tokWalks,
				"application/json-patch+json", `W/"1"`, []byte(patch))
		}()
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("request %d: %v", i, r.err)
		case r.status == http.StatusOK:
			ok++
		case r.status != http.StatusPreconditionFailed:
			t.Errorf("request %d: %d %s", i, r.status, r.body)
		}
	}
	tk := h.task(tokGP, ref.task)
	if ok != 1 || meta(tk, "versionId") != "2" || len(taskNotes(t, tk)) != 1 {
		t.Errorf("%d successes; Task version %s notes %v", ok, meta(tk, "versionId"), tk["note"])
	}
}

// TestCancelBeforeDelivery: the GP cancels a referral whose referral.created the dispatcher has not sent
// yet: the message is withdrawn (cancelled), no referral.cancelled is queued, the Task shows no transport
// fact, the admin API shows the withdrawal and refuses to replay it.
func TestCancelBeforeDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokGP, "walking-group-performer.json") // → frome-walks (webhook), nothing dispatched
	sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil).json(t)
	sr["status"] = "revoked"
	if r := h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, mustMarshal(t, sr)); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	created := h.messages(ref.referral, mapping.EventReferralCreated)
	if len(created) != 1 || created[0].State != "cancelled" || !strings.HasPrefix(created[0].LastError, "withdrawn") {
		t.Fatalf("referral.created after the cancel: %+v", created)
	}
	if n := len(h.messages(ref.referral, mapping.EventReferralCancelled)); n != 0 {
		t.Errorf("%d referral.cancelled queued for a referral never delivered", n)
	}
	tk := h.task(tokGP, ref.task)
	if tk["status"] != "cancelled" || tk["businessStatus"] != nil || meta(tk, "versionId") != "2" {
		t.Errorf("Task after withdrawal: %v", tk)
	}

	list := h.do(http.MethodGet, "/admin/v1/messages?state=cancelled", tokAdmin, nil)
	if list.status != http.StatusOK || !strings.Contains(string(list.body), created[0].ID) {
		t.Errorf("admin list state=cancelled: %d %s", list.status, list.body)
	}
	tl := h.do(http.MethodGet, "/admin/v1/referrals/"+ref.referral+"/timeline", tokAdmin, nil)
	var timeline struct {
		Versions []struct {
			Version   int      `json:"version"`
			Withdrawn []string `json:"withdrawn"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(tl.body, &timeline); err != nil || len(timeline.Versions) != 2 ||
		len(timeline.Versions[1].Withdrawn) != 1 || timeline.Versions[1].Withdrawn[0] != created[0].ID {
		t.Errorf("timeline: %v %s", err, tl.body)
	}
	rp := h.do(http.MethodPost, "/admin/v1/messages/"+created[0].ID+"/replay", tokAdmin, []byte(`{"reason": "try again"}`), jsonCT)
	if code, _, msg := apiErr(t, rp); rp.status != http.StatusBadRequest || !strings.Contains(msg, "withdrawn before delivery") {
		t.Errorf("replay of a withdrawn message: %d %s %s", rp.status, code, rp.body)
	}
	metrics := h.do(http.MethodGet, "/metrics", "", nil)
	if !strings.Contains(string(metrics.body), `socialrx_outbox_messages{state="cancelled"} 1`) {
		t.Errorf("metrics: no cancelled gauge at 1")
	}
}

// TestCancelAfterDeliveryRealDispatcher: with a real dispatcher and receiver, a referral delivered (or being
// delivered) when the GP cancels it reaches the service as referral.created, then referral.cancelled.
func TestCancelAfterDeliveryRealDispatcher(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			if c.Directory.Services[i].ID == "frome-walks" {
				c.Directory.Services[i].Delivery.URL = rc.url + "/hooks/referrals"
			}
		}
	})
	startDispatcher(t, h)
	ref := refer(h, tokGP, "walking-group-performer.json")
	first := waitFor(t, rc.got, "referral.created")
	sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil).json(t)
	sr["status"] = "revoked"
	if r := h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokGP, mustMarshal(t, sr)); r.status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	second := waitFor(t, rc.got, "referral.cancelled")
	var types []string
	for _, d := range []delivery{first, second} {
		var ev struct {
			Type string         `json:"type"`
			Data mapping.Record `json:"data"`
		}
		if err := json.Unmarshal(d.body, &ev); err != nil || ev.Data.ID != ref.referral {
			t.Fatalf("webhook body: %v %s", err, d.body)
		}
		types = append(types, ev.Type)
	}
	if types[0] != "referral.created" || types[1] != "referral.cancelled" {
		t.Errorf("the service received %v, want referral.created then referral.cancelled", types)
	}
	if first.header.Get("webhook-id") == second.header.Get("webhook-id") {
		t.Errorf("both deliveries carry webhook-id %s", first.header.Get("webhook-id"))
	}
	select {
	case d := <-rc.got:
		t.Errorf("unexpected extra delivery: %s", d.body)
	case <-time.After(50 * time.Millisecond):
	}
}

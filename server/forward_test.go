package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fhir/fhirtest"
)

const tokLunch = "demo-lunch-token" // community lunch-club

// TestForwardOverHTTP: the link worker forwards through the community API; a group sees its own child and
// not the other's; the GP finds both with Task?part-of (every Task checked by the independent R4 validator),
// each partOf the link worker's Task with the same focus, and the link worker's Task references them; a full
// group is a 409 naming it; another group may not forward.
func TestForwardOverHTTP(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	ref := refer(h, tokPCN, "link-worker-befriending-default.json")
	forward := func(token, id, body string) response {
		return h.do(http.MethodPost, "/community/v1/referrals/"+id+"/forward", token, []byte(body), jsonCT)
	}
	if r := h.do(http.MethodPut, "/community/v1/capacity", tokMuseum, []byte(`{"status": "full"}`), jsonCT); r.status != http.StatusOK {
		t.Fatalf("museum full: %d %s", r.status, r.body)
	}
	r := forward(tokLinkWorkers, ref.referral, `{"services": ["frome-walks", "museum-volunteers"]}`)
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), `"field":"services[1]"`) ||
		!strings.Contains(string(r.body), "Somerset Museums Volunteer Programme has no room") {
		t.Fatalf("a full group: %d %s", r.status, r.body)
	}
	if r := forward(tokLinkWorkers, ref.referral, `{"services": "frome-walks"}`); r.status != http.StatusBadRequest {
		t.Errorf("services not a list: %d %s", r.status, r.body)
	}
	if r := forward(tokLinkWorkers, ref.referral, `{"services": ["frome-walks"], "colour": "red"}`); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "colour") {
		t.Errorf("an unknown field: %d %s", r.status, r.body)
	}
	r = forward(tokLinkWorkers, ref.referral, `{"services": ["frome-walks", "lunch-club"], "note": "Fridays suit her best."}`)
	if r.status != http.StatusCreated {
		t.Fatalf("forward: %d %s", r.status, r.body)
	}
	ans := r.json(t)
	kids := ans["children"].([]any)
	if len(kids) != 2 {
		t.Fatalf("children %v", ans)
	}
	walksChild := kids[0].(map[string]any)["id"].(string)
	lunchChild := kids[1].(map[string]any)["id"].(string)
	if r := h.do(http.MethodGet, "/community/v1/referrals/"+walksChild, tokWalks, nil); r.status != http.StatusOK {
		t.Errorf("frome-walks reads its child: %d", r.status)
	}
	if r := h.do(http.MethodGet, "/community/v1/referrals/"+lunchChild, tokWalks, nil); r.status != http.StatusNotFound {
		t.Errorf("frome-walks reads the lunch club's child: %d", r.status)
	}
	if r := forward(tokWalks, walksChild, `{"services": ["lunch-club"]}`); r.status != http.StatusForbidden {
		t.Errorf("a group forwards: %d %s", r.status, r.body)
	}

	bundle := h.do(http.MethodGet, "/fhir/Task?part-of=Task/"+ref.task, tokPCN, nil).json(t)
	entries, _ := bundle["entry"].([]any)
	if len(entries) != 2 || bundle["total"] != float64(2) {
		t.Fatalf("part-of search: %v", bundle)
	}
	for _, e := range entries {
		task := e.(map[string]any)["resource"].(map[string]any)
		partOf := task["partOf"].([]any)[0].(map[string]any)["reference"]
		focus := task["focus"].(map[string]any)["reference"]
		if partOf != "Task/"+ref.task || focus != "ServiceRequest/"+ref.sr {
			t.Errorf("child Task partOf %v focus %v", partOf, focus)
		}
	}
	parent := h.do(http.MethodGet, "/fhir/Task/"+ref.task, tokPCN, nil)
	if !strings.Contains(string(parent.body), `"onward-referral"`) || strings.Count(string(parent.body), `"reference":"Task/`) != 2 {
		t.Errorf("the link worker's Task does not reference its children: %s", parent.body)
	}
	if r := h.do(http.MethodGet, "/fhir/Task?part-of=ServiceRequest/x/y", tokPCN, nil); r.status != http.StatusBadRequest {
		t.Errorf("a bad part-of: %d", r.status)
	}
	// The lunch club accepts: the walking group's child is cancelled, the GP sees why.
	if r := setStatus(h, tokLunch, lunchChild, `{"status": "accepted"}`); r.status != http.StatusOK {
		t.Fatalf("accept: %d %s", r.status, r.body)
	}
	w := h.do(http.MethodGet, "/community/v1/referrals/"+walksChild, tokWalks, nil).json(t)
	if w["status"] != "cancelled" || w["status_reason"] != "the person chose another group" {
		t.Errorf("the walking group's child: %v %v", w["status"], w["status_reason"])
	}
}

package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

// consentPatch is the JSON Patch a GP system sends to record that the person withdrew their consent.
const consentPatch = `[{"op": "replace", "path": "/status", "value": "cancelled"},
  {"op": "add", "path": "/statusReason", "value": {"coding": [{"system": "https://socialrx.dev/fhir/CodeSystem/cancel-reason",
    "code": "consent-withdrawn", "display": "Consent withdrawn"}], "text": "Consent withdrawn"}}]`

// TestConsentWithdrawnOverFHIR: the walking group received a referral (real dispatcher, loopback receiver);
// the GP records the withdrawal by cancelling the Task with the coded reason. The Task says so (status
// cancelled, the coded reason), the service receives referral.withdrawn (identifiers and the delete request,
// nothing about the person), and the community API and the inbox show a stub. Bad requests change nothing.
func TestConsentWithdrawnOverFHIR(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			if c.Directory.Services[i].ID == "frome-walks" {
				c.Directory.Services[i].Delivery.URL = rc.url + "/hooks/referrals"
			}
		}
	})
	attempts := startObservedDispatcher(t, h)
	ref := refer(h, tokGP, "walking-group-performer.json")
	waitFor(t, rc.got, "referral.created")
	waitFor(t, attempts, "the delivery recorded") // the Task's businessStatus delivered: a new version
	v := h.version(ref.referral)
	etag := `W/"` + itoa(v) + `"`

	// Refused: the coded reason with another status; the service itself; another practice.
	other := strings.Replace(consentPatch, `"value": "cancelled"`, `"value": "on-hold"`, 1)
	wantOutcome(t, "reason with on-hold", patchTask(h, tokGP, ref.task, other, etag), http.StatusUnprocessableEntity, "Task.statusReason")
	wantOutcome(t, "the service", patchTask(h, tokWalks, ref.task, consentPatch, etag), http.StatusForbidden, "")
	wantOutcome(t, "an admin", patchTask(h, tokAdmin, ref.task, consentPatch, etag), http.StatusForbidden, "")
	wantOutcome(t, "another practice", patchTask(h, tokGP2, ref.task, consentPatch, etag), http.StatusNotFound, "")
	if h.version(ref.referral) != v {
		t.Fatal("a refused withdrawal changed the referral")
	}

	r := patchTask(h, tokGP, ref.task, consentPatch, etag)
	if r.status != http.StatusOK {
		t.Fatalf("withdraw: %d %s", r.status, r.body)
	}
	task := r.json(t)
	reason, _ := json.Marshal(task["statusReason"])
	if task["status"] != "cancelled" || !strings.Contains(string(reason), "consent-withdrawn") {
		t.Errorf("Task after withdrawal: %v %s", task["status"], reason)
	}
	if _, ok := task["for"]; ok {
		t.Errorf("the Task still names the person: %v", task["for"])
	}
	h.v.AssertValid(t, r.body)
	// The GP reads it again; the ServiceRequest is revoked and holds no NHS number.
	sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokGP, nil)
	if sr.status != http.StatusOK || strings.Contains(string(sr.body), "9999542557") || !strings.Contains(string(sr.body), `"revoked"`) {
		t.Errorf("ServiceRequest after withdrawal: %d %s", sr.status, sr.body)
	}
	h.v.AssertValid(t, sr.body)

	d := waitFor(t, rc.got, "referral.withdrawn")
	var ev struct {
		Type   string                     `json:"type"`
		Action string                     `json:"action"`
		Data   map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(d.body, &ev); err != nil || ev.Type != string(mapping.EventReferralWithdrawn) ||
		ev.Action != mapping.ActionDeletePersonalData {
		t.Fatalf("webhook: %v %s", err, d.body)
	}
	for _, k := range []string{"patient", "referrer", "needs", "reasons", "notes", "consent"} {
		if _, ok := ev.Data[k]; ok {
			t.Errorf("referral.withdrawn carries %q: %s", k, d.body)
		}
	}

	one := h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, tokWalks, nil)
	rec := record(t, one)
	if !rec.ConsentWithdrawn || rec.Patient.Called() != "" || rec.Patient.Phone != "" || rec.Needs != "" ||
		rec.Status != mapping.StatusCancelled {
		t.Errorf("community API after withdrawal: %s", one.body)
	}
	b := newBrowser(h)
	b.signIn(tokWalks)
	pg := b.get("/inbox/referrals/" + ref.referral)
	contains(t, "inbox after withdrawal", pg, "The person withdrew their consent", "Referral "+ref.referral)
	for _, v := range []string{"Margaret", "07700 900123", "Ellis"} {
		if strings.Contains(string(pg.body), v) {
			t.Errorf("the inbox still shows %q", v)
		}
	}
	// Repeating it is a harmless 200 that changes nothing.
	vNow := h.version(ref.referral)
	if r := patchTask(h, tokGP, ref.task, `[{"op": "replace", "path": "/status", "value": "cancelled"}]`, `W/"`+itoa(vNow)+`"`); r.status != http.StatusOK || h.version(ref.referral) != vNow {
		t.Errorf("repeat: %d, version %d → %d", r.status, vNow, h.version(ref.referral))
	}
}

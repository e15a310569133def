package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
)

// withNeeds adds ServiceRequest.orderDetail support-need codings to a fixture's JSON text.
func withNeeds(codes ...string) func(string) string {
	return func(body string) string {
		var cds []string
		for _, c := range codes {
			cds = append(cds, `{"system": "`+mapping.SupportNeedSystem+`", "code": "`+c+`"}`)
		}
		return strings.Replace(body, `"orderDetail": [`, `"orderDetail": [{"coding": [`+strings.Join(cds, ", ")+`]}, `, 1)
	}
}

// routingHarness is the demo with frome-walks meeting wheelchair access only and the link workers meeting
// every need.
func routingHarness(t *testing.T) *harness {
	return newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			switch c.Directory.Services[i].ID {
			case "frome-walks":
				c.Directory.Services[i].CanMeet = []mapping.SupportNeed{mapping.NeedWheelchair}
			case "link-workers":
				c.Directory.Services[i].CanMeet = mapping.AllSupportNeeds()
			}
		}
	})
}

// TestRoutingEndToEnd: a referral naming a full group goes to the link workers with the reason on the GP's
// Task at once; one whose needs the group cannot meet too; a waiting list keeps it with the expected wait; the
// group asked for never sees the referrals it could not take; an unknown need is a 422 naming the coding.
func TestRoutingEndToEnd(t *testing.T) {
	t.Parallel()
	h := routingHarness(t)
	const fixture, ident = "walking-group-performer.json", "FVMC-2025-0142"

	// Full: handed to the link workers.
	if r := putCapacity(h, tokWalks, `{"status": "full"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	full := referVariant(h, fixture, ident, "FVMC-2025-7001", withNeeds("wheelchair-access"))
	task := h.task(tokGP, full.task)
	h.v.AssertValid(t, mustMarshal(t, task))
	owner := task["owner"].(map[string]any)
	if owner["display"] != "Mendip Social Prescribing Link Workers" {
		t.Errorf("owner: %v", owner)
	}
	reason, _ := task["statusReason"].(map[string]any)
	if !strings.Contains(reason["text"].(string), "Frome Walking for Health has no place now (full: not taking referrals); sent to Mendip Social Prescribing Link Workers") {
		t.Errorf("statusReason: %v", reason)
	}
	if bs := string(mustMarshal(t, task["businessStatus"])); !strings.Contains(bs, mapping.RouteDecisionSystem) || !strings.Contains(bs, `"code":"link-worker"`) {
		t.Errorf("businessStatus: %s", bs)
	}
	rec := record(t, h.do(http.MethodGet, "/community/v1/referrals/"+full.referral, tokLinkWorkers, nil))
	if rec.Route == nil || rec.Route.Wanted == nil || rec.Route.Wanted.ID != "frome-walks" || rec.Route.Reason != mapping.UnmetNoCapacity ||
		len(rec.SupportNeeds) != 1 || rec.SupportNeeds[0] != mapping.NeedWheelchair {
		t.Errorf("the link worker's record: route %+v needs %v", rec.Route, rec.SupportNeeds)
	}
	if r := h.do(http.MethodGet, "/community/v1/referrals/"+full.referral, tokWalks, nil); r.status != http.StatusNotFound {
		t.Errorf("the full group reads the referral it did not get: %d", r.status)
	}

	// Open again, but a need it cannot meet: handed on, needs-unmet.
	if r := putCapacity(h, tokWalks, `{"status": "open"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	unmet := referVariant(h, fixture, ident, "FVMC-2025-7002", withNeeds("one-to-one"))
	task = h.task(tokGP, unmet.task)
	if reason := task["statusReason"].(map[string]any)["text"].(string); !strings.Contains(reason, "cannot meet the person's support needs (one-to-one support)") {
		t.Errorf("needs-unmet statusReason: %q", reason)
	}
	// A need it meets: routed to it, nothing more to say.
	met := referVariant(h, fixture, ident, "FVMC-2025-7003", withNeeds("wheelchair-access"))
	task = h.task(tokGP, met.task)
	if task["owner"].(map[string]any)["display"] != "Frome Walking for Health" || task["statusReason"] != nil {
		t.Errorf("a met need: owner %v reason %v", task["owner"], task["statusReason"])
	}

	// A waiting list keeps it, with the expected wait on the GP's Task.
	if r := putCapacity(h, tokWalks, `{"status": "waitlist", "expected_wait_days": 21}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	wl := referVariant(h, fixture, ident, "FVMC-2025-7004", nil)
	task = h.task(tokGP, wl.task)
	h.v.AssertValid(t, mustMarshal(t, task))
	if task["owner"].(map[string]any)["display"] != "Frome Walking for Health" ||
		task["statusReason"].(map[string]any)["text"] != "On the waiting list of Frome Walking for Health: expected wait 21 days" ||
		!strings.Contains(string(mustMarshal(t, task["businessStatus"])), `"code":"waitlisted"`) {
		t.Errorf("waitlisted Task: %v", task)
	}

	// An unknown need: 422 naming the coding, nothing written.
	before := h.countReferrals()
	body := withNeeds("jetpack")(string(readFile(t, "../testdata/referrals/"+fixture)))
	body = strings.Replace(body, ident, "FVMC-2025-7005", 1)
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(body))
	if r.status != http.StatusUnprocessableEntity || !hasExpression(issues(t, r), "ServiceRequest.orderDetail[0].coding[0]") {
		t.Errorf("unknown need: %d %s", r.status, r.body)
	}
	if h.countReferrals() != before {
		t.Error("a refused referral was written")
	}
}

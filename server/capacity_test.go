package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
)

// putCapacity sends PUT /community/v1/capacity.
func putCapacity(h *harness, token, body string) response {
	h.t.Helper()
	return h.do(http.MethodPut, "/community/v1/capacity", token, []byte(body), jsonCT)
}

// TestCapacityCommunityAPI: a group reads and sets how full it is; every bad setting is a 400 naming the field
// and changes nothing; only community clients use the route.
func TestCapacityCommunityAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	got := h.do(http.MethodGet, "/community/v1/capacity", tokWalks, nil).json(t)
	if got["status"] != "open" || got["effective_status"] != "open" || got["open"] != 0.0 || got["max_open"] != 0.0 {
		t.Fatalf("never set: %v", got)
	}
	r := putCapacity(h, tokWalks, `{"status": "waitlist", "expected_wait_days": 14}`)
	if r.status != http.StatusOK {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	want := func(what string) {
		t.Helper()
		got := h.do(http.MethodGet, "/community/v1/capacity", tokWalks, nil).json(t)
		if got["status"] != "waitlist" || got["expected_wait_days"] != 14.0 || got["effective_status"] != "waitlist" ||
			got["note"] != "waiting list: expected wait 14 days" || got["updated_by"] != "api:frome-walks" {
			t.Fatalf("%s: %v", what, got)
		}
	}
	want("after put")
	for _, tc := range []struct{ body, code, field string }{
		{`{"status": "closed"}`, "invalid_status", "status"},
		{`{}`, "required", "status"},
		{`{"status": "open", "colour": "red"}`, "unknown_field", "colour"},
		{`{"status": "open", "expected_wait_days": 3}`, "invalid_capacity", "expected_wait_days"},
		{`{"status": "waitlist", "expected_wait_days": 400}`, "invalid_capacity", "expected_wait_days"},
		{`{"status": "waitlist", "expected_wait_days": "two weeks"}`, "invalid_type", "expected_wait_days"},
		{`{"status": "paused", "until": "2020-01-01"}`, "invalid_capacity", "until"},
		{`{"status": "paused", "until": "next week"}`, "invalid_capacity", "until"},
		{`{"status": "open", "until": "2027-01-01"}`, "invalid_capacity", "until"},
		{`{"status": "open", "max_open": -1}`, "invalid_capacity", "max_open"},
		{`{"status": "open", "max_open": 2.5}`, "invalid_type", "max_open"},
		{`{"status": "open", "status": "full"}`, "invalid_json", ""},
		{`[1]`, "invalid_json", ""},
	} {
		r := putCapacity(h, tokWalks, tc.body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.body, r.status, r.body)
			continue
		}
		if code, field, _ := apiErr(t, r); code != tc.code || field != tc.field {
			t.Errorf("%s: %s on %q, want %s on %q", tc.body, code, field, tc.code, tc.field)
		}
	}
	want("after the refused settings")
	if r := h.do(http.MethodPut, "/community/v1/capacity", tokWalks, []byte(`{"status": "full"}`), "Content-Type: text/plain"); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", r.status)
	}
	for _, tok := range []string{tokGP, tokAdmin} {
		if r := h.do(http.MethodGet, "/community/v1/capacity", tok, nil); r.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tok, r.status)
		}
	}
	if r := putCapacity(h, tokWalks, `{"status": "paused", "until": "2027-01-04", "max_open": 5}`); r.status != http.StatusOK {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	got = putCapacity(h, tokWalks, `{"status": "open"}`).json(t) // max_open left out: kept
	if got["max_open"] != 5.0 || got["until"] != nil {
		t.Errorf("max_open left out: %v", got)
	}
	// Another service's capacity is its own.
	if got := h.do(http.MethodGet, "/community/v1/capacity", tokMuseum, nil).json(t); got["status"] != "open" || got["max_open"] != 0.0 {
		t.Errorf("museum: %v", got)
	}
}

// TestCapacityMaxOpenRefusesTheAccept: with max_open 1, the second accept is a 409 capacity_full that
// changes nothing; the GP's HealthcareService shows no-capacity; completing the first frees the place.
func TestCapacityMaxOpenRefusesTheAccept(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	a := refer(h, tokGP, "walking-group-performer.json")
	b := refer(h, tokGP, "walking-group-literal-subject.json")
	if r := putCapacity(h, tokWalks, `{"status": "open", "max_open": 1}`); r.status != http.StatusOK {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, a.referral, `{"status": "accepted"}`); r.status != http.StatusOK {
		t.Fatalf("first accept: %d %s", r.status, r.body)
	}
	before := h.version(b.referral)
	r := setStatus(h, tokWalks, b.referral, `{"status": "accepted"}`)
	if r.status != http.StatusConflict {
		t.Fatalf("second accept: %d %s, want 409", r.status, r.body)
	}
	if code, field, msg := apiErr(t, r); code != "capacity_full" || field != "status" || !strings.Contains(msg, "max_open") {
		t.Errorf("second accept: %s %s %q", code, field, msg)
	}
	if h.version(b.referral) != before {
		t.Error("a refused accept wrote a version")
	}
	capv := h.do(http.MethodGet, "/community/v1/capacity", tokWalks, nil).json(t)
	if capv["effective_status"] != "full" || capv["status"] != "open" || capv["open"] != 1.0 {
		t.Errorf("capacity while full: %v", capv)
	}
	hs := h.do(http.MethodGet, "/fhir/HealthcareService/frome-walks", tokGP, nil)
	if hs.status != http.StatusOK {
		t.Fatalf("read: %d %s", hs.status, hs.body)
	}
	h.v.AssertValid(t, hs.body)
	if s := string(hs.body); !strings.Contains(s, `"code":"no-capacity"`) || !strings.Contains(s, "full: 1 of 1 places taken") {
		t.Errorf("HealthcareService while full: %s", hs.body)
	}
	// A FHIR Task update is refused the same way.
	if r := setStatus(h, tokWalks, a.referral, `{"status": "in-progress"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	if r := setStatus(h, tokWalks, a.referral, `{"status": "completed", "outcome": "walked weekly"}`); r.status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.status, r.body)
	}
	if r := setStatus(h, tokWalks, b.referral, `{"status": "accepted"}`); r.status != http.StatusOK {
		t.Fatalf("accept after a completion: %d %s", r.status, r.body)
	}
}

// TestHealthcareServiceSearch: every directory service as an R4-valid HealthcareService with the SDOH
// capacity-status extension, searched by code and by capacity; bad parameters are 400s naming them.
func TestHealthcareServiceSearch(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			if c.Directory.Services[i].ID == "museum-volunteers" {
				c.Directory.Services[i].Capacity = &mapping.Capacity{Status: mapping.CapacityFull}
			}
		}
	})
	if r := putCapacity(h, tokWalks, `{"status": "waitlist", "expected_wait_days": 21}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	if r := putCapacity(h, tokLinkWorkers, `{"status": "paused", "until": "2027-02-01"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	search := func(q string) []string {
		t.Helper()
		r := h.do(http.MethodGet, "/fhir/HealthcareService"+q, tokGP, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
		h.v.AssertValid(t, r.body)
		b := r.json(t)
		var out []string
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			res := e.(map[string]any)["resource"].(map[string]any)
			out = append(out, res["id"].(string))
		}
		if int(b["total"].(float64)) != len(out) {
			t.Errorf("%s: total %v, %d entries", q, b["total"], len(out))
		}
		return out
	}
	if all := search(""); len(all) != len(h.cfg.Directory.Services) {
		t.Errorf("all: %v", all)
	}
	for q, want := range map[string]string{
		"?capacity=waitlist": "frome-walks",
		"?capacity=full":     "museum-volunteers",
		"?capacity=paused":   "link-workers",
		"?capacity=no-capacity&code=museum-volunteering":                           "museum-volunteers",
		"?code=https://socialrx.dev/fhir/CodeSystem/community-offer|walking-group": "frome-walks",
		"?service-type=walking-group":                                              "frome-walks",
		"?_id=debt-advice":                                                         "debt-advice",
		"?code=debt-advice&capacity=open":                                          "debt-advice",
	} {
		if got := search(q); strings.Join(got, ",") != want {
			t.Errorf("%s: %v, want %s", q, got, want)
		}
	}
	if got := search("?code=walking-group&capacity=open"); len(got) != 0 {
		t.Errorf("a waitlisted service under capacity=open: %v", got)
	}
	hs := h.do(http.MethodGet, "/fhir/HealthcareService/frome-walks", tokWalks, nil)
	h.v.AssertValid(t, hs.body)
	for _, want := range []string{mapping.SDOHCapacityExtension, `"url":"capacityStatus"`, `"code":"waitlist"`,
		`"valueString":"waiting list: expected wait 21 days"`, `"url":"expectedWaitDays","valueInteger":21`} {
		if !strings.Contains(string(hs.body), want) {
			t.Errorf("HealthcareService lacks %s: %s", want, hs.body)
		}
	}
	for _, q := range []string{"?capacity=roomy", "?colour=red", "?code="} {
		r := h.do(http.MethodGet, "/fhir/HealthcareService"+q, tokGP, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, r.status)
		}
	}
	if r := h.do(http.MethodGet, "/fhir/HealthcareService/nowhere", tokGP, nil); r.status != http.StatusNotFound {
		t.Errorf("unknown service: %d", r.status)
	}
	if r := h.do(http.MethodGet, "/fhir/HealthcareService", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("no token: %d", r.status)
	}
	md := h.do(http.MethodGet, "/fhir/metadata", "", nil)
	if !strings.Contains(string(md.body), `"type":"HealthcareService"`) || !strings.Contains(string(md.body), `"name":"capacity"`) {
		t.Errorf("the CapabilityStatement does not declare HealthcareService search by capacity")
	}
}

// TestDirectoryCapacitySeeded: the directory's initial max_open is enforced once seeded, and a group's own
// setting is never overridden by a later seed.
func TestDirectoryCapacitySeeded(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, func(c *config.Config) {
		for i := range c.Directory.Services {
			if c.Directory.Services[i].ID == "frome-walks" {
				c.Directory.Services[i].Capacity = &mapping.Capacity{Status: mapping.CapacityOpen, MaxOpen: 1}
			}
		}
	})
	ctx := context.Background()
	if err := referral.SeedCapacities(ctx, h.store, h.cfg.Directory, time.UnixMicro(h.clock.Load()).UTC()); err != nil {
		t.Fatal(err)
	}
	a := refer(h, tokGP, "walking-group-performer.json")
	b := refer(h, tokGP, "walking-group-literal-subject.json")
	if r := setStatus(h, tokWalks, a.referral, `{"status": "accepted"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	if r := setStatus(h, tokWalks, b.referral, `{"status": "accepted"}`); r.status != http.StatusConflict {
		t.Fatalf("beyond the directory's max_open: %d", r.status)
	}
	if r := putCapacity(h, tokWalks, `{"status": "open", "max_open": 3}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	if err := referral.SeedCapacities(ctx, h.store, h.cfg.Directory, time.UnixMicro(h.clock.Load()).UTC()); err != nil {
		t.Fatal(err)
	}
	if got := h.do(http.MethodGet, "/community/v1/capacity", tokWalks, nil).json(t); got["max_open"] != 3.0 {
		t.Errorf("a seed overrode the group's setting: %v", got)
	}
}

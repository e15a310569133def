package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// withheld lists the values of rec that profile p does not share (each non-empty), to be looked for in
// whatever the service receives.
func withheld(rec mapping.Record, p mapping.SharingProfile) []string {
	var out []string
	add := func(f mapping.SharingField, vs ...string) {
		if p.Shares(f) {
			return
		}
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	pt := rec.Patient
	add(mapping.ShareNHSNumber, pt.NHSNumber)
	if !p.Shares(mapping.ShareFirstName) || !strings.HasPrefix(pt.Name, pt.FirstName+" ") {
		add(mapping.ShareName, pt.Name)
	} else {
		add(mapping.ShareName, strings.TrimPrefix(pt.Name, pt.FirstName+" ")) // the rest of the name
	}
	add(mapping.ShareBirthDate, pt.BirthDate)
	add(mapping.ShareContact, pt.Phone, pt.Email)
	add(mapping.ShareAddress, pt.Postcode)
	if len(pt.Address) > 0 {
		add(mapping.ShareAddress, pt.Address[0])
	}
	add(mapping.ShareReasons, rec.Reasons...)
	add(mapping.ShareNotes, rec.Notes...)
	add(mapping.ShareNeeds, rec.Needs)
	return out
}

// TestSharingProfilesOnEverySurface: three services with three sharing profiles (the demo directory's
// narrow walking group, the wider debt-advice service, link workers with the whole record) each receive
// exactly their profile's fields in the referral.created webhook (a real dispatcher to a receiver on
// loopback), the community API (one referral and the list) and the inbox page; nothing withheld appears
// anywhere; later events carry identifiers only; the GP's FHIR view keeps everything.
func TestSharingProfilesOnEverySurface(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	h := newHarnessWith(t, fhirtest.NewValidator(t), func(c *config.Config) {
		for i := range c.Directory.Services {
			switch c.Directory.Services[i].ID {
			case "frome-walks", "debt-advice", "link-workers":
				c.Directory.Services[i].Delivery.URL = rc.url + "/hooks/" + c.Directory.Services[i].ID
				c.Directory.Services[i].Delivery.Secret = "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="
			}
		}
	})
	startDispatcher(t, h)
	cases := []struct {
		service, token, fixture string
	}{
		{"frome-walks", tokWalks, "walking-group-performer.json"},
		{"debt-advice", "demo-debt-token", "debt-advice-urgent.json"},
		{"link-workers", tokLinkWorkers, "link-worker-befriending-default.json"},
	}
	distinct := map[string]bool{}
	for _, c := range cases {
		svc, ok := h.cfg.Directory.Service(c.service)
		if !ok {
			t.Fatalf("no service %s", c.service)
		}
		distinct[strings.Join(svc.Sharing.Names(), ",")] = true
		ref := refer(h, tokPCN, c.fixture)
		stored, err := h.store.GetReferral(context.Background(), ref.referral)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Record.Service.ID != c.service {
			t.Fatalf("%s routed to %s", c.fixture, stored.Record.Service.ID)
		}
		full := stored.Record
		want := svc.Sharing.Apply(full)
		hidden := withheld(full, svc.Sharing)
		if c.service != "link-workers" && len(hidden) == 0 {
			t.Fatalf("%s: the fixture has nothing the profile withholds; the test proves nothing", c.service)
		}
		check := func(surface string, got mapping.Record, raw []byte) {
			t.Helper()
			if diff := cmp.Diff(want.Patient, got.Patient); diff != "" {
				t.Errorf("%s %s: patient (-profile +got):\n%s", c.service, surface, diff)
			}
			if !cmp.Equal(want.Reasons, got.Reasons) || want.Needs != got.Needs || !cmp.Equal(want.Notes, got.Notes) ||
				want.Referrer != got.Referrer || want.Consent != got.Consent {
				t.Errorf("%s %s: reasons/needs/notes/referrer/consent differ from the profile:\n%s", c.service, surface, raw)
			}
			for _, v := range hidden {
				if strings.Contains(string(raw), v) || strings.Contains(string(raw), jsonEscape(v)) {
					t.Errorf("%s %s: shows %q, which its profile withholds", c.service, surface, v)
				}
			}
		}

		// Webhook (real dispatcher, loopback receiver).
		d := waitFor(t, rc.got, "referral.created")
		if d.path != "/hooks/"+c.service {
			t.Fatalf("delivery to %s, want %s", d.path, c.service)
		}
		var ev struct {
			Data mapping.Record `json:"data"`
		}
		if err := json.Unmarshal(d.body, &ev); err != nil || ev.Data.ID != ref.referral {
			t.Fatalf("webhook: %v %s", err, d.body)
		}
		check("webhook", ev.Data, d.body)

		// Community API: one referral, and the list.
		one := h.do(http.MethodGet, "/community/v1/referrals/"+ref.referral, c.token, nil)
		check("community API", record(t, one), one.body)
		list := h.do(http.MethodGet, "/community/v1/referrals", c.token, nil)
		var pg struct {
			Referrals []mapping.Record `json:"referrals"`
		}
		if err := json.Unmarshal(list.body, &pg); err != nil || len(pg.Referrals) != 1 {
			t.Fatalf("list: %d %s", list.status, list.body)
		}
		check("community API list", pg.Referrals[0], list.body)

		// The inbox page (HTML over HTTP; the walking group's in Chromium: TestBrowserInboxSharingProfile).
		b := newBrowser(h)
		if r := b.post("/inbox/login", url.Values{"service": {c.service}, "token": {c.token}}); r.status != http.StatusSeeOther {
			t.Fatalf("sign in %s: %d %s", c.service, r.status, r.body)
		}
		for _, path := range []string{"/inbox/", "/inbox/referrals/" + ref.referral} {
			pg := b.get(path)
			if pg.status != http.StatusOK {
				t.Fatalf("%s: %d", path, pg.status)
			}
			for _, v := range hidden {
				if strings.Contains(string(pg.body), htmlEscape(v)) {
					t.Errorf("%s inbox %s: shows %q, which its profile withholds", c.service, path, v)
				}
			}
			if name := want.Patient.Called(); !strings.Contains(string(pg.body), htmlEscape(name)) {
				t.Errorf("%s inbox %s: does not show %q", c.service, path, name)
			}
		}

		// FHIR: the service's Task (read, search, version, history) is cut to its profile like the record; the
		// GP's ServiceRequest, which carries everything, is not shared with it at all.
		for _, path := range []string{"/fhir/Task/" + ref.task, "/fhir/Task?_id=" + ref.task, "/fhir/Task/" + ref.task + "/_history/1", "/fhir/Task/" + ref.task + "/_history"} {
			r := h.do(http.MethodGet, path, c.token, nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), ref.task) {
				t.Fatalf("%s %s: %d %s", c.service, path, r.status, r.body)
			}
			for _, v := range hidden {
				if strings.Contains(string(r.body), jsonEscape(v)) {
					t.Errorf("%s FHIR %s: shows %q, which its profile withholds", c.service, path, v)
				}
			}
			if svc.Sharing.Shares(mapping.ShareNHSNumber) != strings.Contains(string(r.body), full.Patient.NHSNumber) {
				t.Errorf("%s FHIR %s: the NHS number is shown iff the profile shares it (shares: %v)", c.service, path, svc.Sharing.Shares(mapping.ShareNHSNumber))
			}
		}
		for _, path := range []string{"/fhir/ServiceRequest/" + ref.sr, "/fhir/ServiceRequest?_id=" + ref.sr, "/fhir/ServiceRequest/" + ref.sr + "/_history",
			"/fhir/ServiceRequest/" + ref.sr + "/_history/1", "/fhir/Task?_id=" + ref.task + "&_include=Task:focus"} {
			r := h.do(http.MethodGet, path, c.token, nil)
			if r.status != http.StatusForbidden || strings.Contains(string(r.body), full.Patient.NHSNumber) {
				t.Errorf("%s %s: want 403 without patient data, got %d %s", c.service, path, r.status, r.body)
			}
		}

		// The GP's FHIR view is whole.
		sr := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokPCN, nil)
		if sr.status != http.StatusOK || !strings.Contains(string(sr.body), full.Patient.NHSNumber) {
			t.Errorf("%s: the GP's ServiceRequest lost the NHS number: %d", c.service, sr.status)
		}

		// A later event (the GP cancels) carries identifiers only.
		body := h.do(http.MethodGet, "/fhir/ServiceRequest/"+ref.sr, tokPCN, nil).json(t)
		body["status"] = "revoked"
		if r := h.do(http.MethodPut, "/fhir/ServiceRequest/"+ref.sr, tokPCN, mustMarshal(t, body)); r.status != http.StatusOK {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		cancelled := waitFor(t, rc.got, "referral.cancelled")
		var cev struct {
			Data map[string]json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(cancelled.body, &cev); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"patient", "referrer", "reasons", "needs", "notes", "consent", "service_requested"} {
			if _, ok := cev.Data[k]; ok {
				t.Errorf("%s: referral.cancelled carries %q: %s", c.service, k, cancelled.body)
			}
		}
	}
	if len(distinct) != len(cases) {
		t.Errorf("the demo services share the same profiles: %v", distinct)
	}
}

func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestBrowserInboxSharingProfile: the walking group (demo profile: first name, contact details, needs,
// referrer) opens a referral in real headless Chromium and sees the person's first name, phone and needs,
// and never their NHS number, surname, date of birth, address or the clinical reasons.
func TestBrowserInboxSharingProfile(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ref := refer(s.harness, tokGP, "walking-group-performer.json") // → frome-walks
	stored, err := s.store.GetReferral(context.Background(), ref.referral)
	if err != nil {
		t.Fatal(err)
	}
	full := stored.Record
	svc, _ := s.cfg.Directory.Service("frome-walks")
	b := browsertest.New(t, browsertest.Options{})
	if st := b.Open(s.url + "/inbox/"); st != http.StatusOK {
		t.Fatalf("sign-in page: %d", st)
	}
	if st := signInWith(b, "frome-walks", tokWalks); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	shows(t, b, "list", full.Patient.FirstName)
	if st := b.Press(`a[href="/inbox/referrals/` + ref.referral + `"]`); st != http.StatusOK {
		t.Fatalf("open referral: %d", st)
	}
	shows(t, b, "referral", full.Patient.FirstName, full.Patient.Phone, full.Needs, full.Referrer.Name)
	body := b.Body()
	hidden := withheld(full, svc.Sharing)
	if len(hidden) < 4 {
		t.Fatalf("the profile withholds only %v; the test proves little", hidden)
	}
	for _, v := range hidden {
		if strings.Contains(body, v) {
			t.Errorf("the walking group's page shows %q, which its profile withholds", v)
		}
	}
	page(t, b, "referral-sharing-walks")
}

package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// TestBrowserInboxCapacity: a volunteer on a phone says how full the group is with one tap (Full, Taking
// referrals, Waiting list with an expected wait, Pause until a date); a wrong value is refused with what was
// typed kept and the field pointed at; the GP side's HealthcareService follows at once.
func TestBrowserInboxCapacity(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "museum-volunteers", tokMuseum); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	shows(t, b, "list", "How full is your group?", "Now: taking referrals")
	page(t, b, "capacity-open")
	stored := func() mapping.Capacity {
		t.Helper()
		c, _, err := s.store.GetCapacity(context.Background(), "museum-volunteers")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tap := func(button string, want mapping.CapacityStatus, shown string) {
		t.Helper()
		if st := b.PressButton(button); st != http.StatusOK {
			t.Fatalf("%s: %d\n%s", button, st, b.Body())
		}
		if p := s.lastPost(); p.path != "/inbox/capacity" || p.status != http.StatusSeeOther || p.fetchSite != "same-origin" {
			t.Errorf("%s: the form post %+v", button, p)
		}
		shows(t, b, button, "Saved: GP practices and link workers now see how full your group is.", shown)
		if c := stored(); c.Status != want || c.UpdatedBy != "inbox:museum-volunteers" {
			t.Fatalf("%s: stored %+v, want %s", button, c, want)
		}
		if got := browsertest.Eval[string](b, `document.querySelector('button[aria-pressed="true"]').textContent`); got != button {
			t.Errorf("%s: the pressed button reads %q", button, got)
		}
	}
	tap("Full", mapping.CapacityFull, "Now: full")
	page(t, b, "capacity-full")
	hs := s.do(http.MethodGet, "/fhir/HealthcareService/museum-volunteers", tokGP, nil)
	if hs.status != http.StatusOK || !strings.Contains(string(hs.body), `"code":"no-capacity"`) {
		t.Errorf("the GP's HealthcareService after Full: %d %s", hs.status, hs.body)
	}
	tap("Taking referrals", mapping.CapacityOpen, "Now: taking referrals")

	b.Type("#wait", "soon")
	if st := b.PressButton("Waiting list"); st != http.StatusBadRequest {
		t.Errorf("a wait in words: %d, want 400", st)
	}
	shows(t, b, "wait refused", "There is a problem", "Write the expected wait as a number of days")
	if v := b.Value("#wait"); v != "soon" {
		t.Errorf("the wait typed was not kept: %q", v)
	}
	if href := browsertest.Eval[string](b, `document.querySelector("#error-message a").getAttribute("href")`); href != "#wait" {
		t.Errorf("the error links to %q, want #wait", href)
	}
	page(t, b, "capacity-wait-refused")
	if c := stored(); c.Status != mapping.CapacityOpen {
		t.Errorf("a refused setting changed the capacity: %+v", c)
	}
	b.Type("#wait", "21")
	tap("Waiting list", mapping.CapacityWaitlist, "Now: waiting list (waiting list: expected wait 21 days)")
	if c := stored(); c.ExpectedWaitDays != 21 {
		t.Errorf("expected wait: %+v", c)
	}

	b.Type("#until", "2020-01-01")
	if st := b.PressButton("Pause"); st != http.StatusBadRequest {
		t.Errorf("a pause ending in the past: %d, want 400", st)
	}
	shows(t, b, "until refused", "Write the date the pause ends")
	b.Type("#until", "")
	b.Open(s.url + "/inbox/")
	b.Type("#until", "2027-01-04")
	tap("Pause", mapping.CapacityPaused, "Now: paused (paused until 2027-01-04)")
	if c := stored(); !c.Until.Equal(time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("until: %+v", c)
	}
	page(t, b, "capacity-paused")
}

// TestBrowserInboxShowsRouting: the link workers' inbox shows the person's support needs and why the referral
// came to them (the group asked for was full).
func TestBrowserInboxShowsRouting(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	if r := putCapacity(s.harness, tokWalks, `{"status": "full"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	ref := referVariant(s.harness, "walking-group-performer.json", "FVMC-2025-0142", "FVMC-2025-8001", withNeeds("wheelchair-access"))
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	if st := b.Open(s.url + "/inbox/referrals/" + ref.referral); st != http.StatusOK {
		t.Fatalf("open: %d", st)
	}
	shows(t, b, "handed-on referral", "Support needs", "Wheelchair access", "How it reached you",
		"Frome Walking for Health has no place now (full: not taking referrals); sent to Mendip Social Prescribing Link Workers to find another group")
	page(t, b, "referral-handed-on")
}

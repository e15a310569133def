package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// TestBrowserInboxForward: a link worker on a phone opens a referral, sees the directory's groups with how
// full each is (a full one cannot be ticked), ticks two and presses "Suggest to the groups ticked"; each group
// then finds its own referral in its inbox and not the other's.
func TestBrowserInboxForward(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	if r := putCapacity(s.harness, tokMuseum, `{"status": "full"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	ref := refer(s.harness, tokPCN, "link-worker-befriending-default.json")
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	if st := b.Open(s.url + "/inbox/referrals/" + ref.referral); st != http.StatusOK {
		t.Fatalf("open: %d", st)
	}
	shows(t, b, "the link worker's referral", "Suggest groups", "Frome Walking for Health", "Frome Friday Lunch Club")
	if n := b.Count(`input[name="service"][value="museum-volunteers"]:disabled`); n != 1 {
		t.Errorf("the full museum can be ticked (%d disabled boxes)", n)
	}
	if n := b.Count(`input[name="service"][value="link-workers"]`); n != 0 {
		t.Error("the link workers are offered to themselves")
	}
	page(t, b, "forward-form")
	b.Tick(`input[name="service"][value="frome-walks"]`)
	b.Tick(`input[name="service"][value="lunch-club"]`)
	b.Type("#forward-note", "Fridays suit her best.")
	if st := b.PressButton("Suggest to the groups ticked"); st != http.StatusOK {
		t.Fatalf("suggest: %d\n%s", st, b.Body())
	}
	if p := s.lastPost(); p.path != "/inbox/referrals/"+ref.referral+"/forward" || p.status != http.StatusSeeOther || p.fetchSite != "same-origin" {
		t.Errorf("the form post %+v", p)
	}
	shows(t, b, "after suggesting", "Sent: each group you ticked now has the referral in its inbox.")
	page(t, b, "forward-sent")

	kids, _, err := s.store.SearchReferrals(t.Context(), outbox.ReferralQuery{ParentTaskID: ref.task})
	if err != nil || len(kids) != 2 {
		t.Fatalf("children: %d, %v", len(kids), err)
	}
	ids := map[string]string{}
	for _, k := range kids {
		ids[k.Record.Service.ID] = k.Record.ID
	}
	// The walking group's inbox lists its child, not the lunch club's.
	w := browsertest.New(t, browsertest.Options{})
	w.Open(s.url + "/inbox/")
	if st := signInWith(w, "frome-walks", tokWalks); st != http.StatusOK {
		t.Fatalf("walks sign in: %d", st)
	}
	body := w.Body()
	if !strings.Contains(body, ids["frome-walks"]) || strings.Contains(body, ids["lunch-club"]) {
		t.Errorf("the walking group's inbox: its child listed %v, the lunch club's listed %v",
			strings.Contains(body, ids["frome-walks"]), strings.Contains(body, ids["lunch-club"]))
	}
	if st := w.Open(s.url + "/inbox/referrals/" + ids["lunch-club"]); st != http.StatusNotFound {
		t.Errorf("the walking group opens the lunch club's referral: %d", st)
	}
	if st := w.Open(s.url + "/inbox/referrals/" + ids["frome-walks"]); st != http.StatusOK {
		t.Errorf("the walking group opens its referral: %d", st)
	}
	shows(t, w, "the walking group's referral", "Fridays suit her best.")
	page(t, w, "forward-child")
}

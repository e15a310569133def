package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// TestBrowserInboxEscalations: the demo's link-worker service has no webhook, so it reads the referrals the
// deadline ladder escalates to it in its inbox: a person on a phone sees the museum's unanswered referral
// under "Waiting too long at other groups" with the group, the practice and the dates and nothing about the
// person; after the automatic decline it reads "Declined: no answer". The museum's own inbox has no such
// list.
func TestBrowserInboxEscalations(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	h := s.harness
	t0 := time.Now().UTC().Add(-15 * 24 * time.Hour) // the inbox lists the last 30 days
	h.clock.Store(t0.UnixMicro())
	ref := refer(h, tokPCN, "museum-volunteering-bundle.json") // → museum-volunteers
	day := 24 * time.Hour
	sweep := func(at time.Duration) { sweepLadder(t, h, t0, at) }
	sweep(2 * day) // reminded
	sweep(4 * day) // escalated
	h.clock.Store(time.Now().UTC().UnixMicro())

	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "link-workers", tokLinkWorkers); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	shows(t, b, "escalations", "Waiting too long at other groups", "Somerset Museums Volunteer Programme", "No answer yet",
		"by practice "+practiceOf(t, h, ref.referral), "Task "+ref.task)
	for _, personal := range []string{"Okafor", "Daniel", "07700"} {
		if strings.Contains(b.Body(), personal) {
			t.Errorf("the link worker's escalations show %q", personal)
		}
	}
	page(t, b, "escalated")

	sweep(14 * day) // declined by socialrx
	h.clock.Store(time.Now().UTC().UnixMicro())
	if st := b.Open(s.url + "/inbox/"); st != http.StatusOK {
		t.Fatalf("reload: %d", st)
	}
	shows(t, b, "declined", "Waiting too long at other groups", "Declined: no answer")
	page(t, b, "declined")

	museum := browsertest.New(t, browsertest.Options{})
	museum.Open(s.url + "/inbox/")
	if st := signInWith(museum, "museum-volunteers", tokMuseum); st != http.StatusOK {
		t.Fatalf("museum sign in: %d", st)
	}
	if strings.Contains(museum.Body(), "Waiting too long at other groups") {
		t.Error("a group that is not the link worker sees the escalations")
	}
}

// practiceOf is the referring practice's ODS code of the referral id.
func practiceOf(t *testing.T, h *harness, id string) string {
	t.Helper()
	r, err := h.store.GetReferral(context.Background(), id)
	if err != nil || r.PracticeODS == "" {
		t.Fatalf("referral %s: %v", id, err)
	}
	return r.PracticeODS
}

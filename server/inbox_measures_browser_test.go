package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// TestBrowserInboxMeasures: a volunteer on a phone records a SWEMWBS baseline from the referral page; a form
// with an unanswered question and no date is refused with every problem listed, each linking to its field,
// and what was chosen kept; the saved measure shows on the referral page and on the GP's Task.
func TestBrowserInboxMeasures(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ref := refer(s.harness, tokGP, "walking-group-performer.json") // → frome-walks
	if r := setStatus(s.harness, tokWalks, ref.referral, `{"status":"accepted"}`); r.status != http.StatusOK {
		t.Fatalf("accept: %d %s", r.status, r.body)
	}
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "frome-walks", tokWalks); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	if st := b.Open(s.url + "/inbox/referrals/" + ref.referral); st != http.StatusOK {
		t.Fatalf("referral page: %d", st)
	}
	shows(t, b, "referral", "Wellbeing measures (optional)", "None recorded. Your group does not have to collect them.")
	if st := b.Press(`a[href$="instrument=swemwbs"]`); st != http.StatusOK {
		t.Fatalf("open the SWEMWBS form: %d", st)
	}
	shows(t, b, "form", "SWEMWBS", "1. I've been feeling optimistic about the future", "When is this?", "For Margaret.")
	if body := b.Body(); strings.Contains(body, "Ellis") || strings.Contains(body, "9999542557") {
		t.Errorf("the measure form shows the person's surname or NHS number, which the walking group's profile withholds")
	}
	page(t, b, "measure-form")
	if got := b.Count("select"); got != 7 {
		t.Fatalf("%d questions, want 7", got)
	}
	// Six answers, the fourth left out, and the date cleared.
	for i, v := range []string{"3", "3", "3", "", "4", "4", "4"} {
		if v != "" {
			b.Choose("#item-"+string(rune('0'+i)), v)
		}
	}
	browsertest.Eval[bool](b, `(document.getElementById("date").value = "", true)`)
	if st := b.PressButton("Save the answers"); st != http.StatusBadRequest {
		t.Fatalf("an incomplete form: %d, want 400\n%s", st, b.Body())
	}
	if p := s.lastPost(); p.path != "/inbox/referrals/"+ref.referral+"/measures" || p.fetchSite != "same-origin" {
		t.Errorf("the form post %+v", p)
	}
	shows(t, b, "refused", "There is a problem: nothing was saved", "Question 4 has no answer", "Date is required")
	links := browsertest.Eval[[]any](b, `Array.from(document.querySelectorAll("#problems a")).map(a => a.getAttribute("href"))`)
	if len(links) != 2 || links[0] != "#date" || links[1] != "#item-3" {
		t.Errorf("problem links %v, want #date and #item-3", links)
	}
	if b.Value("#item-0") != "3" || b.Value("#item-6") != "4" || b.Value("#item-3") != "" {
		t.Errorf("the answers chosen were not kept")
	}
	if v := b.Value("#date"); v != "" {
		t.Errorf("the refused form shows the date %q where the person left it empty (and is told it is required)", v)
	}
	if inv := browsertest.Eval[string](b, `document.getElementById("item-3").getAttribute("aria-invalid")`); inv != "true" {
		t.Errorf("the unanswered question is not marked invalid")
	}
	page(t, b, "measure-refused")
	if before, err := s.store.GetReferral(context.Background(), ref.referral); err != nil || len(before.Record.Measures) != 0 {
		t.Fatalf("a refused form saved a measure (%v)", err)
	}

	b.Choose("#item-3", "2")
	browsertest.Eval[bool](b, `(document.getElementById("date").value = "2026-11-21", true)`)
	b.Type("#recorder", "Sam")
	if st := b.PressButton("Save the answers"); st != http.StatusOK {
		t.Fatalf("save: %d\n%s", st, b.Body())
	}
	shows(t, b, "saved", "Saved: the measure was recorded. The GP practice can see it.", "SWEMWBS baseline 2026-11-21: 23 (metric 20.73)", "Sam")
	page(t, b, "measure-saved")
	got, err := s.store.GetReferral(context.Background(), ref.referral)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Record.Measures) != 1 || got.Record.Measures[0].Instrument != mapping.InstrumentSWEMWBS || *got.Record.Measures[0].Score != 23 ||
		got.Record.Measures[0].Recorder != "Sam" {
		t.Fatalf("stored %+v", got.Record.Measures)
	}
	if outs := outputs(s.task(tokGP, ref.task)); len(outs) != 1 || outs[0][1] != "Observation/"+ref.task+"-m1" {
		t.Errorf("the GP's Task.output %v", outs)
	}
}

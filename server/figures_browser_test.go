package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/server/internal/browsertest"
)

// chartFacts reads what a person (and a screen reader) gets from the page's chart: the SVG's accessible
// name and description, the labels of its bars, the texts drawn in it, and the table's rows.
func chartFacts(b *browsertest.Browser) (name, desc string, bars, texts, rows []string) {
	name = browsertest.Eval[string](b, `(() => { const s = document.querySelector("svg.chart");
		return s.getAttribute("aria-labelledby").split(" ").map(id => document.getElementById(id).textContent).join(" | ") })()`)
	desc = browsertest.Eval[string](b, `document.querySelector("svg.chart desc").textContent`)
	strs := func(expr string) []string {
		var out []string
		for _, v := range browsertest.Eval[[]any](b, expr) {
			out = append(out, v.(string))
		}
		return out
	}
	bars = strs(`Array.from(document.querySelectorAll("svg.chart rect > title")).map(t => t.textContent)`)
	texts = strs(`Array.from(document.querySelectorAll("svg.chart > text")).map(t => t.textContent)`)
	rows = strs(`Array.from(document.querySelectorAll("figure.chart tbody tr")).map(r => r.innerText.replace(/\s+/g, " ").trim())`)
	return name, desc, bars, texts, rows
}

// TestBrowserFiguresChart: a volunteer opens the monthly figures from the inbox on a phone: a chart drawn on
// the server (no script runs: the page has none and its CSP forbids it) with a title, a description, a
// labelled bar per count and a table of the same figures; November's 6 referrals (5 accepted) show as bars,
// the 3 completed as "fewer than 5" with no bar. The engineer's console shows the area's chart too. Both
// pages pass the mechanical WCAG checks, fit the screen, and are screenshotted.
func TestBrowserFiguresChart(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	for i := range 6 {
		ref := referVariant(s.harness, "walking-group-performer.json", "FVMC-2025-0142", fmt.Sprintf("FVMC-CHART-%d", i), nil)
		moves := []string{`{"status":"accepted"}`, `{"status":"in-progress"}`, `{"status":"completed","outcome":"Walks"}`}
		switch {
		case i == 5:
			moves = []string{`{"status":"rejected","reason":"The person chose not to join"}`}
		case i >= 3:
			moves = moves[:1]
		}
		for _, m := range moves {
			if r := setStatus(s.harness, tokWalks, ref.referral, m); r.status != http.StatusOK {
				t.Fatalf("%s: %d %s", m, r.status, r.body)
			}
		}
	}
	b := browsertest.New(t, browsertest.Options{})
	b.Open(s.url + "/inbox/")
	if st := signInWith(b, "frome-walks", tokWalks); st != http.StatusOK {
		t.Fatalf("sign in: %d", st)
	}
	if st := b.Press(`a[href="/inbox/figures"]`); st != http.StatusOK {
		t.Fatalf("figures page: %d\n%s", st, b.Body())
	}
	if csp := b.Header("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("the figures page's CSP: %q", csp)
	}
	if n := b.Count("script"); n != 0 {
		t.Errorf("%d scripts on the page", n)
	}
	shows(t, b, "inbox figures", "Monthly figures", "fewer than 5", "Received", "Accepted", "Completed")
	name, desc, bars, texts, rows := chartFacts(b)
	if name != "Frome Walking for Health: referrals per month | "+desc || !strings.Contains(desc, `"fewer than 5" instead of a bar`) {
		t.Errorf("the chart's name %q, description %q", name, desc)
	}
	want := map[string]bool{"Received in Nov 2026: 6": true, "Accepted in Nov 2026: 5": true}
	for _, bar := range bars {
		delete(want, bar)
		if strings.HasPrefix(bar, "Completed in Nov 2026") {
			t.Errorf("a suppressed count has a bar: %q", bar)
		}
	}
	if len(want) != 0 || len(bars) != 12*3-1 {
		t.Errorf("bars %q (missing %v), want 35: 12 months of three, November's completed none", bars, want)
	}
	if j := strings.Join(texts, "|"); !strings.Contains(j, "Nov 2026|6 received|5 accepted|completed: fewer than 5") {
		t.Errorf("the chart's texts %q", texts)
	}
	if len(rows) != 12 || rows[11] != "Nov 2026 6 5 fewer than 5 fewer than 5 0 0 none" {
		t.Errorf("table rows %q", rows)
	}
	page(t, b, "inbox-figures")

	// A month that is not one: the page says so and keeps the form.
	if st := b.Open(s.url + "/inbox/figures?from=2026-13&to=2026-11"); st != http.StatusBadRequest {
		t.Errorf("a bad month: %d", st)
	}
	shows(t, b, "bad month", "There is a problem", "from", "From (month)")

	// The operations console: the area's figures.
	c := consoleBrowser(t, s.url)
	if st := c.Press(`a[href="/admin/figures"]`); st != http.StatusOK {
		t.Fatalf("console figures: %d\n%s", st, c.Body())
	}
	name, _, bars, _, rows = chartFacts(c)
	if !strings.HasPrefix(name, "The whole area: referrals per month") || len(bars) != 35 || rows[11] != "Nov 2026 6 5 fewer than 5 fewer than 5 0 0 none" {
		t.Errorf("console chart %q, %d bars, rows %q", name, len(bars), rows)
	}
	consolePage(t, c, "console-figures")
	c.Choose("#f-service", "museum-volunteers")
	if st := c.PressButton("Show"); st != http.StatusOK {
		t.Fatalf("one service: %d", st)
	}
	if name, _, _, _, rows = chartFacts(c); !strings.HasPrefix(name, "Somerset Museums Volunteer Programme") || rows[11] != "Nov 2026 0 0 0 0 0 0 none" {
		t.Errorf("one service's chart %q rows %q", name, rows)
	}
}

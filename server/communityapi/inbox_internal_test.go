package communityapi

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// TestCrossSiteRefusal: the rule behind every inbox form, on the header values browsers send.
func TestCrossSiteRefusal(t *testing.T) {
	t.Parallel()
	own := func(h string) bool { return h == "inbox.example.org" }
	for _, tc := range []struct {
		name, site, origin string
		refused            bool
	}{
		{"our own form (Chromium, Firefox under no-referrer)", "same-origin", "null", false},
		{"our own form with Origin", "same-origin", "https://inbox.example.org", false},
		{"the person's own navigation", "none", "", false},
		{"another site's form", "cross-site", "https://evil.example", true},
		{"another site's sandboxed form (Origin null)", "cross-site", "null", true},
		{"a sibling subdomain", "same-site", "https://other.example.org", true},
		{"Sec-Fetch-Site decides over a matching Origin", "cross-site", "https://inbox.example.org", true},
		{"an unknown Sec-Fetch-Site value", "sideways", "", true},
		{"upper case", "Same-Origin", "", false},
		{"an old browser, our form", "", "https://inbox.example.org", false},
		{"an old browser, another site's form", "", "https://evil.example", true},
		{"an old browser, a damaged Origin", "", "::not a url", true},
		{"no Fetch Metadata, Origin null: the session and CSRF token decide", "", "null", false},
		{"a program that is not a browser", "", "", false},
	} {
		got := crossSiteRefusal(tc.site, tc.origin, own)
		if (got != "") != tc.refused {
			t.Errorf("%s: refusal %q, want refused %v", tc.name, got, tc.refused)
		}
	}
}

// TestInboxCSRF: the token is bound to the session id, never the same for two sessions, and compared whole.
func TestInboxCSRF(t *testing.T) {
	t.Parallel()
	a, b := inboxCSRF("session-a"), inboxCSRF("session-b")
	if len(a) != 64 || a == b || a != inboxCSRF("session-a") || strings.Contains(a, "session-a") {
		t.Errorf("CSRF tokens %q and %q", a, b)
	}
	for _, tc := range []struct {
		form url.Values
		ok   bool
	}{
		{url.Values{"csrf": {a}}, true},
		{url.Values{"csrf": {b}}, false},
		{url.Values{"csrf": {a[:63]}}, false},
		{url.Values{"csrf": {""}}, false},
		{url.Values{}, false},
	} {
		r := httptest.NewRequest("POST", "/inbox/logout", nil)
		r.PostForm = tc.form
		if got := csrfOK(r, "session-a"); got != tc.ok {
			t.Errorf("csrfOK(%v) = %v, want %v", tc.form, got, tc.ok)
		}
	}
}

// TestInboxFormats: UK local time with BST, dates a person reads, waits in words, phone and email links.
func TestInboxFormats(t *testing.T) {
	t.Parallel()
	uk, err := time.LoadLocation(ukZone)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[time.Time]string{
		time.Date(2026, 7, 1, 9, 5, 0, 0, time.UTC):    "1 July 2026, 10:05",     // BST
		time.Date(2026, 12, 1, 9, 5, 0, 0, time.UTC):   "1 December 2026, 09:05", // GMT
		time.Date(2026, 3, 29, 0, 59, 0, 0, time.UTC):  "29 March 2026, 00:59",   // the last minute of GMT
		time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC):   "29 March 2026, 02:00",   // clocks go forward
		time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC): "25 October 2026, 01:30", // BST, before clocks go back
		time.Date(2026, 10, 25, 1, 30, 0, 0, time.UTC): "25 October 2026, 01:30", // GMT, after
		{}: "",
	} {
		if got := dateTime(in, uk); got != want {
			t.Errorf("dateTime(%s) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"1990-07-02": "2 July 1990", "1942-05-30": "30 May 1942", "1990-07": "July 1990",
		"1990": "1990", "2 July 1990": "2 July 1990", "": "", "2025-03-12T15:20:00+00:00": "12 March 2025",
		"2025-06-30T23:30:00Z": "1 July 2025" /* 00:30 BST */} {
		if got := readableDate(in, uk); got != want {
			t.Errorf("readableDate(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "less than a minute", time.Minute: "1 minute", 59 * time.Minute: "59 minutes",
		time.Hour: "1 hour", 47 * time.Hour: "47 hours", 48 * time.Hour: "2 days", 146 * 24 * time.Hour: "146 days"} {
		if got := waited(in); got != want {
			t.Errorf("waited(%s) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"07700 900456": "tel:07700900456", "+44 (0)1373 455000": "tel:+4401373455000",
		"01749-342000": "tel:01749342000", "call reception": "", "javascript:alert(1)": "", "123": ""} {
		if got := string(telLink(in)); got != want {
			t.Errorf("telLink(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"d.okafor@example.net": "mailto:d.okafor@example.net",
		"a+b@example.org": "mailto:a+b@example.org", "no at sign": "", "x@y": "", `"><script>@x.y`: "",
		"javascript:alert(1)//@x.y": ""} {
		if got := string(mailtoLink(in)); got != want {
			t.Errorf("mailtoLink(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNonEmpty(t *testing.T) {
	t.Parallel()
	if got := nonEmpty(", ", "", "Link worker", " ", "Frome Valley Medical Centre"); got != "Link worker, Frome Valley Medical Centre" {
		t.Errorf("nonEmpty = %q", got)
	}
}

// TestInboxLabelsEveryStatus walks every status through the labels and the buttons: every move a service
// may make has a button of its own, Decline and Could not complete look apart from the rest, and a move
// that needs a reason asks for one.
func TestInboxLabelsEveryStatus(t *testing.T) {
	t.Parallel()
	seen := map[string]mapping.TaskStatus{}
	for _, st := range mapping.AllStatuses() {
		l := statusLabel(st)
		if l == "" || l == string(st) {
			t.Errorf("status %s has no label", st)
		}
		if prev, dup := seen[l]; dup {
			t.Errorf("statuses %s and %s share the label %q", prev, st, l)
		}
		seen[l] = st
		for _, to := range mapping.AllowedMoves(st, mapping.ActorCommunity) {
			a := moveAction(st, to)
			wantStyle := map[mapping.TaskStatus]string{mapping.StatusRejected: "stop", mapping.StatusFailed: "stop",
				mapping.StatusAccepted: "go", mapping.StatusInProgress: "go", mapping.StatusCompleted: "go"}[to]
			if wantStyle == "" {
				wantStyle = "plain"
			}
			if a.Label == "" || a.Style != wantStyle {
				t.Errorf("%s → %s: label %q style %q, want style %q", st, to, a.Label, a.Style, wantStyle)
			}
			needs := to == mapping.StatusRejected || to == mapping.StatusOnHold || to == mapping.StatusFailed
			if a.NeedsReason != needs || (needs && a.ReasonPrompt == "") {
				t.Errorf("%s → %s: NeedsReason %v prompt %q", st, to, a.NeedsReason, a.ReasonPrompt)
			}
		}
	}
	if moveAction(mapping.StatusOnHold, mapping.StatusInProgress).Label != "Resume" ||
		moveAction(mapping.StatusAccepted, mapping.StatusInProgress).Label != "Start" {
		t.Error("in-progress is Start from accepted and Resume from on hold")
	}
}

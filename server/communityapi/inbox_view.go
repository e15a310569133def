package communityapi

import (
	"cmp"
	"fmt"
	"html/template"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// What a coordinator reads on the inbox pages: dates and times in UK local time (Europe/London, with BST),
// dates as a person writes them ("2 July 1990"), how long a referral has waited, urgent referrals first, and
// phone numbers and email addresses as links.

// ukZone is the zone the inbox shows times in. time/tzdata is embedded in the binary (api.go), so this works
// on a machine without a zone database.
const ukZone = "Europe/London"

// dateTime is t as a person in the UK reads it: "21 November 2026, 09:05".
func dateTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format("2 January 2006, 15:04")
}

// readableDate turns an ISO date (YYYY, YYYY-MM or YYYY-MM-DD, as FHIR dates are) into "2 July 1990", "July
// 1990" or "1990", and a FHIR dateTime into its day in the UK ("12 March 2025"); anything else is shown as
// it is.
func readableDate(s string, loc *time.Location) string {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.In(loc).Format("2 January 2006")
	}
	for _, f := range []struct{ in, out string }{{"2006-01-02", "2 January 2006"}, {"2006-01", "January 2006"}, {"2006", "2006"}} {
		if t, err := time.Parse(f.in, s); err == nil {
			return t.Format(f.out)
		}
	}
	return s
}

// nonEmpty joins the non-empty parts with sep.
func nonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// waited is how long d is in words a person uses: "less than a minute", "5 minutes", "3 hours", "4 days".
func waited(d time.Duration) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	}
	return plural(int(d/(24*time.Hour)), "day")
}

// priorityRank orders FHIR request priorities most pressing first (stat, asap, urgent, then routine and
// anything else).
func priorityRank(p string) int {
	switch p {
	case "stat":
		return 0
	case "asap":
		return 1
	case "urgent":
		return 2
	}
	return 3
}

// byUrgency orders two list items: more pressing priority first, then overdue first; equal items keep their
// order (the sort is stable: newest change first).
func byUrgency(a, b inboxItem) int {
	return cmp.Or(cmp.Compare(priorityRank(a.Priority), priorityRank(b.Priority)), compareBool(b.Overdue, a.Overdue))
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

var (
	phoneChars = regexp.MustCompile(`^\+?[0-9 ()-]{6,20}$`)
	emailShape = regexp.MustCompile(`^[^\s@<>"'\x60(),;:\\\[\]]+@[^\s@<>"'\x60(),;:\\\[\]]+\.[^\s@<>"'\x60(),;:\\\[\]]+$`)
)

// telLink is a tel: URL for a phone number as a GP system wrote it ("01373 455000", "+44 7700 900123"), or ""
// when it does not look like one (it is then shown as text only).
func telLink(phone string) template.URL {
	p := strings.TrimSpace(phone)
	if !phoneChars.MatchString(p) {
		return ""
	}
	digits := strings.Map(func(r rune) rune {
		if r == '+' || (r >= '0' && r <= '9') {
			return r
		}
		return -1
	}, p)
	return template.URL("tel:" + digits) // only + and digits: safe in an href
}

// mailtoLink is a mailto: URL for an email address, or "" when it does not look like one.
func mailtoLink(email string) template.URL {
	e := strings.TrimSpace(email)
	if !emailShape.MatchString(e) {
		return ""
	}
	return template.URL((&url.URL{Scheme: "mailto", Opaque: url.PathEscape(e)}).String())
}

// inboxItem is one referral in the list.
type inboxItem struct {
	ID, Name, Reasons string
	Status            mapping.TaskStatus
	Priority          string
	Overdue           bool
	Referred          string // when, UK time
	Waited            string // how long ago it was referred
	Waiting           bool   // still waits for the service's answer (new or seen)
	Deadline          string // the deadline ladder's rung while it waits ("Reminder sent", "Escalated"), else ""
}

// listItem is a referral as the list shows it at now.
func listItem(rec mapping.Record, bs mapping.BusinessStatus, now time.Time, loc *time.Location) inboxItem {
	name := rec.Patient.Called()
	if name == "" {
		name = "Referral " + rec.ID
	}
	return inboxItem{ID: rec.ID, Name: name, Reasons: strings.Join(rec.Reasons, "; "), Status: rec.Status,
		Priority: rec.Priority, Overdue: bs == mapping.BusinessOverdue, Referred: dateTime(rec.CreatedAt, loc),
		Waited: waited(now.Sub(rec.CreatedAt)), Waiting: awaitsAnswer(rec.Status), Deadline: deadlineTag(rec)}
}

// deadlineTag is the list's tag for a referral on the deadline ladder that still waits for an answer.
func deadlineTag(rec mapping.Record) string {
	if !awaitsAnswer(rec.Status) {
		return ""
	}
	switch rec.DeadlineStep {
	case mapping.DeadlineReminded:
		return "Reminder sent"
	case mapping.DeadlineEscalated:
		return "Escalated"
	case mapping.DeadlineNone, mapping.DeadlineDeclined:
	}
	return ""
}

// awaitsAnswer reports whether a referral in status st still waits for the service to say yes or no.
func awaitsAnswer(st mapping.TaskStatus) bool {
	return st == mapping.StatusRequested || st == mapping.StatusReceived
}

// priorityLabel is a FHIR priority as a volunteer reads it ("" for routine).
func priorityLabel(p string) string {
	switch p {
	case "stat", "asap":
		return "Urgent: as soon as possible"
	case "urgent":
		return "Urgent"
	}
	return ""
}

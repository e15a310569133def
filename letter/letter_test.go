package letter_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/letter"
	"github.com/socialrx/socialrx/letter/lettertest"
	"github.com/socialrx/socialrx/mapping"
)

var t0 = time.Date(2026, 11, 3, 9, 30, 0, 0, time.UTC)

func uk(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// ints is a measure's answers.
func ints(vs ...int) []*int {
	out := make([]*int, len(vs))
	for i := range vs {
		out[i] = &vs[i]
	}
	return out
}

// story is a referral's versions: referred, accepted (with baselines), in progress, follow-ups recorded,
// then closed as to with reason and outcome.
func story(t *testing.T, name string, to mapping.TaskStatus, reason string, outcome *mapping.Outcome) []mapping.Referral {
	t.Helper()
	r := mapping.Referral{Record: mapping.Record{
		ID: "ref-1", TaskID: "task-1", ServiceRequestID: "sr-1", Status: mapping.StatusRequested, Version: 1,
		Service: mapping.ServiceRef{ID: "frome-walks", Name: "Frome Walking for Health"}, ReferredAt: "2026-11-02T10:00:00Z",
		CreatedAt: t0, UpdatedAt: t0, Needs: "Wants to get out of the house and meet people",
		Patient:  mapping.Person{Name: name, NHSNumber: "9999542557", BirthDate: "1948-03-14"},
		Referrer: mapping.Referrer{Name: "Dr Asha Patel", Role: "GP", Organisation: "Frome Medical Practice", ODSCode: "A81001"},
	}}
	out := []mapping.Referral{r}
	next := func(d time.Duration, f func(*mapping.Referral)) {
		r.Record.Version++
		r.Record.UpdatedAt = r.Record.UpdatedAt.Add(d)
		f(&r)
		out = append(out, r)
	}
	add := func(in mapping.MeasureInput) func(*mapping.Referral) {
		return func(r *mapping.Referral) {
			var err error
			if *r, _, err = mapping.AddMeasure(*r, in, "Frome Walking for Health", r.Record.UpdatedAt); err != nil {
				t.Fatal(err)
			}
		}
	}
	next(24*time.Hour, func(r *mapping.Referral) { r.Record.Status = mapping.StatusAccepted })
	if to == mapping.StatusRejected {
		next(time.Hour, func(r *mapping.Referral) { r.Record.Status, r.Record.StatusReason = to, reason })
		return out
	}
	next(time.Hour, add(mapping.MeasureInput{Instrument: mapping.InstrumentSWEMWBS, Timing: mapping.TimingBaseline, Date: "2026-11-04", Items: ints(3, 3, 3, 3, 3, 4, 4)}))
	next(time.Hour, add(mapping.MeasureInput{Instrument: mapping.InstrumentONS4, Timing: mapping.TimingBaseline, Date: "2026-11-04", Items: ints(4, 5, 3, 8)}))
	next(24*time.Hour, func(r *mapping.Referral) { r.Record.Status = mapping.StatusInProgress })
	next(30*24*time.Hour, add(mapping.MeasureInput{Instrument: mapping.InstrumentSWEMWBS, Timing: mapping.TimingFollowUp, Date: "2026-12-05", Items: ints(4, 4, 4, 4, 4, 4, 4)}))
	next(time.Hour, add(mapping.MeasureInput{Instrument: mapping.InstrumentONS4, Timing: mapping.TimingFollowUp, Date: "2026-12-05", Items: ints(7, 8, 6, 3)}))
	next(time.Hour, func(r *mapping.Referral) {
		r.Record.Status, r.Record.StatusReason, r.Record.Outcome = to, reason, outcome
	})
	return out
}

func render(t *testing.T, versions []mapping.Referral, contact string) (letter.Letter, []byte, string) {
	t.Helper()
	l := letter.Compose(versions, contact, uk(t))
	pdf, err := letter.Render(l)
	if err != nil {
		t.Fatal(err)
	}
	text, pages := lettertest.Text(t, pdf)
	if pages != 1 {
		t.Errorf("the letter has %d pages, want one:\n%s", pages, text)
	}
	return l, pdf, text
}

func wantAll(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("the letter's text lacks %q:\n%s", w, text)
		}
	}
}

// TestCompletedLetter: the PDF's text, as pdftotext reads it, names the person, the referrer, the group and
// its contact, tells the story, gives each measure before and after with the change, and the next steps.
func TestCompletedLetter(t *testing.T) {
	t.Parallel()
	versions := story(t, "Margaret Anne Ellis", mapping.StatusCompleted, "",
		&mapping.Outcome{Text: "Walks every week with the Tuesday group", Code: &mapping.Concept{Code: "engaged", Display: "Engaged with the service"}})
	l, pdf, text := render(t, versions, "01373 465000, walks@frome-walks.example.org")
	wantAll(t, text,
		"Social prescribing: message back to GP and referrer",
		"Person Margaret Anne Ellis", "NHS number 9999542557", "Date of birth 1948-03-14",
		"Dr Asha Patel, GP, Frome Medical Practice (A81001)", "Group Frome Walking for Health", "Referred on 2026-11-02",
		"2026-11-03 referred", "2026-11-04 accepted", "2026-11-05 in progress", "completed",
		"Outcome Engaged with the service: Walks every week with the Tuesday group",
		"SWEMWBS", "Before (baseline) 23 (metric 20.73) on 2026-11-04", "After (follow-up) 28 (metric 25.03) on 2026-12-05", "Change +5 (metric +4.30)",
		"ONS4", "life satisfaction 4, worthwhile 5, happiness 3, anxiety 8 on 2026-11-04",
		"life satisfaction 7, worthwhile 8, happiness 6, anxiety 3 on 2026-12-05",
		"life satisfaction +3, worthwhile +3, happiness +3, anxiety -5",
		"Next steps The group has finished its support",
		"Contact 01373 465000, walks@frome-walks.example.org", "Reference Task/task-1, ServiceRequest/sr-1")
	if strings.Contains(text, "Episode code") {
		t.Errorf("a completed referral's letter carries an episode code:\n%s", text)
	}
	if l.ID != "task-1-letter" || !l.Issued.Equal(versions[len(versions)-1].Record.UpdatedAt) {
		t.Errorf("letter id %q issued %v", l.ID, l.Issued)
	}
	// Deterministic: the same versions render the same bytes (no clock inside).
	_, again, _ := render(t, versions, "01373 465000, walks@frome-walks.example.org")
	if !bytes.Equal(pdf, again) {
		t.Error("the same letter rendered twice differs")
	}
	if !bytes.Contains(pdf, []byte(l.Issued.Format("D:20060102150405"))) || !strings.HasPrefix(l.Issued.Format(time.DateOnly), "2026-12-05") {
		t.Error("the PDF's creation date is not the closing version's day")
	}
}

// TestDeclinedLetter: a declined referral's letter gives the reason, the declined code and what the GP may do.
func TestDeclinedLetter(t *testing.T) {
	t.Parallel()
	_, _, text := render(t, story(t, "Peggy Ellis", mapping.StatusRejected, "The person chose not to join", nil), "")
	wantAll(t, text, "Closed as declined", "Reason The person chose not to join", "Episode code 871711000000103 Social prescribing declined",
		"No outcome measures were recorded.", "The referral was declined", "Contact none recorded")
}

// TestClosingVersion: the letter is made from the version that closed the referral; later versions (a
// follow-up recorded after the close) do not change it.
func TestClosingVersion(t *testing.T) {
	t.Parallel()
	versions := story(t, "Margaret Ellis", mapping.StatusFailed, "Moved out of the area", nil)
	i, ok := letter.Closing(versions)
	if !ok || i != len(versions)-1 {
		t.Fatalf("closing version %d %v, want the last", i, ok)
	}
	if _, ok := letter.Closing(versions[:len(versions)-1]); ok {
		t.Fatal("an open referral has a closing version")
	}
	_, _, text := render(t, versions[:i+1], "")
	wantAll(t, text, "Closed as failed", "Reason Moved out of the area", "Please review with the person")
}

// TestOddText: names and texts in any script, control characters, invalid UTF-8 and very long texts never
// fail or leave one page; what cp1252 has stays, accented letters it lacks keep their base letter, the
// rest becomes "?".
func TestOddText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("A very long outcome text that goes on. ", 200)
	versions := story(t, "Zoë Ćwik-Łukasz \x00\x07名前 \xff O'Brien <b>&amp;", mapping.StatusCompleted, "", &mapping.Outcome{Text: long})
	for i := 0; i < 30; i++ { // many moves: the latest steps are kept
		v := versions[len(versions)-1]
		v.Record.Status = []mapping.TaskStatus{mapping.StatusOnHold, mapping.StatusInProgress}[i%2]
		v.Record.StatusReason = strings.Repeat("paused again ", 60)
		v.Record.UpdatedAt = v.Record.UpdatedAt.Add(time.Hour)
		versions = append(versions[:len(versions)-1], v, versions[len(versions)-1])
	}
	l, _, text := render(t, versions, "☎ 01373 465000")
	wantAll(t, text, "Zoë Cwik-?ukasz ?? O'Brien <b>&amp;", "(shortened; the full text is on the Task)", "? 01373 465000")
	if len(l.Steps) != 10 {
		t.Errorf("%d steps, want the latest 10", len(l.Steps))
	}
}

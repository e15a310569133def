package mapping

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// swemwbsMeasure and ons4Measure build a baseline (n 1) or follow-up measure.
func figureMeasure(i Instrument, timing Timing, date string, items ...int) Measure {
	m := Measure{Instrument: i, Timing: timing, Date: date, Items: items}
	total := 0
	for _, v := range items {
		total += v
	}
	if i.Scored() {
		m.Score = &total
	}
	if i == InstrumentSWEMWBS {
		metric, _ := SWEMWBSMetric(total)
		m.MetricScore = &metric
	}
	return m
}

// swemwbsOf is a SWEMWBS answer set whose raw score is raw (7-35).
func swemwbsOf(raw int) []int {
	items := []int{1, 1, 1, 1, 1, 1, 1}
	for i := 0; raw > 7; raw-- {
		if items[i] == 5 {
			i++
		}
		items[i]++
	}
	return items
}

// TestFiguresHandComputed checks the monthly figures against a fixture computed by hand (the comments give
// each referral's contribution), suppression included.
func TestFiguresHandComputed(t *testing.T) {
	t.Parallel()
	uk, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	nov := func(d int) time.Time { return time.Date(2026, 11, d, 9, 0, 0, 0, time.UTC) }
	ref := func(received time.Time, contact, done time.Duration, sw [2]int, ons [2][]int) ReferralFacts {
		f := ReferralFacts{Received: received, FirstContact: received.Add(contact), Accepted: true}
		if done > 0 {
			f.Completed = received.Add(done)
		}
		f.Measures = []Measure{
			figureMeasure(InstrumentSWEMWBS, TimingBaseline, "2026-11-01", swemwbsOf(sw[0])...),
			figureMeasure(InstrumentONS4, TimingBaseline, "2026-11-01", ons[0]...),
			figureMeasure(InstrumentSWEMWBS, TimingFollowUp, "2026-12-01", swemwbsOf(sw[1])...),
			figureMeasure(InstrumentONS4, TimingFollowUp, "2026-12-01", ons[1]...),
		}
		return f
	}
	facts := []ReferralFacts{
		// November: 7 received.
		ref(nov(2), 1*day, 10*day, [2]int{21, 28}, [2][]int{{4, 5, 3, 8}, {7, 8, 7, 3}}),  // SWEMWBS 19.25 → 25.03: +5.78; ONS4 +3 +3 +4 -5
		ref(nov(5), 2*day, 20*day, [2]int{14, 21}, [2][]int{{5, 5, 5, 5}, {6, 6, 6, 4}}),  // 15.32 → 19.25: +3.93; +1 +1 +1 -1
		ref(nov(10), 3*day, 30*day, [2]int{23, 23}, [2][]int{{2, 2, 2, 9}, {4, 5, 4, 6}}), // 20.73 → 20.73: 0; +2 +3 +2 -3
		ref(nov(11), 4*day, 40*day, [2]int{7, 14}, [2][]int{{3, 3, 3, 7}, {3, 3, 3, 7}}),  // 7.00 → 15.32: +8.32; 0 0 0 0
		ref(nov(15), 5*day, 0, [2]int{35, 34}, [2][]int{{8, 8, 8, 2}, {9, 9, 9, 1}}),      // 35.00 → 32.55: -2.45; +1 +1 +1 -1 (not completed)
		{Received: nov(20), FirstContact: nov(20).Add(12 * time.Hour), Declined: true, DeclineReason: "Group full"},
		{Received: nov(25)}, // never answered
		// October (UK time): 31 October 23:30 UTC is still October in London (GMT); six declined, five for one reason.
		{Received: time.Date(2026, 10, 31, 23, 30, 0, 0, time.UTC), FirstContact: time.Date(2026, 11, 1, 23, 30, 0, 0, time.UTC), Declined: true, DeclineReason: "Group full"},
		{Received: time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC), FirstContact: time.Date(2026, 10, 2, 9, 0, 0, 0, time.UTC), Declined: true, DeclineReason: "Group full"},
		{Received: time.Date(2026, 10, 2, 9, 0, 0, 0, time.UTC), FirstContact: time.Date(2026, 10, 3, 9, 0, 0, 0, time.UTC), Declined: true, DeclineReason: "Group full"},
		{Received: time.Date(2026, 10, 3, 9, 0, 0, 0, time.UTC), FirstContact: time.Date(2026, 10, 4, 9, 0, 0, 0, time.UTC), Declined: true, DeclineReason: "Group full"},
		{Received: time.Date(2026, 10, 4, 9, 0, 0, 0, time.UTC), FirstContact: time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC), Declined: true, DeclineReason: "Group full"},
		{Received: time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC), FirstContact: time.Date(2026, 10, 6, 9, 0, 0, 0, time.UTC), Declined: true, DeclineReason: "Moved away, Mrs Example"},
		// December (UK): 1 December 00:30 UK; and 30 November 23:59 UTC is still November.
		{Received: time.Date(2026, 12, 1, 0, 30, 0, 0, uk)},
		{Received: time.Date(2026, 12, 2, 9, 0, 0, 0, uk)},
		// September: outside the months asked for.
		{Received: time.Date(2026, 9, 2, 9, 0, 0, 0, uk), Accepted: true},
	}
	figs, err := Figures(facts, "2026-10", "2026-12", uk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(figs)
	if err != nil {
		t.Fatal(err)
	}
	want := `[` +
		`{"month":"2026-10","received":6,"accepted":0,"declined":6,"declined_by_reason":[{"reason":"Group full","count":5},{"reason":"other reasons","count":"<5"}],"completed":0,` +
		`"median_days_to_first_contact":{"n":6,"value":1},"median_days_to_completion":{"n":0,"value":null},"with_baseline":0,"with_follow_up":0,` +
		`"percent_with_baseline":null,"percent_with_follow_up":null,"swemwbs_metric_change":{"n":0,"value":null},` +
		`"ons4_change":{"anxiety":{"n":0,"value":null},"happiness":{"n":0,"value":null},"life-satisfaction":{"n":0,"value":null},"worthwhile":{"n":0,"value":null}}},` +
		`{"month":"2026-11","received":7,"accepted":5,"declined":"<5","declined_by_reason":[{"reason":"other reasons","count":"<5"}],"completed":"<5",` +
		`"median_days_to_first_contact":{"n":6,"value":2.5},"median_days_to_completion":{"n":"<5","value":null},"with_baseline":5,"with_follow_up":5,` +
		`"percent_with_baseline":100,"percent_with_follow_up":100,"swemwbs_metric_change":{"n":5,"value":3.1},` +
		`"ons4_change":{"anxiety":{"n":5,"value":-2},"happiness":{"n":5,"value":1.6},"life-satisfaction":{"n":5,"value":1.4},"worthwhile":{"n":5,"value":1.6}}},` +
		`{"month":"2026-12","received":"<5","accepted":0,"declined":0,"declined_by_reason":null,"completed":0,` +
		`"median_days_to_first_contact":{"n":0,"value":null},"median_days_to_completion":{"n":0,"value":null},"with_baseline":0,"with_follow_up":0,` +
		`"percent_with_baseline":null,"percent_with_follow_up":null,"swemwbs_metric_change":{"n":0,"value":null},` +
		`"ons4_change":{"anxiety":{"n":0,"value":null},"happiness":{"n":0,"value":null},"life-satisfaction":{"n":0,"value":null},"worthwhile":{"n":0,"value":null}}}]`
	if got := strings.ReplaceAll(string(got), `\u003c`, "<"); got != want {
		t.Errorf("figures:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(string(got), "Mrs Example") {
		t.Error("a one-off decline reason (free text) shows in the figures")
	}
	csv := FiguresCSV(figs)
	if len(csv) != 4 || csv[2][0] != "2026-11" || csv[2][1] != "7" || csv[2][3] != "<5" || csv[2][5] != "<5" ||
		csv[2][6] != "2.5" || csv[2][7] != "" || csv[2][13] != "3.1" || csv[3][1] != "<5" || csv[1][4] != "Group full: 5; other reasons: <5" {
		t.Errorf("CSV: %q", csv)
	}
	for _, bad := range [][2]string{{"2026-13", "2026-12"}, {"2026-11", "2026-10"}, {"x", "2026-10"}, {"2020-01", "2026-01"}} {
		if _, err := Figures(nil, bad[0], bad[1], uk); err == nil {
			t.Errorf("months %v accepted", bad)
		}
	}
}

// TestFactsOf derives a referral's facts from its versions.
func TestFactsOf(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	v := func(st TaskStatus, after time.Duration, reason string) Referral {
		return Referral{Record: Record{Status: st, CreatedAt: t0, UpdatedAt: t0.Add(after), StatusReason: reason}}
	}
	f := FactsOf([]Referral{v(StatusRequested, 0, ""), v(StatusRequested, time.Hour, ""), v(StatusReceived, 2*time.Hour, ""),
		v(StatusAccepted, 3*time.Hour, ""), v(StatusInProgress, 4*time.Hour, ""), v(StatusCompleted, 5*time.Hour, "")})
	if !f.Received.Equal(t0) || !f.FirstContact.Equal(t0.Add(2*time.Hour)) || !f.Accepted || f.Declined || !f.Completed.Equal(t0.Add(5*time.Hour)) {
		t.Errorf("completed: %+v", f)
	}
	f = FactsOf([]Referral{v(StatusRequested, 0, ""), v(StatusRejected, time.Hour, " Group full ")})
	if !f.Declined || f.DeclineReason != "Group full" || f.Accepted || !f.FirstContact.Equal(t0.Add(time.Hour)) {
		t.Errorf("declined: %+v", f)
	}
	f = FactsOf([]Referral{v(StatusRequested, 0, ""), v(StatusCancelled, time.Hour, "GP withdrew")})
	if !f.FirstContact.IsZero() || f.Declined || f.Accepted {
		t.Errorf("cancelled: %+v", f)
	}
}

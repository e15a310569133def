package mapping

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
)

func ints(vs ...int) []*int {
	out := make([]*int, len(vs))
	for i := range vs {
		v := vs[i]
		out[i] = &v
	}
	return out
}

var measureNow = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// TestCheckMeasure walks every out-of-range and missing-item case: each is refused with an issue naming the
// field and saying what is wrong; good measures pass.
func TestCheckMeasure(t *testing.T) {
	t.Parallel()
	missing := ints(4, 4, 4, 4, 4, 4, 4)
	missing[3] = nil
	tests := []struct {
		name   string
		in     MeasureInput
		fields []string // every issue's field, in order; nil: valid
		words  []string // words the messages must contain
	}{
		{name: "ons4 ok", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(0, 10, 5, 3)}},
		{name: "swemwbs ok", in: MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingFollowUp, Date: "2026-11-21", Items: ints(1, 2, 3, 4, 5, 5, 5)}},
		{name: "wemwbs ok", in: MeasureInput{Instrument: InstrumentWEMWBS, Timing: TimingBaseline, Date: "2026-01-02", Items: ints(1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4)}},
		{name: "unknown instrument", in: MeasureInput{Instrument: "phq9", Timing: TimingBaseline, Date: "2026-11-20"},
			fields: []string{"instrument"}, words: []string{`"phq9"`, "ons4, swemwbs, wemwbs"}},
		{name: "no instrument", in: MeasureInput{Timing: TimingBaseline, Date: "2026-11-20"}, fields: []string{"instrument"}},
		{name: "unknown timing", in: MeasureInput{Instrument: InstrumentONS4, Timing: "midway", Date: "2026-11-20", Items: ints(1, 1, 1, 1)},
			fields: []string{"timing"}, words: []string{"baseline, follow-up"}},
		{name: "no date", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Items: ints(1, 1, 1, 1)},
			fields: []string{"date"}, words: []string{"required"}},
		{name: "not a date", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-02-30", Items: ints(1, 1, 1, 1)},
			fields: []string{"date"}, words: []string{"YYYY-MM-DD"}},
		{name: "date with a time", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20T10:00:00Z", Items: ints(1, 1, 1, 1)},
			fields: []string{"date"}},
		{name: "future date", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-22", Items: ints(1, 1, 1, 1)},
			fields: []string{"date"}, words: []string{"future"}},
		{name: "ancient date", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "1999-12-31", Items: ints(1, 1, 1, 1)},
			fields: []string{"date"}},
		{name: "ons4 above 10", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(11, 5, 5, 5)},
			fields: []string{"items[0]"}, words: []string{"item 1", "is 11", "from 0 to 10", "satisfied"}},
		{name: "ons4 below 0", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(5, 5, 5, -1)},
			fields: []string{"items[3]"}, words: []string{"item 4", "anxious"}},
		{name: "ons4 three answers", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(5, 5, 5)},
			fields: []string{"items[3]"}, words: []string{"not answered"}},
		{name: "ons4 no answers", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20"},
			fields: []string{"items[0]", "items[1]", "items[2]", "items[3]"}},
		{name: "ons4 five answers", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(5, 5, 5, 5, 5)},
			fields: []string{"items"}, words: []string{"has 4 items", "5 answers"}},
		{name: "swemwbs 0", in: MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(0, 1, 1, 1, 1, 1, 1)},
			fields: []string{"items[0]"}, words: []string{"from 1 to 5"}},
		{name: "swemwbs 6", in: MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(1, 1, 1, 1, 1, 1, 6)},
			fields: []string{"items[6]"}},
		{name: "swemwbs missing item", in: MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingBaseline, Date: "2026-11-20", Items: missing},
			fields: []string{"items[3]"}, words: []string{"item 4", "dealing with problems"}},
		{name: "wemwbs 13 items", in: MeasureInput{Instrument: InstrumentWEMWBS, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3)},
			fields: []string{"items[13]"}},
		{name: "wemwbs 70 is 5 everywhere, a 7 is not", in: MeasureInput{Instrument: InstrumentWEMWBS, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7)},
			fields: []string{"items[13]"}},
		{name: "recorder too long", in: MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-20", Items: ints(1, 1, 1, 1), Recorder: strings.Repeat("x", 201)},
			fields: []string{"recorder"}},
		{name: "everything wrong at once", in: MeasureInput{Instrument: InstrumentONS4, Timing: "x", Date: "x", Items: ints(99, 5, 5)},
			fields: []string{"timing", "date", "items[0]", "items[3]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckMeasure(tc.in, measureNow)
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *fault.Error
			if !errors.As(err, &fe) || fe.Kind != fault.Invalid {
				t.Fatalf("want a fault.Invalid error, got %v", err)
			}
			var fields []string
			var msgs []string
			for _, is := range fe.Issues {
				if is.Code != CodeInvalidMeasure || is.Message == "" {
					t.Errorf("issue %+v: want code %s and a message", is, CodeInvalidMeasure)
				}
				fields = append(fields, is.Field)
				msgs = append(msgs, is.Message)
			}
			if !slices.Equal(fields, tc.fields) {
				t.Errorf("fields %q, want %q (%s)", fields, tc.fields, strings.Join(msgs, "; "))
			}
			for _, w := range tc.words {
				if !strings.Contains(strings.Join(msgs, "; "), w) {
					t.Errorf("messages %q do not say %q", msgs, w)
				}
			}
		})
	}
}

// TestSWEMWBSMetric pins the conversion to the published table's ends and some rows, and refuses raw scores
// outside 7–35.
func TestSWEMWBSMetric(t *testing.T) {
	t.Parallel()
	want := map[int]float64{7: 7.00, 8: 9.51, 14: 15.32, 21: 19.25, 23: 20.73, 28: 25.03, 34: 32.55, 35: 35.00}
	for raw, metric := range want {
		if got, ok := SWEMWBSMetric(raw); !ok || got != metric {
			t.Errorf("SWEMWBSMetric(%d) = %v, %v; want %v", raw, got, ok, metric)
		}
	}
	prev := 0.0
	for raw := 7; raw <= 35; raw++ {
		got, ok := SWEMWBSMetric(raw)
		if !ok || got <= prev {
			t.Errorf("SWEMWBSMetric(%d) = %v, %v: the table rises strictly", raw, got, ok)
		}
		prev = got
	}
	for _, raw := range []int{0, 6, 36} {
		if _, ok := SWEMWBSMetric(raw); ok {
			t.Errorf("SWEMWBSMetric(%d) converted a raw score outside 7-35", raw)
		}
	}
}

// TestInstrumentsAndTimings walks every instrument and timing value.
func TestInstrumentsAndTimings(t *testing.T) {
	t.Parallel()
	for _, i := range AllInstruments() {
		lo, hi := i.ItemRange()
		if !i.Valid() || i.Name() == "" || len(i.Items()) == 0 || len(i.ItemKeys()) != len(i.Items()) || lo >= hi {
			t.Errorf("instrument %q is incomplete", i)
		}
	}
	if n := len(InstrumentSWEMWBS.Items()); n != 7 {
		t.Errorf("SWEMWBS has %d items, want 7", n)
	}
	if n := len(InstrumentWEMWBS.Items()); n != 14 {
		t.Errorf("WEMWBS has %d items, want 14", n)
	}
	for _, tm := range AllTimings() {
		if !tm.Valid() {
			t.Errorf("timing %q invalid", tm)
		}
	}
	if Instrument("").Valid() || Timing("").Valid() {
		t.Error("zero values are valid")
	}
}

// TestAddMeasure: the referral's state and its other measures decide; scores are computed; the referral's
// other measures are never changed.
func TestAddMeasure(t *testing.T) {
	t.Parallel()
	base := Referral{Record: Record{Status: StatusInProgress, CreatedAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}}
	sw := MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingBaseline, Date: "2026-11-03", Items: ints(3, 3, 3, 3, 3, 4, 4)}
	r1, m1, err := AddMeasure(base, sw, "Frome Walking for Health", measureNow)
	if err != nil {
		t.Fatal(err)
	}
	if m1.N != 1 || *m1.Score != 23 || *m1.MetricScore != 20.73 || m1.RecordedBy != "Frome Walking for Health" || !m1.RecordedAt.Equal(measureNow) {
		t.Fatalf("measure %+v", m1)
	}
	if len(base.Record.Measures) != 0 || len(r1.Record.Measures) != 1 {
		t.Fatal("AddMeasure changed its input")
	}
	ons := MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-11-03", Items: ints(4, 5, 6, 7)}
	r2, m2, err := AddMeasure(r1, ons, "x", measureNow)
	if err != nil || m2.N != 2 || m2.Score != nil || m2.MetricScore != nil {
		t.Fatalf("ons4: %+v %v", m2, err)
	}
	follow := sw
	follow.Timing, follow.Date, follow.Items = TimingFollowUp, "2026-11-19", ints(4, 4, 4, 4, 4, 4, 4)
	r3, m3, err := AddMeasure(r2, follow, "x", measureNow)
	if err != nil || m3.N != 3 || *m3.Score != 28 || *m3.MetricScore != 25.03 {
		t.Fatalf("follow-up: %+v %v", m3, err)
	}
	if got := r3.LatestFollowUp(InstrumentSWEMWBS); got == nil || got.N != 3 {
		t.Fatalf("LatestFollowUp: %+v", got)
	}
	wem := MeasureInput{Instrument: InstrumentWEMWBS, Timing: TimingBaseline, Date: "2026-11-03", Items: ints(5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5)}
	if _, m, err := AddMeasure(r3, wem, "x", measureNow); err != nil || *m.Score != 70 || m.MetricScore != nil {
		t.Fatalf("wemwbs: %+v %v", m, err)
	}

	refused := []struct {
		name  string
		r     Referral
		in    MeasureInput
		field string
	}{
		{"second baseline", r3, sw, FieldTiming},
		{"follow-up without baseline", r3, MeasureInput{Instrument: InstrumentWEMWBS, Timing: TimingFollowUp, Date: "2026-11-03", Items: wem.Items}, FieldTiming},
		{"follow-up before its baseline", r3, MeasureInput{Instrument: InstrumentSWEMWBS, Timing: TimingFollowUp, Date: "2026-11-02", Items: sw.Items}, FieldDate},
		{"before the referral", base, MeasureInput{Instrument: InstrumentONS4, Timing: TimingBaseline, Date: "2026-10-31", Items: ons.Items}, FieldDate},
	}
	for _, st := range []TaskStatus{StatusRequested, StatusReceived, StatusRejected, StatusCancelled, StatusEnteredInError} {
		r := base
		r.Record.Status = st
		refused = append(refused, struct {
			name  string
			r     Referral
			in    MeasureInput
			field string
		}{"status " + string(st), r, sw, FieldStatus})
	}
	for _, tc := range refused {
		_, _, err := AddMeasure(tc.r, tc.in, "x", measureNow)
		var fe *fault.Error
		if !errors.As(err, &fe) || fe.Kind != fault.Rule || fe.Issues[0].Code != CodeMeasureNotAllowed || fe.Issues[0].Field != tc.field {
			t.Errorf("%s: got %v, want a rule error on %s", tc.name, err, tc.field)
		}
	}
	for _, st := range AllStatuses() {
		r := base
		r.Record.Status = st
		_, _, err := AddMeasure(r, sw, "x", measureNow)
		if (err == nil) != measureAllowed(st) {
			t.Errorf("status %s: err %v", st, err)
		}
	}
	full := base
	for range MaxMeasures {
		full.Record.Measures = append(full.Record.Measures, Measure{Instrument: InstrumentONS4, Timing: TimingFollowUp})
	}
	if _, _, err := AddMeasure(full, ons, "x", measureNow); fault.KindOf(err) != fault.Rule {
		t.Errorf("measure %d: %v", MaxMeasures+1, err)
	}
}

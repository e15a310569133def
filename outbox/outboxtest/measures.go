package outboxtest

import (
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// testMeasuresKept: outcome measures (issue 14) are kept with their referral: a measure added by an update is
// read back exactly (answers, scores, who and when), the version before it keeps none, a later update keeps
// them, and a refused measure (the update's error) writes nothing.
func testMeasuresKept(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	create(t, s, intake(1))
	accept := func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusAccepted
		return next, nil, nil
	}
	if _, err := s.UpdateReferral(ctx, "ref-001", 1, at(10*time.Second), accept); err != nil {
		t.Fatal(err)
	}
	score, metric := 23, 20.73
	item := func(vs ...int) []*int {
		out := make([]*int, len(vs))
		for i := range vs {
			out[i] = &vs[i]
		}
		return out
	}
	add := func(in mapping.MeasureInput, now time.Time) outbox.ReferralUpdate {
		return func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next, _, err := mapping.AddMeasure(cur.Referral, in, "Frome Walking for Health", now)
			return next, nil, err
		}
	}
	base := mapping.MeasureInput{Instrument: mapping.InstrumentSWEMWBS, Timing: mapping.TimingBaseline,
		Date: at(0).Format(time.DateOnly), Items: item(3, 3, 3, 3, 3, 4, 4), Recorder: "Sam"}
	v3, err := s.UpdateReferral(ctx, "task-001", 2, at(20*time.Second), add(base, at(20*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	want := mapping.Measure{N: 1, Instrument: mapping.InstrumentSWEMWBS, Timing: mapping.TimingBaseline, Date: base.Date,
		Items: []int{3, 3, 3, 3, 3, 4, 4}, Score: &score, MetricScore: &metric, RecordedBy: "Frome Walking for Health",
		Recorder: "Sam", RecordedAt: at(20 * time.Second)}
	diff(t, "measures as written", v3.Record.Measures, []mapping.Measure{want})
	diff(t, "measures read back", get(t, s, "ref-001").Record.Measures, []mapping.Measure{want})

	// A second baseline is refused by the update: nothing is written.
	if _, err := s.UpdateReferral(ctx, "ref-001", 0, at(30*time.Second), add(base, at(30*time.Second))); err == nil {
		t.Fatal("a second baseline was written")
	}
	if got := get(t, s, "ref-001"); got.Record.Version != 3 || len(got.Record.Measures) != 1 {
		t.Fatalf("after a refused measure: version %d, %d measures", got.Record.Version, len(got.Record.Measures))
	}
	// A later change keeps the measures; the version before them has none.
	v4, err := s.UpdateReferral(ctx, "ref-001", 0, at(40*time.Second), func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		next := cur.Referral
		next.Record.Status = mapping.StatusInProgress
		return next, nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "measures after a status change", v4.Record.Measures, []mapping.Measure{want})
	old, err := s.ReferralVersion(ctx, "ref-001", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.Record.Measures) != 0 {
		t.Errorf("version 2 has measures: %+v", old.Record.Measures)
	}
	kept, err := s.ReferralVersion(ctx, "ref-001", 3)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "version 3's measures", kept.Record.Measures, []mapping.Measure{want})
}

package mapping

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// Outcome measures (issue 14): wellbeing questionnaires a community group may ask the person at a baseline
// and at follow-ups. None is ever required: a group that does not collect measures never records one.
//
//   - ONS4: the Office for National Statistics' four personal wellbeing questions, each answered 0–10 and
//     reported separately (never summed): life satisfaction, worthwhile, happiness, anxiety (for anxiety a
//     lower answer is better).
//   - SWEMWBS: the Short Warwick-Edinburgh Mental Wellbeing Scale, 7 items answered 1–5; the raw score is
//     their sum (7–35), converted to the metric score with the published conversion table only
//     (SWEMWBSMetric).
//   - WEMWBS: the 14-item scale (optional), items 1–5, score 14–70 (the sum; no conversion).

// Instrument is an outcome measure's questionnaire. The zero value is invalid.
type Instrument string

// Instruments.
const (
	InstrumentONS4    Instrument = "ons4"
	InstrumentSWEMWBS Instrument = "swemwbs"
	InstrumentWEMWBS  Instrument = "wemwbs"
)

// AllInstruments lists every instrument.
func AllInstruments() []Instrument {
	return []Instrument{InstrumentONS4, InstrumentSWEMWBS, InstrumentWEMWBS}
}

// Valid reports whether i is an instrument.
func (i Instrument) Valid() bool {
	switch i {
	case InstrumentONS4, InstrumentSWEMWBS, InstrumentWEMWBS:
		return true
	}
	return false
}

// Name is what a person reads for the instrument.
func (i Instrument) Name() string {
	switch i {
	case InstrumentONS4:
		return "ONS4 personal wellbeing"
	case InstrumentSWEMWBS:
		return "SWEMWBS (short Warwick-Edinburgh Mental Wellbeing Scale)"
	case InstrumentWEMWBS:
		return "WEMWBS (Warwick-Edinburgh Mental Wellbeing Scale)"
	}
	return ""
}

// Items are the instrument's questions, in the order its answers are given.
func (i Instrument) Items() []string {
	switch i {
	case InstrumentONS4:
		return []string{
			"Overall, how satisfied are you with your life nowadays?",
			"Overall, to what extent do you feel that the things you do in your life are worthwhile?",
			"Overall, how happy did you feel yesterday?",
			"Overall, how anxious did you feel yesterday?",
		}
	case InstrumentSWEMWBS:
		return []string{
			"I've been feeling optimistic about the future",
			"I've been feeling useful",
			"I've been feeling relaxed",
			"I've been dealing with problems well",
			"I've been thinking clearly",
			"I've been feeling close to other people",
			"I've been able to make up my own mind about things",
		}
	case InstrumentWEMWBS:
		return []string{
			"I've been feeling optimistic about the future",
			"I've been feeling useful",
			"I've been feeling relaxed",
			"I've been feeling interested in other people",
			"I've had energy to spare",
			"I've been dealing with problems well",
			"I've been thinking clearly",
			"I've been feeling good about myself",
			"I've been feeling close to other people",
			"I've been feeling confident",
			"I've been able to make up my own mind about things",
			"I've been feeling loved",
			"I've been interested in new things",
			"I've been feeling cheerful",
		}
	}
	return nil
}

// ItemKeys are short names of the instrument's items (the codes of its items in ONS4ItemSystem and
// MeasureItemSystem, and the inbox form's field names).
func (i Instrument) ItemKeys() []string {
	switch i {
	case InstrumentONS4:
		return []string{"life-satisfaction", "worthwhile", "happiness", "anxiety"}
	case InstrumentSWEMWBS, InstrumentWEMWBS:
		keys := make([]string, len(i.Items()))
		for n := range keys {
			keys[n] = string(i) + "-" + strconv.Itoa(n+1)
		}
		return keys
	}
	return nil
}

// ItemRange is the lowest and highest answer of each of the instrument's items.
func (i Instrument) ItemRange() (lo, hi int) {
	switch i {
	case InstrumentONS4:
		return 0, 10
	case InstrumentSWEMWBS, InstrumentWEMWBS:
		return 1, 5
	}
	return 0, 0
}

// Scored reports whether the instrument has a total score (SWEMWBS, WEMWBS); ONS4's items are reported
// separately.
func (i Instrument) Scored() bool { return i == InstrumentSWEMWBS || i == InstrumentWEMWBS }

// Timing says when in the referral a measure was taken. The zero value is invalid.
type Timing string

// Timings.
const (
	TimingBaseline Timing = "baseline"  // at the start (at most one per instrument)
	TimingFollowUp Timing = "follow-up" // later (after the instrument's baseline)
)

// AllTimings lists every timing.
func AllTimings() []Timing { return []Timing{TimingBaseline, TimingFollowUp} }

// Valid reports whether t is a timing.
func (t Timing) Valid() bool {
	switch t {
	case TimingBaseline, TimingFollowUp:
		return true
	}
	return false
}

// Measure is one recorded outcome measure: the answers a person gave to one instrument on one day, and who
// recorded them. Measures are append-only: once recorded, one is never changed (a wrong one is corrected by
// recording another and telling the GP in a note).
type Measure struct {
	// N numbers the referral's measures 1, 2, 3… in the order recorded (the FHIR Observation's id is the
	// Task's id and N: ObservationID).
	N          int        `json:"n"`
	Instrument Instrument `json:"instrument"`
	Timing     Timing     `json:"timing"`
	// Date is the day the person answered (YYYY-MM-DD).
	Date string `json:"date"`
	// Items are the answers, in the order of Instrument.Items.
	Items []int `json:"items"`
	// Score is the raw total (SWEMWBS 7–35, WEMWBS 14–70); nil for ONS4.
	Score *int `json:"score,omitempty"`
	// MetricScore is SWEMWBS's metric score (from SWEMWBSMetric's table); nil for the others.
	MetricScore *float64 `json:"metric_score,omitempty"`
	// RecordedBy is who recorded it (the service's name, set by socialrx from the authenticated client) and
	// Recorder the person the group named, if it did.
	RecordedBy string    `json:"recorded_by"`
	Recorder   string    `json:"recorder,omitempty"`
	RecordedAt time.Time `json:"recorded_at"`
}

// MeasureInput is a measure as a client submits it (the community API, the inbox form, a FHIR Observation).
type MeasureInput struct {
	Instrument Instrument
	Timing     Timing
	Date       string
	// Items are the answers in the order of Instrument.Items; nil for an unanswered item (every item must be
	// answered).
	Items []*int
	// Recorder optionally names the person who took the answers (at most MaxRecorderRunes characters).
	Recorder string
}

// Limits of measures.
const (
	// MaxMeasures bounds the measures one referral keeps (they are stored with the referral).
	MaxMeasures = 50
	// MaxRecorderRunes bounds the recorder's name.
	MaxRecorderRunes = 200
)

// Fields and rule codes of measure refusals (fault.Issue). Item fields are "items[i]" (0-based).
const (
	FieldInstrument = "instrument"
	FieldTiming     = "timing"
	FieldDate       = "date"
	FieldItems      = "items"
	FieldRecorder   = "recorder"

	// CodeInvalidMeasure: a measure's instrument, timing, date, items or recorder is wrong (kind invalid).
	CodeInvalidMeasure fault.Code = "invalid_measure"
	// CodeMeasureNotAllowed: the referral's state or its other measures forbid this one (kind rule).
	CodeMeasureNotAllowed fault.Code = "measure_not_allowed"
)

// ItemField is the field name of the i-th answer (0-based).
func ItemField(i int) string { return FieldItems + "[" + strconv.Itoa(i) + "]" }

// swemwbsMetric is the published SWEMWBS raw-to-metric conversion table, raw scores 7 to 35 in order, from
// the scale's authors (Warwick Medical School, "SWEMWBS conversion table", derived from the Rasch analysis in
// Stewart-Brown S, Tennant A, Tennant R, Platt S, Parkinson J, Weich S. Internal construct validity of the
// Warwick-Edinburgh Mental Well-being Scale (WEMWBS): a Rasch analysis using data from the Scottish Health
// Education Population Survey. Health Qual Life Outcomes 2009;7:15; https://warwick.ac.uk/fac/sci/med/research/platform/wemwbs/using/howto/).
// Only this table is used: no formula, no interpolation.
var swemwbsMetric = [...]float64{
	7.00, 9.51, 11.25, 12.40, 13.33, 14.08, 14.75, 15.32, 15.84, 16.36,
	16.88, 17.43, 17.98, 18.59, 19.25, 19.98, 20.73, 21.54, 22.35, 23.21,
	24.11, 25.03, 26.02, 27.03, 28.13, 29.31, 30.70, 32.55, 35.00,
}

// SWEMWBSMetric converts a SWEMWBS raw score (7–35) into its metric score with the published table; false
// for a raw score outside it.
func SWEMWBSMetric(raw int) (float64, bool) {
	if raw < 7 || raw > 35 {
		return 0, false
	}
	return swemwbsMetric[raw-7], true
}

// measureAllowed reports whether a referral in status s takes measures: once the group has taken the person
// on (accepted and after, completed and failed included, so that a last follow-up can follow the close),
// never before, nor for a declined, cancelled or mistaken referral.
func measureAllowed(s TaskStatus) bool {
	switch s {
	case StatusAccepted, StatusInProgress, StatusOnHold, StatusCompleted, StatusFailed:
		return true
	case StatusRequested, StatusReceived, StatusRejected, StatusCancelled, StatusEnteredInError:
	}
	return false
}

// TakesMeasures reports whether a referral in status s takes outcome measures (accepted, in-progress,
// on-hold, completed, failed).
func (s TaskStatus) TakesMeasures() bool { return measureAllowed(s) }

// CheckMeasure validates a submitted measure on its own, reporting every problem at once (a *fault.Error of
// kind fault.Invalid, code CodeInvalidMeasure, one issue per field) or nil: the instrument and timing are
// known, the date is a real day (YYYY-MM-DD) not after today (today is now's date in UTC and the day after,
// so that a UK evening is never refused), every item is answered and in its range, the recorder's name is
// short.
func CheckMeasure(in MeasureInput, now time.Time) error {
	var issues []fault.Issue
	add := func(field, msg string) {
		issues = append(issues, fault.Issue{Code: CodeInvalidMeasure, Field: field, Message: msg})
	}
	if !in.Instrument.Valid() {
		add(FieldInstrument, fmt.Sprintf("instrument %q is not one socialrx records; use one of %s", in.Instrument, joinNames(AllInstruments())))
	}
	if !in.Timing.Valid() {
		add(FieldTiming, fmt.Sprintf("timing %q is not known; use one of %s", in.Timing, joinNames(AllTimings())))
	}
	switch d, err := time.Parse(time.DateOnly, in.Date); {
	case in.Date == "":
		add(FieldDate, "date is required: the day the person answered, as YYYY-MM-DD")
	case err != nil:
		add(FieldDate, fmt.Sprintf("date %q is not a day written YYYY-MM-DD", in.Date))
	case d.After(now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)):
		add(FieldDate, "date is in the future: give the day the person answered")
	case d.Year() < 2000:
		add(FieldDate, "date is too long ago: give the day the person answered")
	}
	if len([]rune(in.Recorder)) > MaxRecorderRunes {
		add(FieldRecorder, fmt.Sprintf("recorder is longer than %d characters", MaxRecorderRunes))
	}
	if in.Instrument.Valid() {
		items := in.Instrument.Items()
		lo, hi := in.Instrument.ItemRange()
		switch {
		case len(in.Items) > len(items):
			add(FieldItems, fmt.Sprintf("%s has %d items; %d answers were given", in.Instrument.Name(), len(items), len(in.Items)))
		default:
			for n, q := range items {
				field := ItemField(n)
				switch {
				case n >= len(in.Items) || in.Items[n] == nil:
					add(field, fmt.Sprintf("item %d (%q) is not answered: every item must be", n+1, q))
				case *in.Items[n] < lo || *in.Items[n] > hi:
					add(field, fmt.Sprintf("item %d (%q) is %d: answers are whole numbers from %d to %d", n+1, q, *in.Items[n], lo, hi))
				}
			}
		}
	}
	if len(issues) == 0 {
		return nil
	}
	return &fault.Error{Kind: fault.Invalid, Issues: issues}
}

// AddMeasure validates in (CheckMeasure) against the referral and returns the referral with the measure
// appended (number N = the next one; RecordedBy, RecordedAt from the caller and its clock; scores
// computed). Rules beyond the measure itself (kind fault.Rule, code CodeMeasureNotAllowed): the referral
// takes measures (accepted, in progress, on hold, completed or failed); at most one baseline per
// instrument; a follow-up needs that instrument's baseline and is not dated before it; the measure is not
// dated before the referral was made; at most MaxMeasures. It does not bump the version: the store does.
func AddMeasure(r Referral, in MeasureInput, recordedBy string, now time.Time) (Referral, Measure, error) {
	if err := CheckMeasure(in, now); err != nil {
		return r, Measure{}, err
	}
	rule := func(field, msg string) error { return fault.New(fault.Rule, CodeMeasureNotAllowed, field, msg) }
	if !measureAllowed(r.Record.Status) {
		return r, Measure{}, rule(FieldStatus, fmt.Sprintf("the referral is %s: measures are recorded once it is accepted (accepted, in-progress, on-hold, completed or failed)", r.Record.Status))
	}
	if len(r.Record.Measures) >= MaxMeasures {
		return r, Measure{}, rule("", fmt.Sprintf("a referral keeps at most %d measures", MaxMeasures))
	}
	if made := r.Record.CreatedAt.UTC().Format(time.DateOnly); in.Date < made {
		return r, Measure{}, rule(FieldDate, "date is before the referral was made ("+made+")")
	}
	base := r.Baseline(in.Instrument)
	switch in.Timing {
	case TimingBaseline:
		if base != nil {
			return r, Measure{}, rule(FieldTiming, fmt.Sprintf("this referral already has a %s baseline (measure %d); record a follow-up", in.Instrument, base.N))
		}
	case TimingFollowUp:
		switch {
		case base == nil:
			return r, Measure{}, rule(FieldTiming, fmt.Sprintf("a %s follow-up needs a %s baseline first", in.Instrument, in.Instrument))
		case in.Date < base.Date:
			return r, Measure{}, rule(FieldDate, "a follow-up is not dated before its baseline ("+base.Date+")")
		}
	}
	m := Measure{
		N: len(r.Record.Measures) + 1, Instrument: in.Instrument, Timing: in.Timing, Date: in.Date,
		Items: make([]int, len(in.Items)), RecordedBy: recordedBy, Recorder: strings.TrimSpace(in.Recorder),
		RecordedAt: now.UTC().Truncate(time.Microsecond),
	}
	total := 0
	for n, v := range in.Items {
		m.Items[n] = *v
		total += *v
	}
	if in.Instrument.Scored() {
		m.Score = &total
	}
	if in.Instrument == InstrumentSWEMWBS {
		if metric, ok := SWEMWBSMetric(total); ok {
			m.MetricScore = &metric
		}
	}
	measures := make([]Measure, 0, len(r.Record.Measures)+1)
	measures = append(measures, r.Record.Measures...)
	r.Record.Measures = append(measures, m)
	return r, m, nil
}

// Baseline is the referral's baseline of instrument i (nil when none).
func (r Referral) Baseline(i Instrument) *Measure {
	for n := range r.Record.Measures {
		if m := &r.Record.Measures[n]; m.Instrument == i && m.Timing == TimingBaseline {
			return m
		}
	}
	return nil
}

// LatestFollowUp is the referral's latest follow-up of instrument i (the last recorded among the latest
// dated; nil when none).
func (r Referral) LatestFollowUp(i Instrument) *Measure {
	var out *Measure
	for n := range r.Record.Measures {
		if m := &r.Record.Measures[n]; m.Instrument == i && m.Timing == TimingFollowUp && (out == nil || m.Date >= out.Date) {
			out = m
		}
	}
	return out
}

func joinNames[T ~string](vs []T) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return strings.Join(out, ", ")
}

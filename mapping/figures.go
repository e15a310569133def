package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"
)

// Monthly figures (issue 14): per month, for one group, one practice or the whole area, how many referrals
// came, what became of them, how fast, and what the outcome measures say. Referrals are counted in the month
// they were received (a cohort: a referral received in November and completed in December counts as completed
// in November's figures). Small numbers are suppressed: any count from 1 to 4 is shown as "<5", and a median
// or mean resting on fewer than 5 referrals is not shown.

// MaxFigureMonths bounds the months one request for figures covers.
const MaxFigureMonths = 36

// SuppressBelow is the smallest count the figures show (1–4 are shown as "<5"; 0 is shown).
const SuppressBelow = 5

// ReferralFacts is what the figures need of one referral: when it came, what happened when, and its measures.
type ReferralFacts struct {
	Received time.Time
	// FirstContact is when the service first answered (acknowledged, accepted or declined); zero: never.
	FirstContact time.Time
	// Accepted: the service took it on (accepted, whatever happened next).
	Accepted bool
	// Declined: the service declined it (rejected), for DeclineReason.
	Declined      bool
	DeclineReason string
	// Completed is when it was completed; zero: not (yet).
	Completed time.Time
	Measures  []Measure
}

// FactsOf derives a referral's facts from its versions, oldest first (the store's ReferralVersions).
func FactsOf(versions []Referral) ReferralFacts {
	var f ReferralFacts
	if len(versions) == 0 {
		return f
	}
	last := versions[len(versions)-1].Record
	f.Received, f.Measures = last.CreatedAt, last.Measures
	for _, v := range versions {
		st := v.Record.Status
		if f.FirstContact.IsZero() && mover(st) == ActorCommunity {
			f.FirstContact = v.Record.UpdatedAt
		}
		switch st {
		case StatusAccepted, StatusInProgress, StatusOnHold, StatusCompleted, StatusFailed:
			f.Accepted = true
		case StatusRequested, StatusReceived, StatusRejected, StatusCancelled, StatusEnteredInError:
		}
		if st == StatusCompleted && f.Completed.IsZero() {
			f.Completed = v.Record.UpdatedAt
		}
	}
	if last.Status == StatusRejected {
		f.Declined, f.DeclineReason = true, strings.TrimSpace(last.StatusReason)
	}
	return f
}

// Count is a count as the figures show it: 0, the number from 5 up, or "<5" (Suppressed) for 1 to 4.
type Count struct {
	N          int  `json:"-"`
	Suppressed bool `json:"-"`
}

// NewCount suppresses n when it is from 1 to 4.
func NewCount(n int) Count {
	if n > 0 && n < SuppressBelow {
		return Count{Suppressed: true}
	}
	return Count{N: n}
}

// String is "12", "0" or "<5".
func (c Count) String() string {
	if c.Suppressed {
		return "<5"
	}
	return strconv.Itoa(c.N)
}

// MarshalJSON writes a number, or the string "<5".
func (c Count) MarshalJSON() ([]byte, error) {
	if c.Suppressed {
		return []byte(`"<5"`), nil
	}
	return []byte(strconv.Itoa(c.N)), nil
}

// Stat is a median or a mean and how many referrals it rests on; Value is nil when N is under 5 (or 0).
type Stat struct {
	N     Count    `json:"n"`
	Value *float64 `json:"value"`
}

// newStat is the statistic of xs (median or mean), suppressed under SuppressBelow values; rounded to 0.1.
func newStat(xs []float64, median bool) Stat {
	s := Stat{N: NewCount(len(xs))}
	if len(xs) < SuppressBelow {
		return s
	}
	var v float64
	if median {
		ys := slices.Clone(xs)
		slices.Sort(ys)
		if n := len(ys); n%2 == 1 {
			v = ys[n/2]
		} else {
			v = (ys[n/2-1] + ys[n/2]) / 2
		}
	} else {
		for _, x := range xs {
			v += x
		}
		v /= float64(len(xs))
	}
	v = math.Round(v*10) / 10
	s.Value = &v
	return s
}

// String is the value to one decimal, or "" when suppressed.
func (s Stat) String() string {
	if s.Value == nil {
		return ""
	}
	return strconv.FormatFloat(*s.Value, 'f', 1, 64)
}

// OtherReasons is the row of the decline reasons given fewer than 5 times in a month.
const OtherReasons = "other reasons"

// ReasonCount is how many referrals were declined for one reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  Count  `json:"count"`
}

// MonthFigures are one month's figures (referrals received that month).
type MonthFigures struct {
	Month     string        `json:"month"` // YYYY-MM
	Received  Count         `json:"received"`
	Accepted  Count         `json:"accepted"`
	Declined  Count         `json:"declined"`
	ByReason  []ReasonCount `json:"declined_by_reason"`
	Completed Count         `json:"completed"`
	// DaysToFirstContact and DaysToCompletion are medians in days (to 0.1).
	DaysToFirstContact Stat `json:"median_days_to_first_contact"`
	DaysToCompletion   Stat `json:"median_days_to_completion"`
	// WithBaseline and WithFollowUp are the referrals with a baseline measure, and with a baseline and a
	// follow-up of the same instrument; Percent… their share of the accepted, to the whole per cent
	// (nil when suppressed or nothing was accepted).
	WithBaseline        Count    `json:"with_baseline"`
	WithFollowUp        Count    `json:"with_follow_up"`
	PercentWithBaseline *float64 `json:"percent_with_baseline"`
	PercentWithFollowUp *float64 `json:"percent_with_follow_up"`
	// SWEMWBSChange is the mean change of the SWEMWBS metric score from baseline to the latest follow-up;
	// ONS4Change the mean change of each ONS4 item (keys as Instrument.ItemKeys).
	SWEMWBSChange Stat            `json:"swemwbs_metric_change"`
	ONS4Change    map[string]Stat `json:"ons4_change"`
}

// Figures computes monthly figures for the months from first to last (inclusive, "YYYY-MM", in UK time as
// loc says) over the referrals' facts; referrals received outside those months are not counted.
func Figures(facts []ReferralFacts, first, last string, loc *time.Location) ([]MonthFigures, error) {
	from, err := time.ParseInLocation("2006-01", first, loc)
	if err != nil {
		return nil, fault.New(fault.Invalid, "invalid_month", "from", fmt.Sprintf("from %q is not a month written YYYY-MM", first))
	}
	to, err := time.ParseInLocation("2006-01", last, loc)
	switch {
	case err != nil:
		return nil, fault.New(fault.Invalid, "invalid_month", "to", fmt.Sprintf("to %q is not a month written YYYY-MM", last))
	case to.Before(from):
		return nil, fault.New(fault.Invalid, "invalid_month", "to", "to is before from")
	case to.After(from.AddDate(0, MaxFigureMonths-1, 0)):
		return nil, fault.New(fault.Invalid, "invalid_month", "to", fmt.Sprintf("at most %d months at once", MaxFigureMonths))
	}
	var out []MonthFigures
	for m := from; !m.After(to); m = m.AddDate(0, 1, 0) {
		end := m.AddDate(0, 1, 0)
		var in []ReferralFacts
		for _, f := range facts {
			if !f.Received.Before(m) && f.Received.Before(end) {
				in = append(in, f)
			}
		}
		out = append(out, monthFigures(m.Format("2006-01"), in))
	}
	return out, nil
}

func monthFigures(month string, in []ReferralFacts) MonthFigures {
	mf := MonthFigures{Month: month, ONS4Change: map[string]Stat{}}
	var accepted, declined, completed, baseline, follow int
	reasons := map[string]int{}
	var contact, done, swChange []float64
	onsChange := make([][]float64, len(InstrumentONS4.ItemKeys()))
	days := func(a, b time.Time) float64 { return b.Sub(a).Hours() / 24 }
	for _, f := range in {
		if f.Accepted {
			accepted++
		}
		if f.Declined {
			declined++
			r := f.DeclineReason
			if r == "" {
				r = "(no reason given)"
			}
			reasons[r]++
		}
		if !f.FirstContact.IsZero() {
			contact = append(contact, days(f.Received, f.FirstContact))
		}
		if !f.Completed.IsZero() {
			completed++
			done = append(done, days(f.Received, f.Completed))
		}
		r := Referral{Record: Record{Measures: f.Measures}}
		hasBase, hasFollow := false, false
		for _, i := range AllInstruments() {
			b, fu := r.Baseline(i), r.LatestFollowUp(i)
			if b == nil {
				continue
			}
			hasBase = true
			if fu == nil {
				continue
			}
			hasFollow = true
			switch i {
			case InstrumentSWEMWBS:
				if b.MetricScore != nil && fu.MetricScore != nil {
					swChange = append(swChange, *fu.MetricScore-*b.MetricScore)
				}
			case InstrumentONS4:
				for k := range onsChange {
					if k < len(b.Items) && k < len(fu.Items) {
						onsChange[k] = append(onsChange[k], float64(fu.Items[k]-b.Items[k]))
					}
				}
			case InstrumentWEMWBS:
			}
		}
		if hasBase {
			baseline++
		}
		if hasFollow {
			follow++
		}
	}
	mf.Received, mf.Accepted, mf.Declined, mf.Completed = NewCount(len(in)), NewCount(accepted), NewCount(declined), NewCount(completed)
	// A reason given fewer than 5 times is counted under "other reasons": a one-off free text never shows.
	other := 0
	for r, n := range reasons {
		if n < SuppressBelow {
			other += n
			continue
		}
		mf.ByReason = append(mf.ByReason, ReasonCount{Reason: r, Count: NewCount(n)})
	}
	slices.SortFunc(mf.ByReason, func(a, b ReasonCount) int { return strings.Compare(a.Reason, b.Reason) })
	if other > 0 {
		mf.ByReason = append(mf.ByReason, ReasonCount{Reason: OtherReasons, Count: NewCount(other)})
	}
	mf.DaysToFirstContact, mf.DaysToCompletion = newStat(contact, true), newStat(done, true)
	mf.WithBaseline, mf.WithFollowUp = NewCount(baseline), NewCount(follow)
	share := func(n int) *float64 {
		if accepted < SuppressBelow || (n > 0 && n < SuppressBelow) {
			return nil
		}
		p := math.Round(100 * float64(n) / float64(accepted))
		return &p
	}
	mf.PercentWithBaseline, mf.PercentWithFollowUp = share(baseline), share(follow)
	mf.SWEMWBSChange = newStat(swChange, false)
	for k, key := range InstrumentONS4.ItemKeys() {
		mf.ONS4Change[key] = newStat(onsChange[k], false)
	}
	return mf
}

// FiguresCSV renders figures as CSV rows (a header, then one row per month): suppressed counts are "<5",
// suppressed statistics are empty. Declines by reason are one column, "reason: n; …".
func FiguresCSV(figs []MonthFigures) [][]string {
	head := []string{"month", "received", "accepted", "declined", "declined_by_reason", "completed",
		"median_days_to_first_contact", "median_days_to_completion", "with_baseline", "with_follow_up",
		"percent_with_baseline", "percent_with_follow_up", "swemwbs_metric_change_n", "swemwbs_metric_change_mean"}
	for _, k := range InstrumentONS4.ItemKeys() {
		head = append(head, "ons4_"+k+"_change_n", "ons4_"+k+"_change_mean")
	}
	rows := [][]string{head}
	pct := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', 0, 64)
	}
	for _, m := range figs {
		var reasons []string
		for _, r := range m.ByReason {
			reasons = append(reasons, r.Reason+": "+r.Count.String())
		}
		row := []string{m.Month, m.Received.String(), m.Accepted.String(), m.Declined.String(), strings.Join(reasons, "; "),
			m.Completed.String(), m.DaysToFirstContact.String(), m.DaysToCompletion.String(), m.WithBaseline.String(),
			m.WithFollowUp.String(), pct(m.PercentWithBaseline), pct(m.PercentWithFollowUp),
			m.SWEMWBSChange.N.String(), m.SWEMWBSChange.String()}
		for _, k := range InstrumentONS4.ItemKeys() {
			row = append(row, m.ONS4Change[k].N.String(), m.ONS4Change[k].String())
		}
		rows = append(rows, row)
	}
	return rows
}

var _ json.Marshaler = Count{}

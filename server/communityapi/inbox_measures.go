package communityapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// The inbox's outcome measure forms (issue 14): GET /inbox/referrals/{id}/measures?instrument=… draws the form
// of one instrument, POST records it (referral.Service.RecordMeasure, the same change as the community API's).
// Every problem of a refused form is listed at the top, each linking to its field, and what was chosen is kept.

// measureForm is one instrument's form as the page draws it.
type measureForm struct {
	Instrument mapping.Instrument
	Name       string
	Timing     string // as chosen
	Date       string // as typed
	Recorder   string // as typed
	Items      []measureItem
	// Problems are the refusal's problems, each linking to its field.
	Problems []measureProblem
	// Invalid marks the fields a problem is about (timing, date, recorder, item-N).
	Invalid map[string]bool
}

// measureItem is one question of the form, with its answers and the one chosen.
type measureItem struct {
	ID, Question, Chosen string
	Options              []measureOption
}

// measureOption is one answer of a question.
type measureOption struct{ Value, Label string }

// measureProblem is one refused field: its id on the page and what is wrong.
type measureProblem struct{ ID, Message string }

// answerWords are the words of SWEMWBS and WEMWBS answers 1–5.
var answerWords = []string{"None of the time", "Rarely", "Some of the time", "Often", "All of the time"}

// newMeasureForm is the empty (or, with form, the refused) form of instrument i.
func newMeasureForm(i mapping.Instrument, form url.Values) *measureForm {
	f := &measureForm{Instrument: i, Name: i.Name(), Invalid: map[string]bool{}}
	if form != nil {
		f.Timing, f.Date, f.Recorder = form.Get("timing"), form.Get("date"), form.Get("recorder")
	}
	lo, hi := i.ItemRange()
	for n, q := range i.Items() {
		it := measureItem{ID: "item-" + strconv.Itoa(n), Question: fmt.Sprintf("%d. %s", n+1, q)}
		if form != nil {
			it.Chosen = form.Get(it.ID)
		}
		for v := lo; v <= hi; v++ {
			label := strconv.Itoa(v)
			switch {
			case i == mapping.InstrumentONS4 && v == lo && n == 3:
				label += " (not at all anxious)"
			case i == mapping.InstrumentONS4 && v == hi && n == 3:
				label += " (completely anxious)"
			case i == mapping.InstrumentONS4 && v == lo:
				label += " (not at all)"
			case i == mapping.InstrumentONS4 && v == hi:
				label += " (completely)"
			case i != mapping.InstrumentONS4:
				label += " – " + answerWords[v-1]
			}
			it.Options = append(it.Options, measureOption{Value: strconv.Itoa(v), Label: label})
		}
		f.Items = append(f.Items, it)
	}
	return f
}

// measureFieldID is the page id of a use case's measure field.
func measureFieldID(field string) string {
	if n, ok := strings.CutPrefix(field, mapping.FieldItems+"["); ok {
		return "item-" + strings.TrimSuffix(n, "]")
	}
	switch field {
	case mapping.FieldTiming, mapping.FieldDate, mapping.FieldRecorder:
		return field
	}
	return ""
}

// measureInstrument reads the instrument a measure page is for (false: none of socialrx's).
func measureInstrument(v string) (mapping.Instrument, bool) {
	i := mapping.Instrument(v)
	return i, i.Valid()
}

// inboxMeasureForm is GET /inbox/referrals/{id}/measures?instrument=ons4|swemwbs|wemwbs.
func (a *API) inboxMeasureForm(w http.ResponseWriter, r *http.Request) {
	s, ref, ok := a.inboxReferralPage(w, r, "Record a measure")
	if !ok {
		return
	}
	i, ok := measureInstrument(r.URL.Query().Get("instrument"))
	if !ok {
		d := a.referralPage(s.r.Context(), s.d, ref, nil, "")
		d.Error = "Choose one of the measures listed on this page."
		a.renderInbox(w, s.r, http.StatusBadRequest, d)
		return
	}
	f := newMeasureForm(i, nil)
	f.Date = a.now().In(a.uk).Format("2006-01-02") // a new form proposes today; a refused one keeps what was typed
	a.renderInbox(w, s.r, http.StatusOK, a.measurePage(s.d, ref, f))
}

// measurePage fills the measure page of referral ref.
func (a *API) measurePage(d inboxPageData, ref outbox.Referral, f *measureForm) inboxPageData {
	rec := a.svc.Shared(ref.Record) // only what the service's sharing profile lets it see
	d.Title = "Record " + f.Name
	d.Record, d.MeasureForm = &rec, f
	if f.Timing == "" {
		f.Timing = string(mapping.TimingBaseline)
		if ref.Baseline(f.Instrument) != nil {
			f.Timing = string(mapping.TimingFollowUp)
		}
	}
	return d
}

// inboxRecordMeasure is POST /inbox/referrals/{id}/measures.
func (a *API) inboxRecordMeasure(w http.ResponseWriter, r *http.Request) {
	p, ok := a.inboxReferralForm(w, r, "Record a measure")
	if !ok {
		return
	}
	s := p.s
	r, d, ref, form := s.r, s.d, p.ref, p.form
	i, ok := measureInstrument(form.Get("instrument"))
	if k := web.RepeatedField(form, "instrument", "timing", "date", "recorder", "version"); k != "" || !ok {
		pd := a.referralPage(r.Context(), d, ref, nil, "")
		pd.Error = "This form is not one of the inbox's measure forms; nothing was changed."
		a.renderInbox(w, r, http.StatusBadRequest, pd)
		return
	}
	expect, _ := strconv.Atoi(form.Get("version"))
	in := mapping.MeasureInput{Instrument: i, Timing: mapping.Timing(form.Get("timing")), Date: strings.TrimSpace(form.Get("date")),
		Recorder: strings.TrimSpace(form.Get("recorder"))}
	f := newMeasureForm(i, form)
	var problems []fault.Issue
	for n := range i.Items() {
		v := strings.TrimSpace(form.Get("item-" + strconv.Itoa(n)))
		if v == "" {
			in.Items = append(in.Items, nil)
			continue
		}
		x, err := strconv.Atoi(v)
		if err != nil {
			problems = append(problems, fault.Issue{Field: mapping.ItemField(n), Message: fmt.Sprintf("Question %d: choose one of the answers.", n+1)})
			in.Items = append(in.Items, nil)
			continue
		}
		in.Items = append(in.Items, &x)
	}
	var (
		next outbox.Referral
		err  error
	)
	if len(problems) == 0 {
		next, _, err = a.svc.RecordMeasure(r.Context(), web.Caller(r.Context()),
			referral.MeasureRequest{ID: ref.Record.ID, Kind: referral.ByRecordID, ExpectVersion: expect, Measure: in})
	} else {
		err = &fault.Error{Kind: fault.Invalid, Issues: problems}
	}
	if err != nil {
		status, _ := web.JSONError(err)
		web.LogFailure(a.log, r, status, err)
		if status >= http.StatusInternalServerError {
			a.inboxFailure(w, r, d, err)
			return
		}
		if errors.Is(err, outbox.ErrVersionMismatch) {
			if cur, gerr := a.referral(r); gerr == nil {
				ref = cur
			}
			f.Problems = []measureProblem{{ID: "timing", Message: "Someone changed this referral since you opened the form. Check your answers and save again; nothing was changed."}}
		}
		var fe *fault.Error
		if errors.As(err, &fe) {
			for _, is := range fe.Issues {
				id := measureFieldID(is.Field)
				f.Problems = append(f.Problems, measureProblem{ID: id, Message: measureWords(is)})
				if id != "" {
					f.Invalid[id] = true
				}
			}
		}
		pd := a.measurePage(d, ref, f)
		pd.Title = "Not saved: " + f.Name
		a.renderInbox(w, r, status, pd)
		return
	}
	inboxRedirect(w, inboxPath+"referrals/"+url.PathEscape(next.Record.ID)+"?done=measure")
}

// measureWords is a refusal of the use case in a volunteer's words.
func measureWords(is fault.Issue) string {
	msg := is.Message
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	if strings.HasPrefix(is.Field, mapping.FieldItems+"[") && strings.Contains(msg, "not answered") {
		n := strings.TrimSuffix(strings.TrimPrefix(is.Field, mapping.FieldItems+"["), "]")
		if k, err := strconv.Atoi(n); err == nil {
			return fmt.Sprintf("Question %d has no answer: choose one (every question must be answered).", k+1)
		}
	}
	return msg + "."
}

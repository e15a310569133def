// Package letter is the GP letter (issue 14): the one-page PDF "message back to GP and referrer" of the PRSB
// Social Prescribing Information Standard that socialrx issues when a referral closes (completed, failed or
// declined: mapping.TaskStatus.IssuesLetter), and its FHIR R4 DocumentReference and Binary.
//
// It is pure: Compose reads the referral's kept versions up to the one that closed it (so the letter never
// changes once issued, whatever is recorded later) and Render turns the content into PDF bytes with core
// fonts only (no font files, no network). The same content always renders the same bytes: the PDF's creation
// date is the closing version's time, and its catalogue is sorted.
package letter

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

// Limits that keep the letter on one page: longer texts are shortened (the full text stays on the Task).
const (
	maxText   = 400 // the outcome, the closing reason, the needs
	maxReason = 120 // the reason of an earlier step
	maxSteps  = 10  // status steps shown (the latest)
)

// Letter is what the letter says.
type Letter struct {
	ID               string // mapping.LetterID: the DocumentReference's and the Binary's id
	TaskID           string
	ServiceRequestID string
	// Issued is when the referral closed (the closing version's time): the letter's date.
	Issued time.Time
	// Person is who was referred, as the GP record names them (the record's full name, whatever the group's
	// sharing profile showed it), with the NHS number and date of birth.
	Person    string
	NHSNumber string
	BirthDate string
	// To is the referrer: name, role and organisation (ODS code).
	To string
	// Group is the community service, Contact how to reach it (the directory's contact; "" when none).
	Group   string
	Contact string
	// ReferredOn is the day the GP referred (ServiceRequest.authoredOn, else when socialrx received it).
	ReferredOn string
	Needs      string
	// Steps are the status changes up to the close, oldest first.
	Steps []Step
	// Closing is the status that closed the referral, Reason the group's reason, Outcome what it reported.
	Closing mapping.TaskStatus
	Reason  string
	Outcome string
	// Measures are the outcome measures before (baseline) and after (latest follow-up), one per instrument.
	Measures []MeasureRow
	// NextSteps say what the GP or the referrer may do now.
	NextSteps string
	// EpisodeCode is the SNOMED CT code written for the episode ("" when none).
	EpisodeCode string
}

// Step is one status change: the day (UK), the status and the reason given.
type Step struct {
	Date   string
	Status mapping.TaskStatus
	Reason string
}

// MeasureRow is one instrument's measures: before, after and the change ("" when one is missing).
type MeasureRow struct {
	Instrument string
	Before     string
	After      string
	Change     string
}

// Closing returns the index of the version that closed the referral with a letter (the first version whose
// status issues one), given its kept versions oldest first.
func Closing(versions []mapping.Referral) (int, bool) {
	for i, v := range versions {
		if v.Record.Status.IssuesLetter() {
			return i, true
		}
	}
	return 0, false
}

// Compose is the letter of a closed referral from its versions up to and including the closing one (oldest
// first; the last is the closing version), the group's contact and the UK time zone. It reads nothing later.
func Compose(versions []mapping.Referral, contact string, uk *time.Location) Letter {
	closing := versions[len(versions)-1]
	rec := closing.Record
	l := Letter{
		ID: mapping.LetterID(rec.TaskID), TaskID: rec.TaskID, ServiceRequestID: rec.ServiceRequestID,
		Issued: rec.UpdatedAt.UTC(), Person: rec.Patient.Called(), NHSNumber: rec.Patient.NHSNumber,
		BirthDate: rec.Patient.BirthDate, To: referrerLine(rec.Referrer), Group: rec.Service.Name, Contact: contact,
		ReferredOn: referredOn(rec, uk), Needs: shorten(rec.Needs, maxText), Closing: rec.Status,
		Reason: shorten(rec.StatusReason, maxText), Steps: steps(versions, uk), Measures: measureRows(closing),
	}
	if rec.Outcome != nil {
		l.Outcome = shorten(outcomeText(*rec.Outcome), maxText)
	}
	if rec.Status == mapping.StatusRejected {
		l.EpisodeCode = mapping.SNOMEDSocialPrescribingDeclined + " Social prescribing declined"
	}
	l.NextSteps = nextSteps(rec.Status)
	return l
}

// referrerLine is the referrer as one line: "Dr A Patel, GP, Frome Medical Practice (Y01234)".
func referrerLine(r mapping.Referrer) string {
	parts := []string{}
	for _, s := range []string{r.Name, r.Role, r.Organisation} {
		if s = strings.TrimSpace(s); s != "" {
			parts = append(parts, s)
		}
	}
	line := strings.Join(parts, ", ")
	if r.ODSCode != "" {
		line += " (" + r.ODSCode + ")"
	}
	return strings.TrimSpace(line)
}

// referredOn is the referral's day: authoredOn's date part, else the day socialrx received it (UK).
func referredOn(rec mapping.Record, uk *time.Location) string {
	if len(rec.ReferredAt) >= 10 {
		return rec.ReferredAt[:10]
	}
	return rec.CreatedAt.In(uk).Format(time.DateOnly)
}

// steps are the status changes across the versions (the first version's status on the day received), the
// latest maxSteps of them.
func steps(versions []mapping.Referral, uk *time.Location) []Step {
	var out []Step
	var last mapping.TaskStatus
	for _, v := range versions {
		if v.Record.Status == last {
			continue
		}
		last = v.Record.Status
		out = append(out, Step{Date: v.Record.UpdatedAt.In(uk).Format(time.DateOnly), Status: last, Reason: shorten(v.Record.StatusReason, maxReason)})
	}
	if len(out) > maxSteps {
		out = out[len(out)-maxSteps:]
	}
	return out
}

// outcomeText is the outcome as a person reads it: its text, and its code's display.
func outcomeText(o mapping.Outcome) string {
	var parts []string
	if o.Code != nil {
		if d := strings.TrimSpace(o.Code.Display); d != "" {
			parts = append(parts, d)
		} else if o.Code.Code != "" {
			parts = append(parts, o.Code.Code)
		}
	}
	if t := strings.TrimSpace(o.Text); t != "" {
		parts = append(parts, t)
	}
	return strings.Join(parts, ": ")
}

// measureRows are each instrument's baseline and latest follow-up on the closing version.
func measureRows(r mapping.Referral) []MeasureRow {
	var out []MeasureRow
	for _, in := range mapping.AllInstruments() {
		before, after := r.Baseline(in), r.LatestFollowUp(in)
		if before == nil && after == nil {
			continue
		}
		row := MeasureRow{Instrument: strings.ToUpper(string(in)), Before: measureText(before), After: measureText(after)}
		if before != nil && after != nil {
			row.Change = change(*before, *after)
		}
		out = append(out, row)
	}
	return out
}

// measureText is one measure's values and day: "23 (metric 20.73), 2026-11-03" or the ONS4 items.
func measureText(m *mapping.Measure) string {
	if m == nil {
		return ""
	}
	s := m.Summary()
	if _, v, ok := strings.Cut(s, ": "); ok {
		s = v
	}
	return s + " on " + m.Date
}

// change is after minus before: the raw (and metric) score, or each ONS4 item.
func change(before, after mapping.Measure) string {
	if before.Score != nil && after.Score != nil {
		s := signed(*after.Score - *before.Score)
		if before.MetricScore != nil && after.MetricScore != nil {
			s += fmt.Sprintf(" (metric %+.2f)", *after.MetricScore-*before.MetricScore)
		}
		return s
	}
	keys := before.Instrument.ItemKeys()
	var parts []string
	for i, k := range keys {
		if i < len(before.Items) && i < len(after.Items) {
			parts = append(parts, strings.ReplaceAll(k, "-", " ")+" "+signed(after.Items[i]-before.Items[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// signed is n with its sign: "+3", "0", "-2".
func signed(n int) string {
	if n > 0 {
		return "+" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// nextSteps say what the GP or the referrer may do after each way of closing.
func nextSteps(s mapping.TaskStatus) string {
	switch s {
	case mapping.StatusCompleted:
		return "The group has finished its support. Please file this letter in the person's record. No action is " +
			"needed unless the person would like more support: they may be referred again, to this group or another."
	case mapping.StatusFailed:
		return "The support could not be completed (see the reason above). Please review with the person whether " +
			"another referral would help; the link-worker service can suggest other groups."
	case mapping.StatusRejected:
		return "The referral was declined (see the reason above) and the episode is coded as social prescribing " +
			"declined. If the person still wants support, consider another group or the link-worker service."
	case mapping.StatusRequested, mapping.StatusReceived, mapping.StatusAccepted, mapping.StatusInProgress,
		mapping.StatusOnHold, mapping.StatusCancelled, mapping.StatusEnteredInError:
	}
	return ""
}

// shorten cuts a text longer than limit (in characters) at a word and marks the cut.
func shorten(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= limit {
		return s
	}
	cut := string(r[:limit])
	if i := strings.LastIndex(cut, " "); i > limit/2 {
		cut = cut[:i]
	}
	return cut + " ... (shortened; the full text is on the Task)"
}

package mapping

import (
	"fmt"
	"slices"
	"strings"
)

// SharingField names one part of the community referral record that a service's sharing profile may let it
// see (docs/design.md#sharing-profiles). The record's identifiers, status, version, service, priority,
// times, status reason and outcome are always shared: they are what the service works with, not about the
// person. The zero value is invalid.
type SharingField string

// Sharing fields, each one or a few members of Record.
const (
	ShareFirstName        SharingField = "first_name"        // patient.first_name
	ShareName             SharingField = "name"              // patient.name (the full name)
	ShareNHSNumber        SharingField = "nhs_number"        // patient.nhs_number
	ShareBirthDate        SharingField = "birth_date"        // patient.birth_date
	ShareGender           SharingField = "gender"            // patient.gender
	ShareContact          SharingField = "contact"           // patient.phone and patient.email
	ShareAddress          SharingField = "address"           // patient.address and patient.postcode
	ShareLanguage         SharingField = "language"          // patient.language and patient.interpreter_needed
	ShareServiceRequested SharingField = "service_requested" // service_requested (the referral codes)
	ShareReasons          SharingField = "reasons"           // reasons: the clinical reasons for the referral
	ShareNeeds            SharingField = "needs"             // needs and support_needs: what the person asked for and needs
	ShareNotes            SharingField = "notes"             // notes: the GP's notes on the ServiceRequest
	ShareReferrer         SharingField = "referrer"          // referrer
	ShareConsent          SharingField = "consent"           // consent
)

// ShareAll is the word a directory file uses for every field (SharingProfile.Fields lists them all).
const ShareAll = "all"

// AllSharingFields lists every sharing field, in the record's order.
func AllSharingFields() []SharingField {
	return []SharingField{ShareFirstName, ShareName, ShareNHSNumber, ShareBirthDate, ShareGender, ShareContact,
		ShareAddress, ShareLanguage, ShareServiceRequested, ShareReasons, ShareNeeds, ShareNotes, ShareReferrer,
		ShareConsent}
}

// Valid reports whether f is a sharing field.
func (f SharingField) Valid() bool {
	switch f {
	case ShareFirstName, ShareName, ShareNHSNumber, ShareBirthDate, ShareGender, ShareContact, ShareAddress,
		ShareLanguage, ShareServiceRequested, ShareReasons, ShareNeeds, ShareNotes, ShareReferrer, ShareConsent:
		return true
	}
	return false
}

// DefaultSharingFields is the safe default profile, for a service whose directory entry names none: enough
// to contact the person and help with what they asked for (first name, phone and email, language, the
// service requested, their needs, the referrer, the consent), never their NHS number, full name, date of
// birth, gender, address, the clinical reasons or the GP's notes.
func DefaultSharingFields() []SharingField {
	return []SharingField{ShareFirstName, ShareContact, ShareLanguage, ShareServiceRequested, ShareNeeds,
		ShareReferrer, ShareConsent}
}

// SharingProfile is which fields of the community referral record one community service receives, on every
// surface it sees the record (webhook payloads, the community API, the inbox page). The GP's FHIR view is
// never cut. The zero value (Fields nil) is the safe default, DefaultSharingFields.
type SharingProfile struct {
	// Fields are the shared fields; nil: DefaultSharingFields. A non-nil empty list shares nothing but the
	// identifiers and the referral's state.
	Fields []SharingField
}

// ParseSharingFields reads a directory file's list of field names ("all" for every field), reporting every
// unknown name at once.
func ParseSharingFields(names []string) (SharingProfile, error) {
	fields := []SharingField{}
	var bad []string
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == ShareAll {
			fields = append(fields, AllSharingFields()...)
			continue
		}
		f := SharingField(n)
		if !f.Valid() {
			bad = append(bad, fmt.Sprintf("%q", n))
			continue
		}
		fields = append(fields, f)
	}
	if len(bad) > 0 {
		var known []string
		for _, f := range AllSharingFields() {
			known = append(known, string(f))
		}
		return SharingProfile{}, fmt.Errorf("unknown field %s (known: %s, or %s)", strings.Join(bad, ", "),
			strings.Join(known, ", "), ShareAll)
	}
	var out []SharingField
	for _, f := range AllSharingFields() { // the record's order, each once
		if slices.Contains(fields, f) {
			out = append(out, f)
		}
	}
	if out == nil {
		out = []SharingField{}
	}
	return SharingProfile{Fields: out}, nil
}

// Shares reports whether the profile shares f.
func (p SharingProfile) Shares(f SharingField) bool {
	if p.Fields == nil {
		return slices.Contains(DefaultSharingFields(), f)
	}
	return slices.Contains(p.Fields, f)
}

// Names lists the profile's fields (the default's when it names none).
func (p SharingProfile) Names() []string {
	fs := p.Fields
	if fs == nil {
		fs = DefaultSharingFields()
	}
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, string(f))
	}
	return out
}

// Apply returns rec as the profile lets a service see it: every field the profile does not share is
// emptied (and so left out of the JSON). A record whose person withdrew their consent is already a stub
// (ScrubReferral); Apply cuts it further, never adds to it. Apply is pure and does not change rec.
func (p SharingProfile) Apply(rec Record) Record {
	out := rec
	pt := rec.Patient
	out.Patient = Person{}
	if p.Shares(ShareFirstName) {
		out.Patient.FirstName = pt.FirstName
	}
	if p.Shares(ShareName) {
		out.Patient.Name = pt.Name
	}
	if p.Shares(ShareNHSNumber) {
		out.Patient.NHSNumber = pt.NHSNumber
	}
	if p.Shares(ShareBirthDate) {
		out.Patient.BirthDate = pt.BirthDate
	}
	if p.Shares(ShareGender) {
		out.Patient.Gender = pt.Gender
	}
	if p.Shares(ShareContact) {
		out.Patient.Phone, out.Patient.Email = pt.Phone, pt.Email
	}
	if p.Shares(ShareAddress) {
		out.Patient.Address, out.Patient.Postcode = slices.Clone(pt.Address), pt.Postcode
	}
	if p.Shares(ShareLanguage) {
		out.Patient.Language, out.Patient.InterpreterNeeded = pt.Language, pt.InterpreterNeeded
	}
	out.Requested = keepIf(p.Shares(ShareServiceRequested), rec.Requested)
	out.Reasons = keepIf(p.Shares(ShareReasons), rec.Reasons)
	out.Notes = keepIf(p.Shares(ShareNotes), rec.Notes)
	if !p.Shares(ShareNeeds) {
		out.Needs = ""
		out.SupportNeeds = nil
		if rec.Route != nil {
			r := *rec.Route
			r.Needs = nil
			out.Route = &r
		}
	}
	if !p.Shares(ShareReferrer) {
		out.Referrer = Referrer{}
	}
	if !p.Shares(ShareConsent) {
		out.Consent = Consent{}
	}
	if rec.Outcome != nil {
		o := *rec.Outcome
		out.Outcome = &o
	}
	return out
}

func keepIf[T any](keep bool, s []T) []T {
	if !keep {
		return nil
	}
	return slices.Clone(s)
}

// IdentifiersOnly is the record cut to what identifies the referral and its state, with nothing about the
// person nor the referrer: what every webhook event after referral.created carries (the service already has
// what its profile lets it have), and all a referral.withdrawn carries.
func IdentifiersOnly(rec Record) Record {
	return SharingProfile{Fields: []SharingField{}}.Apply(rec)
}

// ForService is the referral as a community service with profile p sees it through FHIR (its Task and the
// Observations of its measures): the record cut by Apply, the patient reference (Task.for,
// Observation.subject) cut to what the profile shares (the NHS number identifier only with nhs_number; the
// display only with name, or the first name alone with first_name; the GP system's Patient reference never,
// as it resolves only there, and nothing at all when none of those is shared) and the requester only with
// referrer. The GP's FHIR view (TaskFor of the referral itself) is never cut. ForService is pure.
func (p SharingProfile) ForService(r Referral) Referral {
	out := r
	out.Record = p.Apply(r.Record)
	pt := Reference{Type: r.Patient.Type}
	if p.Shares(ShareNHSNumber) && r.Patient.Identifier != nil {
		id := *r.Patient.Identifier
		pt.Identifier = &id
	}
	switch {
	case p.Shares(ShareName):
		pt.Display = r.Patient.Display
	case p.Shares(ShareFirstName):
		pt.Display = r.Record.Patient.FirstName
	}
	out.Patient = Reference{}
	if pt.Identifier != nil || pt.Display != "" {
		out.Patient = pt
	}
	if !p.Shares(ShareReferrer) {
		out.Requester = Reference{}
	}
	return out
}

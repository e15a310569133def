package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/fault"

	"github.com/socialrx/socialrx/fhir"
)

// BuildInput is what Build needs besides the submission.
type BuildInput struct {
	// Directory is the community directory the referral is routed in.
	Directory Directory
	// PracticeODS is the referring practice's ODS code as the server established it (the requester's, see
	// RequesterODS, or the authenticated client's single practice). It becomes Referral.PracticeODS, the
	// access scope of GP clients; Build does not check it against the requester again.
	PracticeODS string
	// Now is the time of the intake (CreatedAt, UpdatedAt, meta.lastUpdated, the webhook timestamp). It is
	// used as given, converted to UTC; a server that wants every backend to round-trip it exactly should pass
	// a clock truncated to microseconds.
	Now time.Time
	// Capacities are the community services' capacities now (by service id; absent: open), for routing
	// (Decide).
	Capacities map[string]Capacity
	// NewID returns a fresh id (UUIDv7 in the server). Build calls it, in this order, for the referral id, the
	// ServiceRequest id, the Task id and the id of each event.
	NewID func() string
	// Actor, when set, is named in the referral.created payload (the GP client that posted it).
	Actor *EventActor
}

// ErrBadInput is returned (wrapped) when Build or ApplyStatus are called wrongly by the program (nil
// submission, no id generator): a bug, never a client's mistake.
var ErrBadInput = errors.New("mapping: bad input")

// Build turns a submission that passed the fhir package's structural and required-element stages into
// everything one accepted referral writes: the referral (community record + Task state), the ServiceRequest
// as stored, its idempotency identifiers and the outbox events.
//
// A business-rule failure is a *fhir.Error with Status 422 listing every broken rule at once, each with the
// FHIRPath expression of the element at fault. The rules:
//
//   - ServiceRequest.status is "active" and intent is "order" or "original-order"; doNotPerform is not true.
//   - subject is a Patient socialrx can read: contained (a transaction Bundle's Patient ends up contained), or
//     identified by NHS number (subject.identifier). A bare reference to a Patient on another server cannot be
//     read and is refused with a diagnostic that says how to send it. Group, Location, Device and display-only
//     subjects are refused.
//   - The Patient has an NHS number, and every NHS number (Patient.identifier, subject.identifier) is ten
//     digits passing the modulus 11 check (ValidNHSNumber).
//   - References in subject, requester, performer and supportingInfo resolve: a "#id" names a contained
//     resource, a urn:uuid names an entry of the same transaction Bundle.
//   - The patient's consent to share their details with the community service is recorded: a Consent
//     referenced from supportingInfo, sent with the referral (contained or in the Bundle), with status "active",
//     not a refusal (provision.type "deny"), and, when Consent.patient is given, about the referral's subject.
//   - The referral can be routed (see route): a performer matching a directory service's identifiers; else the
//     one service whose codes contain a ServiceRequest.code coding (several: ask for a performer); else the
//     default service; else 422.
//
// The referral.created payload carries the record cut to the service's sharing profile (Service.Sharing);
// the referral keeps it whole (the GP's view). Pull-only services (no delivery URL) get no event: nothing is ever sent to them, their referrals wait in the
// community inbox (BusinessStatus awaiting-pickup). A service with a delivery URL gets one referral.created
// event (BusinessStatus queued).
func Build(sub *fhir.Submission, in BuildInput) (Intake, error) {
	if sub == nil {
		return Intake{}, fmt.Errorf("%w: nil submission", ErrBadInput)
	}
	if in.NewID == nil {
		return Intake{}, fmt.Errorf("%w: no id generator", ErrBadInput)
	}
	c := newCtx(sub)
	var is issueList

	c.checkRequest(&is)
	subj := c.checkSubject(&is)
	c.checkPatients(&is)
	c.checkRequester(&is)
	consent := c.checkConsent(&is, subj)
	needs := c.supportNeeds(&is, subj.person.InterpreterNeeded)
	svc, decision, routed := c.route(in.Directory, in.Capacities, needs, in.Now, &is)
	if len(is) > 0 {
		return Intake{}, &fhir.Error{Kind: fault.Rule, Issues: is}
	}
	if !routed { // cannot happen: route reports an issue whenever it fails
		return Intake{}, fmt.Errorf("%w: unrouted referral", ErrBadInput)
	}

	now := in.Now.UTC()
	referralID, srID, taskID := in.NewID(), in.NewID(), in.NewID()
	ods, _, hasODS := c.requesterODS()
	practice := NormalODS(in.PracticeODS) // stored and searched in upper case: ODS codes are case-insensitive
	if practice == "" && hasODS {
		practice = NormalODS(ods)
	}
	referrer, requesterRef := c.referrer(ods)
	if referrer.ODSCode == "" {
		referrer.ODSCode = practice
	}
	if requesterRef == (Reference{}) && practice != "" {
		requesterRef = Reference{Type: "Organization", Identifier: &Identifier{System: ODSOrganizationSystem, Value: practice}}
	}

	sr := &sub.ServiceRequest
	rec := Record{
		ID:               referralID,
		ServiceRequestID: srID,
		TaskID:           taskID,
		Status:           StatusRequested,
		Version:          1,
		Service:          ServiceRef{ID: svc.ID, Name: svc.Name},
		Priority:         "routine",
		ReferredAt:       str(sr.AuthoredOn),
		CreatedAt:        now,
		UpdatedAt:        now,
		Patient:          subj.person,
		Requested:        c.requested(),
		Reasons:          c.reasons(),
		Needs:            strings.TrimSpace(str(sr.PatientInstruction)),
		Notes:            c.notes(),
		Referrer:         referrer,
		Consent:          consent,
	}
	if sr.Priority != nil {
		rec.Priority = sr.Priority.Code()
	}
	rec.SupportNeeds = needs
	if decision.Outcome.Shown() {
		rec.Route, rec.StatusReason = &decision, decision.Text
	}

	ref := Referral{
		Record:               rec,
		PracticeODS:          practice,
		BusinessStatus:       BusinessAwaitingPickup,
		Patient:              subj.taskFor,
		Requester:            requesterRef,
		Owner:                ownerRef(svc),
		ServiceRequestStatus: "active",
	}
	var events []Event
	if svc.Delivery.URL != "" {
		ref.BusinessStatus = BusinessQueued
		payload, err := WebhookPayloadBy(EventReferralCreated, svc.Sharing.Apply(rec), now, in.Actor)
		if err != nil {
			return Intake{}, err
		}
		events = append(events, Event{
			ID:          in.NewID(),
			Type:        EventReferralCreated,
			Destination: Destination{Kind: DestinationService, ID: svc.ID},
			Payload:     payload,
		})
	}

	stored, err := storedServiceRequest(sub.Raw, srID, now)
	if err != nil {
		return Intake{}, err
	}
	var ids []Identifier
	for _, id := range sr.Identifier {
		if v := str(id.Value); v != "" {
			ids = append(ids, Identifier{System: str(id.System), Value: v})
		}
	}
	return Intake{
		Referral:       ref,
		ServiceRequest: stored,
		Identifiers:    ids,
		Fingerprint:    sub.Fingerprint,
		Events:         events,
	}, nil
}

// issueList collects business-rule issues in the order the rules are checked.
type issueList []fhir.Issue

func (l *issueList) add(code fhir.IssueCode, diag string, expr ...string) {
	*l = append(*l, fhir.Issue{Severity: fhir.SeverityError, Code: code, Diagnostics: diag, Expression: expr})
}

func (c *ctx) checkRequest(is *issueList) {
	sr := &c.sub.ServiceRequest
	if st := sr.Status.Code(); st != "active" {
		is.add(fhir.CodeBusinessRule, "ServiceRequest.status is '"+st+"'; only an 'active' referral can be sent to a community service", "ServiceRequest.status")
	}
	switch it := sr.Intent.Code(); it {
	case "order", "original-order":
	default:
		is.add(fhir.CodeBusinessRule, "ServiceRequest.intent is '"+it+"'; a referral must be an authorised request: 'order' or 'original-order'", "ServiceRequest.intent")
	}
	if sr.DoNotPerform != nil && *sr.DoNotPerform {
		is.add(fhir.CodeBusinessRule, "ServiceRequest.doNotPerform is true: that is a prohibition, not a referral; leave it out or set it to false", "ServiceRequest.doNotPerform")
	}
}

// subjectInfo is the referral's subject once resolved.
type subjectInfo struct {
	ok        bool
	reference string          // subject.reference as sent ("#pat", "Patient/1", "")
	nhs       map[string]bool // valid NHS numbers known for the subject
	person    Person
	taskFor   Reference
}

const sendPatientHow = "send the Patient with the referral: as a contained resource referenced as '#id', in a " +
	"transaction Bundle (POST /fhir) referenced by its urn:uuid fullUrl, or identify the person by NHS number " +
	"with subject.identifier (system " + NHSNumberSystem + ")"

func (c *ctx) checkSubject(is *issueList) subjectInfo {
	sr := &c.sub.ServiceRequest
	ref := fromModelRef(&sr.Subject)
	info := subjectInfo{reference: ref.Reference, nhs: map[string]bool{}}
	r := c.resolve(ref)

	logicalNHS := ""
	if id := ref.Identifier; id != nil {
		switch {
		case id.System != NHSNumberSystem:
			if r.kind == refNone {
				is.add(fhir.CodeBusinessRule, "subject.identifier must be an NHS number (system "+NHSNumberSystem+"); socialrx cannot look a person up by any other identifier", "ServiceRequest.subject.identifier")
				return info
			}
		case !ValidNHSNumber(id.Value):
			is.add(fhir.CodeValue, "subject.identifier is not a valid NHS number: it must be 10 digits whose last digit is the modulus 11 check digit", "ServiceRequest.subject.identifier.value")
		default:
			logicalNHS = id.Value
			info.nhs[id.Value] = true
		}
	}
	if r.typ != "" && r.typ != "Patient" {
		is.add(fhir.CodeBusinessRule, "subject is a "+r.typ+"; a social prescribing referral is for one person: subject must be a Patient", "ServiceRequest.subject")
		return info
	}

	switch r.kind {
	case refLocal:
		if !r.found {
			is.add(fhir.CodeNotFound, "subject.reference names no contained resource", "ServiceRequest.subject.reference")
			return info
		}
		pat := decodeAs[rawPatient](r.res)
		nhs, hasNHS := "", false
		for _, id := range pat.Identifier {
			if id.System != NHSNumberSystem {
				continue
			}
			hasNHS = true
			if ValidNHSNumber(id.Value) {
				info.nhs[id.Value] = true
				if nhs == "" {
					nhs = id.Value
				}
			}
		}
		if !hasNHS && logicalNHS == "" {
			is.add(fhir.CodeBusinessRule, "the Patient has no NHS number (an identifier with system "+NHSNumberSystem+"); community services and the GP's Task both identify the person by it", c.resPath(r)+".identifier")
			return info
		}
		if logicalNHS != "" && nhs != "" && !slices.ContainsFunc(pat.Identifier, func(id rawIdentifier) bool { return id.System == NHSNumberSystem && id.Value == logicalNHS }) {
			is.add(fhir.CodeInvariant, "subject.identifier and the contained Patient carry different NHS numbers", "ServiceRequest.subject.identifier")
			return info
		}
		if nhs == "" {
			nhs = logicalNHS
		}
		if nhs == "" { // only invalid NHS numbers: already reported by checkPatients
			return info
		}
		info.person = personOf(pat)
		info.person.NHSNumber = nhs
		info.taskFor = Reference{Type: "Patient", Identifier: &Identifier{System: NHSNumberSystem, Value: nhs}}
	case refURN:
		is.add(fhir.CodeNotFound, "subject.reference is a urn: reference that matches no entry of the transaction Bundle; "+sendPatientHow, "ServiceRequest.subject.reference")
		return info
	case refLiteral:
		if ref.Identifier == nil || ref.Identifier.System != NHSNumberSystem {
			is.add(fhir.CodeNotFound, "subject references a Patient on another server, which socialrx cannot read; "+sendPatientHow, "ServiceRequest.subject")
			return info
		}
		if logicalNHS == "" { // invalid: reported above
			return info
		}
		info.person = Person{NHSNumber: logicalNHS, Name: strings.TrimSpace(ref.Display)}
		info.taskFor = Reference{Reference: ref.Reference, Type: "Patient", Identifier: &Identifier{System: NHSNumberSystem, Value: logicalNHS}}
	case refNone:
		if ref.Identifier == nil {
			is.add(fhir.CodeBusinessRule, "subject has no reference and no identifier (display only); "+sendPatientHow, "ServiceRequest.subject")
			return info
		}
		if logicalNHS == "" {
			return info
		}
		info.person = Person{NHSNumber: logicalNHS, Name: strings.TrimSpace(ref.Display)}
		info.taskFor = Reference{Type: "Patient", Identifier: &Identifier{System: NHSNumberSystem, Value: logicalNHS}}
	}
	info.ok = true
	return info
}

// containedIDs lists the contained resources in stored order.
func (c *ctx) containedIDs() []string {
	ids := make([]string, 0, len(c.sub.Contained))
	for id := range c.sub.Contained {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		ia, oka := c.index[a]
		ib, okb := c.index[b]
		switch {
		case oka && okb:
			return ia - ib
		case oka:
			return -1
		case okb:
			return 1
		}
		return strings.Compare(a, b)
	})
	return ids
}

// checkPatients validates the NHS numbers of every contained Patient.
func (c *ctx) checkPatients(is *issueList) {
	for _, id := range c.containedIDs() {
		res := c.sub.Contained[id]
		if res.ResourceType != "Patient" {
			continue
		}
		pat := decodeAs[rawPatient](res)
		for i, ident := range pat.Identifier {
			if ident.System == NHSNumberSystem && !ValidNHSNumber(ident.Value) {
				is.add(fhir.CodeValue, "Patient.identifier is not a valid NHS number: it must be 10 digits whose last digit is the modulus 11 check digit", c.containedPath(id)+".identifier["+strconv.Itoa(i)+"].value")
			}
		}
	}
}

// checkRef reports a reference that should resolve locally and does not.
func (c *ctx) checkRef(is *issueList, r resolved, expr string) {
	switch r.kind {
	case refLocal:
		if !r.found {
			is.add(fhir.CodeNotFound, "reference names no contained resource", expr)
		}
	case refURN:
		is.add(fhir.CodeNotFound, "urn: reference matches no entry of the transaction Bundle; include the resource in the same Bundle with that fullUrl", expr)
	case refNone, refLiteral:
	}
}

func (c *ctx) checkRequester(is *issueList) {
	if c.sub.ServiceRequest.Requester == nil {
		return
	}
	c.checkRef(is, c.resolve(fromModelRef(c.sub.ServiceRequest.Requester)), "ServiceRequest.requester.reference")
}

const consentRule = "a referral needs the patient's recorded consent to share their details with the community " +
	"service: send a Consent resource with status 'active' with the referral (contained, or in the transaction " +
	"Bundle) and reference it from ServiceRequest.supportingInfo"

func (c *ctx) checkConsent(is *issueList, subj subjectInfo) Consent {
	sr := &c.sub.ServiceRequest
	var consents []resolved
	external := false
	for i := range sr.SupportingInfo {
		r := c.resolve(fromModelRef(&sr.SupportingInfo[i]))
		c.checkRef(is, r, "ServiceRequest.supportingInfo["+strconv.Itoa(i)+"].reference")
		switch {
		case r.found && r.typ == "Consent":
			consents = append(consents, r)
		case !r.found && r.typ == "Consent":
			external = true
		}
	}
	if len(consents) == 0 {
		diag := consentRule
		if external {
			diag += " (a Consent on another server cannot be read)"
		}
		is.add(fhir.CodeBusinessRule, diag, "ServiceRequest.supportingInfo")
		return Consent{}
	}
	var problems issueList
	for _, r := range consents {
		cons := decodeAs[rawConsent](r.res)
		path := c.resPath(r)
		ok := true
		if cons.Status != "active" {
			problems.add(fhir.CodeBusinessRule, "Consent.status is '"+cons.Status+"'; "+consentRule, path+".status")
			ok = false
		}
		if cons.Provision != nil && cons.Provision.Type == "deny" {
			problems.add(fhir.CodeBusinessRule, "Consent.provision.type is 'deny': the patient refused; the referral cannot be sent", path+".provision.type")
			ok = false
		}
		if cons.Patient != nil && subj.ok && !c.samePatient(*cons.Patient, subj) {
			problems.add(fhir.CodeInvariant, "Consent.patient is not the referral's subject: the consent must be the referred person's", path+".patient")
			ok = false
		}
		if ok {
			return Consent{
				Recorded: true,
				Status:   cons.Status,
				Date:     cons.DateTime,
				Scope:    ccText(cons.Scope),
				Source:   "Consent",
			}
		}
	}
	*is = append(*is, problems...)
	return Consent{}
}

// samePatient reports whether a Consent.patient reference designates the subject: the same reference, or a
// Patient (contained or logical) sharing an NHS number with it. A display-only reference cannot be checked
// and is accepted.
func (c *ctx) samePatient(p rawRef, subj subjectInfo) bool {
	if p.Reference != "" && p.Reference == subj.reference {
		return true
	}
	if id := p.Identifier; id != nil && id.System == NHSNumberSystem {
		return subj.nhs[id.Value]
	}
	r := c.resolve(p)
	switch r.kind {
	case refNone:
		return p.Identifier == nil
	case refLocal:
		if r.found && r.typ == "Patient" {
			for _, id := range decodeAs[rawPatient](r.res).Identifier {
				if id.System == NHSNumberSystem && subj.nhs[id.Value] {
					return true
				}
			}
		}
	case refURN, refLiteral:
	}
	return false
}

// storedServiceRequest returns raw with resourceType, id and meta first and the other members in their
// original order, compacted.
func storedServiceRequest(raw json.RawMessage, id string, now time.Time) (json.RawMessage, error) {
	// Fast path: fhir hands over Raw compact, without id and meta, usually with resourceType first; splice
	// instead of re-encoding every member (this is on the intake hot path).
	const head = `{"resourceType":"ServiceRequest",`
	if bytes.HasPrefix(raw, []byte(head)) && !bytes.Contains(raw[:min(len(raw), 64)], []byte(`"id":`)) {
		idJSON, err := json.Marshal(id)
		if err != nil {
			return nil, fmt.Errorf("mapping: id: %w", err)
		}
		meta, err := json.Marshal(fhir.Meta{VersionID: "1", LastUpdated: fhir.ExactInstant(now)})
		if err != nil {
			return nil, fmt.Errorf("mapping: meta: %w", err)
		}
		out := make([]byte, 0, len(raw)+len(idJSON)+len(meta)+16)
		out = append(out, `{"resourceType":"ServiceRequest","id":`...)
		out = append(out, idJSON...)
		out = append(out, `,"meta":`...)
		out = append(out, meta...)
		out = append(out, ',')
		out = append(out, raw[len(head):]...)
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: ServiceRequest JSON is not an object", ErrBadInput)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"resourceType":"ServiceRequest","id":`)
	idJSON, _ := json.Marshal(id)
	buf.Write(idJSON)
	meta, err := json.Marshal(fhir.Meta{VersionID: "1", LastUpdated: fhir.ExactInstant(now)})
	if err != nil {
		return nil, fmt.Errorf("mapping: meta: %w", err)
	}
	buf.WriteString(`,"meta":`)
	buf.Write(meta)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: ServiceRequest JSON: %w", ErrBadInput, err)
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, fmt.Errorf("%w: ServiceRequest JSON: %w", ErrBadInput, err)
		}
		switch key {
		case "resourceType", "id", "meta":
			continue
		}
		k, _ := json.Marshal(key)
		buf.WriteByte(',')
		buf.Write(k)
		buf.WriteByte(':')
		if err := json.Compact(&buf, val); err != nil {
			return nil, fmt.Errorf("%w: ServiceRequest JSON: %w", ErrBadInput, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

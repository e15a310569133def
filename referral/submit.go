package referral

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Submission is a referral as a GP system sends it: the parsed ServiceRequest (or transaction Bundle) and,
// for a conditional create (If-None-Exist: identifier=…), the identifier that must not exist yet.
type Submission struct {
	Parsed      *fhir.Submission
	IfNoneExist *mapping.Identifier
}

// Submit accepts a referral from a GP client: it checks the referring practice against the client's
// practices, answers a conditional create or an identical resend with the existing referral, maps the
// ServiceRequest (validation, consent, routing) and writes the referral, its Task and its outbox messages in
// one transaction, with the audit record of its creation when the Service has an Auditor that lends chains
// (outbox.AuditLog): a record that cannot be written fails the create (fault.Unavailable, nothing written).
// Created is false for a resend. Errors: fault.Forbidden (not a GP client, or another
// practice), fault.Rule (business rules, every issue at once), outbox.ErrConflict (the identifier is used by
// another referral of the same practice), fault.Stale (a conditional create that matches several referrals).
// Identifiers are the referring practice's own keys: another practice's referral with the same identifier is
// never found, never a conflict, and nothing about it is revealed.
func (s *Service) Submit(ctx context.Context, c Caller, sub Submission) (outbox.CreateResult, error) {
	cl := c.Client
	if err := MaySubmit(c); err != nil {
		return outbox.CreateResult{}, err
	}
	ods, expr, ok := mapping.RequesterODS(sub.Parsed)
	var practiceIssue *fhir.Issue
	switch {
	case ok && !cl.MayReferFrom(ods):
		return outbox.CreateResult{}, fhir.NewError(fault.Forbidden, fhir.CodeForbidden,
			fmt.Sprintf("this client may not refer from practice %s (requester's organisation); it acts for %s",
				ods, strings.Join(cl.Practices, ", ")), "ServiceRequest.requester", expr)
	case ok:
		ods = cl.Practice(ods) // as the directory spells it, so that scoping by practice is exact
	case !ok && len(cl.Practices) == 1:
		ods = cl.Practices[0]
	case !ok:
		practiceIssue = &fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule,
			Diagnostics: "this client acts for several practices: identify the referring practice by the requester's organisation ODS code (https://fhir.nhs.uk/Id/ods-organization-code)",
			Expression:  []string{"ServiceRequest.requester"}}
	}
	if sub.IfNoneExist != nil {
		existing, found, err := s.ifNoneExist(ctx, cl, ods, *sub.IfNoneExist)
		if err != nil || found {
			return existing, err
		}
	}
	caps, err := s.capacities(ctx)
	if err != nil {
		return outbox.CreateResult{}, err
	}
	in, err := mapping.Build(sub.Parsed, mapping.BuildInput{Directory: s.cfg.Directory, Capacities: caps, PracticeODS: ods, Now: s.Now(), NewID: s.newID,
		Actor: eventActor(ctx, c)})
	if practiceIssue != nil {
		// Report every business-rule issue at once: the practice one joins mapping's.
		var fe *fhir.Error
		if errors.As(err, &fe) && fe.Kind == fault.Rule {
			return outbox.CreateResult{}, &fhir.Error{Kind: fe.Kind, Issues: append([]fhir.Issue{*practiceIssue}, fe.Issues...)}
		}
		if err == nil {
			return outbox.CreateResult{}, &fhir.Error{Kind: fault.Rule, Issues: []fhir.Issue{*practiceIssue}}
		}
	}
	if err != nil {
		return outbox.CreateResult{}, err
	}
	res, audited, err := s.create(ctx, c, in)
	if err != nil {
		return outbox.CreateResult{}, err
	}
	if !res.Created && !Visible(cl, res.Referral) {
		// The identifier belongs to a referral this client cannot see: say no more than "taken".
		return outbox.CreateResult{}, outbox.ErrConflict
	}
	action := outbox.AuditRead // a resend is answered with the existing referral
	if res.Created {
		action = outbox.AuditCreate
	}
	if !audited {
		if err := s.audit(ctx, c, action, ByServiceRequestID, res.Referral); err != nil {
			return outbox.CreateResult{}, err
		}
	}
	if res.Created {
		s.log.Info("referral created", "request_id", c.RequestID, "referral_id", res.Referral.Record.ID,
			"service", res.Referral.Record.Service.ID, "client", cl.ID)
	} else {
		s.log.Info("referral resent", "request_id", c.RequestID, "referral_id", res.Referral.Record.ID, "client", cl.ID)
	}
	return res, nil
}

// Lender is an Auditor that lends chains (outbox.AuditLog.Lend) for records a store appends in the
// transaction of the change they record.
type Lender interface {
	Lend() outbox.Lane
}

// create writes the intake in. With an Auditor that lends chains, the record of the creation is appended in
// the creating transaction (outbox.Store.CreateAuditedReferral), so that no crash or failing append can leave
// a referral created without it; audited then says the answer needs no record of its own (a resend's is
// still to be written: it appends nothing).
func (s *Service) create(ctx context.Context, c Caller, in mapping.Intake) (res outbox.CreateResult, audited bool, err error) {
	l, ok := s.auditor.(Lender)
	if !ok {
		res, err = s.store.CreateReferral(ctx, in)
		return res, false, err
	}
	lane := l.Lend()
	ref := outbox.Referral{Referral: in.Referral}
	rec := s.auditRecord(ctx, c, outbox.AuditCreate, resourceOf(ByServiceRequestID), idOf(ref, ByServiceRequestID), ref)
	res, err = s.store.CreateAuditedReferral(ctx, in, lane.Disclosure(rec))
	switch {
	case errors.Is(err, outbox.ErrAuditHead):
		// The chain itself refused the record (changed behind the store's back): the lane is not lent again,
		// and the client's retry starts a new chain.
		return res, false, err
	case err != nil:
		lane.Release(nil) // the head is where it was, unless the outcome is unknown: the next holder reads it
		return res, false, err
	}
	lane.Release(res.Audit)
	return res, res.Created, nil
}

// MaySubmit says whether the caller may post referrals at all (GP clients only: fault.Forbidden otherwise).
func MaySubmit(c Caller) error {
	if c.Client.Role != config.RoleGP {
		return fhir.NewError(fault.Forbidden, fhir.CodeForbidden, "only GP clients may post referrals")
	}
	return nil
}

// ifNoneExist implements conditional create on identifier, among the referrals of the referring practice
// (ods; every practice of the client when it is not known yet): one match is returned as it is. Other
// practices' referrals are not searched, so the answer says nothing about them.
func (s *Service) ifNoneExist(ctx context.Context, cl config.Client, ods string, id mapping.Identifier) (outbox.CreateResult, bool, error) {
	practices := cl.Practices
	if ods != "" {
		practices = []string{ods}
	}
	refs, _, err := s.store.SearchReferrals(ctx, outbox.ReferralQuery{Identifier: &id, Practices: practices, Limit: 2})
	if err != nil {
		return outbox.CreateResult{}, false, err
	}
	switch {
	case len(refs) == 0:
		return outbox.CreateResult{}, false, nil
	case len(refs) > 1:
		return outbox.CreateResult{}, false, fhir.NewError(fault.Stale, fhir.CodeDuplicate,
			"If-None-Exist matches more than one referral; use an identifier with its system", "If-None-Exist")
	case !Visible(cl, refs[0]):
		return outbox.CreateResult{}, false, outbox.ErrConflict
	}
	return outbox.CreateResult{Referral: refs[0], Created: false}, true, nil
}

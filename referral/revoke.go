package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// GP cancellation (issue 4): an update of the ServiceRequest setting status revoked cancels the referral's Task
// with the reason RevokeReason (a GP system that wants to give its own reason cancels the Task instead:
// UpdateTask with status cancelled and a statusReason). The community service is told by a referral.cancelled
// webhook when it has a webhook; a pull-only service sees the status in its inbox.

// RevokeReason is the Task.statusReason of a referral cancelled by revoking its ServiceRequest.
const RevokeReason = "Withdrawn by the referring practice (ServiceRequest revoked)"

// ServiceRequestForUpdate loads the ServiceRequest id for an update by its requesting practice: other clients
// that can see it get fault.Forbidden, everyone else outbox.ErrNotFound.
func (s *Service) ServiceRequestForUpdate(ctx context.Context, c Caller, id string) (outbox.Referral, error) {
	ref, err := s.Get(ctx, c, ByServiceRequestID, id)
	if err != nil {
		return outbox.Referral{}, err
	}
	if c.Client.Role != config.RoleGP {
		return outbox.Referral{}, fhir.NewError(fault.Forbidden, fhir.CodeForbidden,
			"only the requesting practice may change a ServiceRequest (revoke it to cancel the referral)")
	}
	return ref, nil
}

// Revoke takes a ServiceRequest update from the requesting practice (body: the whole ServiceRequest, as read or
// as a JSON Patch left it) for the referral ref (from ServiceRequestForUpdate) and cancels the referral when
// the update revokes it. Only status may differ from the current ServiceRequest, and only to revoked (fault.Rule
// naming each element that differs). expectVersion, when not empty, must be the ServiceRequest's current
// versionId (outbox.ErrVersionMismatch otherwise). Revoking a revoked ServiceRequest again changes nothing; a
// referral already final otherwise (completed, rejected, failed, entered-in-error) is a *mapping.TransitionError.
func (s *Service) Revoke(ctx context.Context, c Caller, ref outbox.Referral, expectVersion string, body []byte) (outbox.Referral, error) {
	if err := fhir.ValidateResource(body, "ServiceRequest"); err != nil {
		return outbox.Referral{}, err
	}
	cur, err := s.ServiceRequest(ctx, ref)
	if err != nil {
		return outbox.Referral{}, err
	}
	if expectVersion != "" && expectVersion != cur.Version {
		return outbox.Referral{}, fmt.Errorf("service request is at version %s: %w", cur.Version, outbox.ErrVersionMismatch)
	}
	status, err := revokeStatus(ref, cur.Body, body)
	if err != nil {
		return outbox.Referral{}, err
	}
	if status == cur.Status { // a repeat: no change, but it finishes carrying the end to forwarded referrals
		if err := s.propagateEnd(ctx, c, ref, s.Now()); err != nil {
			return outbox.Referral{}, err
		}
		return ref, nil
	}
	change := mapping.StatusChange{To: mapping.StatusCancelled, By: mapping.ActorRequester, Reason: RevokeReason, NewID: s.newID,
		Actor: eventActor(ctx, c)}
	now := s.Now()
	apply := s.statusUpdate(change, now)
	var before outbox.Referral
	next, err := s.store.UpdateReferral(ctx, ref.Record.ID, 0, now,
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			before = cur
			if expectVersion != "" && srVersionOf(cur) != expectVersion { // the ServiceRequest changed since it was read
				return cur.Referral, nil, outbox.ErrVersionMismatch
			}
			return apply(cur)
		})
	if err != nil {
		return outbox.Referral{}, err
	}
	if before.Record.ID == "" {
		before = ref
	}
	_ = s.audit(ctx, c, outbox.AuditUpdate, ByServiceRequestID, next) // a change: logged, never refused
	s.logStatusChange(c, before, next)
	if err := s.propagateEnd(ctx, c, next, now); err != nil { // the referrals a link worker forwarded end too
		return outbox.Referral{}, err
	}
	return next, nil
}

// revokeStatus compares a ServiceRequest sent by the GP with the current one: every element but meta and
// status must be equal (fault.Rule naming each that differs); status must be the current one or revoked.
func revokeStatus(ref outbox.Referral, cur, in []byte) (string, error) {
	curM, err := objectMembers(cur)
	if err != nil {
		return "", fmt.Errorf("stored service request: %w", err)
	}
	inM, err := objectMembers(in)
	if err != nil {
		return "", fhir.NewError(fault.Invalid, fhir.CodeStructure, "the body must be a ServiceRequest object", "ServiceRequest")
	}
	var issues []fhir.Issue
	var id string
	if raw, ok := inM["id"]; !ok || json.Unmarshal(raw, &id) != nil || id != ref.Record.ServiceRequestID {
		return "", fhir.NewError(fault.Invalid, fhir.CodeInvalid, "ServiceRequest.id is required and must equal the id in the URL", "ServiceRequest.id")
	}
	for _, k := range changedMembers(cur, in, "resourceType", "id", "meta", "status") {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Expression: []string{"ServiceRequest." + k},
			Diagnostics: "ServiceRequest." + k + " cannot be changed: an update may only set status to revoked (to cancel the referral); for any other change, revoke it and send a new referral"})
	}
	var st, curSt string
	_ = json.Unmarshal(curM["status"], &curSt)
	if err := json.Unmarshal(inM["status"], &st); err != nil || (st != curSt && st != "revoked") {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Expression: []string{"ServiceRequest.status"},
			Diagnostics: fmt.Sprintf("ServiceRequest.status can only be changed to revoked (it is %s)", curSt)})
	}
	if len(issues) > 0 {
		return "", &fhir.Error{Kind: fault.Rule, Issues: issues}
	}
	return st, nil
}

// RenderedServiceRequest is a referral's ServiceRequest as clients read it now.
type RenderedServiceRequest struct {
	Body     []byte
	Status   string
	Version  string
	Modified time.Time
}

// ServiceRequest renders the stored ServiceRequest with its current status. The store keeps the ServiceRequest
// JSON as it was accepted (version 1); when the referral's ServiceRequestStatus has moved on (revoked on
// cancellation, completed, entered-in-error) the status is replaced, meta.versionId is the stored one plus 1
// and meta.lastUpdated the time of that change (from the referral's timeline).
func (s *Service) ServiceRequest(ctx context.Context, ref outbox.Referral) (RenderedServiceRequest, error) {
	out := RenderedServiceRequest{Body: ref.ServiceRequest, Version: srVersion(ref), Modified: ref.Record.CreatedAt}
	stored, ok := fhir.TopLevelString(ref.ServiceRequest, "status")
	if !ok {
		var head struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(ref.ServiceRequest, &head); err != nil {
			return out, fmt.Errorf("stored service request: %w", err)
		}
		stored = head.Status
	}
	out.Status = stored
	if ref.ServiceRequestStatus == "" || ref.ServiceRequestStatus == stored {
		return out, nil
	}
	n, err := strconv.Atoi(out.Version)
	if err != nil {
		n = 1
	}
	out.Status, out.Version, out.Modified = ref.ServiceRequestStatus, strconv.Itoa(n+1), s.srChangedAt(ctx, ref)
	body, err := replaceMembers(ref.ServiceRequest, map[string]func(json.RawMessage) (json.RawMessage, error){
		"status": func(json.RawMessage) (json.RawMessage, error) { return json.Marshal(out.Status) },
		"meta": func(old json.RawMessage) (json.RawMessage, error) {
			var meta map[string]json.RawMessage
			if err := json.Unmarshal(old, &meta); err != nil || meta == nil {
				meta = map[string]json.RawMessage{}
			}
			meta["versionId"] = mustJSON(out.Version)
			meta["lastUpdated"] = mustJSON(fhir.Instant(out.Modified))
			return json.Marshal(meta)
		},
	})
	if err != nil {
		return out, fmt.Errorf("render service request: %w", err)
	}
	out.Body = body
	return out, nil
}

// srChangedAt is when the referral reached the status that changed its ServiceRequest's status.
func (s *Service) srChangedAt(ctx context.Context, ref outbox.Referral) time.Time {
	entries, err := s.store.Timeline(ctx, ref.Record.ID)
	if err != nil {
		s.log.Warn("referral timeline unavailable; ServiceRequest lastUpdated approximated", "referral_id", ref.Record.ID, "err", err)
		return ref.Record.UpdatedAt
	}
	for _, e := range entries {
		switch e.Status {
		case mapping.StatusCancelled, mapping.StatusCompleted, mapping.StatusEnteredInError:
			return e.At
		case mapping.StatusRequested, mapping.StatusReceived, mapping.StatusAccepted, mapping.StatusRejected,
			mapping.StatusInProgress, mapping.StatusOnHold, mapping.StatusFailed:
		}
	}
	return ref.Record.UpdatedAt
}

// srVersion reads meta.versionId of the stored ServiceRequest (without decoding the whole document).
func srVersion(ref outbox.Referral) string {
	if meta, ok := fhir.TopLevel(ref.ServiceRequest, "meta"); ok {
		if v, ok := fhir.TopLevelString(meta, "versionId"); ok && v != "" {
			return v
		}
	}
	return "1"
}

// srVersionOf is the ServiceRequest version clients see (see ServiceRequest), without rendering it.
func srVersionOf(ref outbox.Referral) string {
	v := srVersion(ref)
	stored, ok := fhir.TopLevelString(ref.ServiceRequest, "status")
	if !ok || ref.ServiceRequestStatus == "" || ref.ServiceRequestStatus == stored {
		return v
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		n = 1
	}
	return strconv.Itoa(n + 1)
}

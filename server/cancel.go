package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// GP cancellation (issue 4): PUT or PATCH /fhir/ServiceRequest/{id} setting status revoked cancels the
// referral's Task with the reason revokeReason (a GP system that wants to give its own reason cancels the Task
// instead: PUT/PATCH /fhir/Task/{id} with status cancelled and statusReason). The community service is told by
// a referral.cancelled webhook when it has a webhook; a pull-only service sees the status in its inbox.

// revokeReason is the Task.statusReason of a referral cancelled by revoking its ServiceRequest.
const revokeReason = "Withdrawn by the referring practice (ServiceRequest revoked)"

// srChangeable is what a ServiceRequest update may change.
var srChangeable = []string{"status"}

// updateServiceRequest is PUT /fhir/ServiceRequest/{id}: the ServiceRequest as read, with status revoked.
func (s *Server) updateServiceRequest(w http.ResponseWriter, r *http.Request) {
	ref, err := s.srForCancel(r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	body, err := s.readFHIRBody(w, r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.revoke(w, r, ref, body)
}

// patchServiceRequest is PATCH /fhir/ServiceRequest/{id} with a JSON Patch replacing /status with "revoked".
func (s *Server) patchServiceRequest(w http.ResponseWriter, r *http.Request) {
	ref, err := s.srForCancel(r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	ops, err := s.readJSONPatch(w, r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	cur, err := s.renderServiceRequest(r.Context(), ref)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	body, err := applyJSONPatch(cur.body, ops, "ServiceRequest", srChangeable)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.revoke(w, r, ref, body)
}

// srForCancel loads the ServiceRequest {id} for an update by its requesting practice: other clients that can
// see it get 403, everyone else 404.
func (s *Server) srForCancel(r *http.Request) (outbox.Referral, error) {
	id := mux.Vars(r)["id"]
	ref, err := s.getReferral(r, id)
	if err == nil && ref.Record.ServiceRequestID != id {
		err = outbox.ErrNotFound
	}
	if err != nil {
		return outbox.Referral{}, err
	}
	if clientFrom(r.Context()).Role != config.RoleGP {
		return outbox.Referral{}, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden,
			"only the requesting practice may change a ServiceRequest (revoke it to cancel the referral)")
	}
	return ref, nil
}

// revoke checks the new ServiceRequest (body) against the current one (only status may differ, and only to
// revoked) and cancels the referral. If-Match is optional here (W/"<versionId>" of the ServiceRequest; 412
// when stale). Revoking a revoked ServiceRequest again is a no-op (200); a referral already final otherwise
// (completed, rejected, failed, entered-in-error) is a 409.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request, ref outbox.Referral, body []byte) {
	if err := fhir.ValidateResource(body, "ServiceRequest"); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	expect := ""
	if h := r.Header.Get("If-Match"); h != "" {
		v, ok := parseETagVersion(h)
		if !ok {
			s.writeFHIRError(w, r, fhir.NewError(http.StatusBadRequest, fhir.CodeInvalid, `If-Match must name one version: W/"<versionId>"`, "If-Match"))
			return
		}
		expect = strconv.Itoa(v)
	}
	cur, err := s.renderServiceRequest(r.Context(), ref)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	if expect != "" && expect != cur.version {
		s.writeFHIRError(w, r, fmt.Errorf("service request is at version %s: %w", cur.version, outbox.ErrVersionMismatch))
		return
	}
	status, err := srUpdateStatus(ref, cur.body, body)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	next := ref
	if status != cur.status {
		from := ref.Record.Status
		change := mapping.StatusChange{To: mapping.StatusCancelled, By: mapping.ActorRequester, Reason: revokeReason, NewID: s.newID}
		now := s.now().UTC().Truncate(time.Microsecond)
		apply := s.statusUpdate(change, now)
		next, err = s.store.UpdateReferral(r.Context(), ref.Record.ID, 0, now,
			func(c outbox.Referral) (mapping.Referral, []mapping.Event, error) {
				if expect != "" && srVersionOf(c) != expect { // the ServiceRequest changed since it was read
					return c.Referral, nil, outbox.ErrVersionMismatch
				}
				return apply(c)
			})
		if err != nil {
			s.writeFHIRError(w, r, err)
			return
		}
		s.logStatusChange(r, ref, from, next)
	}
	out, err := s.renderServiceRequest(r.Context(), next)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.setResourceHeaders(w, r, "ServiceRequest", next.Record.ServiceRequestID, out.version, out.modified)
	s.writeFHIR(w, http.StatusOK, out.body)
}

// srUpdateStatus compares a ServiceRequest sent by the GP with the current one: every element but meta and
// status must be equal (422 naming each that differs); status must be the current one or revoked (422).
func srUpdateStatus(ref outbox.Referral, cur, in []byte) (string, error) {
	curM, err := objectMembers(cur)
	if err != nil {
		return "", fmt.Errorf("stored service request: %w", err)
	}
	inM, err := objectMembers(in)
	if err != nil {
		return "", fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, "the body must be a ServiceRequest object", "ServiceRequest")
	}
	var issues []fhir.Issue
	var id string
	if raw, ok := inM["id"]; !ok || json.Unmarshal(raw, &id) != nil || id != ref.Record.ServiceRequestID {
		return "", fhir.NewError(http.StatusBadRequest, fhir.CodeInvalid, "ServiceRequest.id is required and must equal the id in the URL", "ServiceRequest.id")
	}
	keys := make([]string, 0, len(curM)+len(inM))
	for k := range curM {
		keys = append(keys, k)
	}
	for k := range inM {
		if _, ok := curM[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch k {
		case "resourceType", "id", "meta", "status":
			continue
		}
		if !canonicalEqual(curM[k], inM[k]) {
			issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Expression: []string{"ServiceRequest." + k},
				Diagnostics: "ServiceRequest." + k + " cannot be changed: an update may only set status to revoked (to cancel the referral); for any other change, revoke it and send a new referral"})
		}
	}
	var st, curSt string
	_ = json.Unmarshal(curM["status"], &curSt)
	if err := json.Unmarshal(inM["status"], &st); err != nil || (st != curSt && st != "revoked") {
		issues = append(issues, fhir.Issue{Severity: fhir.SeverityError, Code: fhir.CodeBusinessRule, Expression: []string{"ServiceRequest.status"},
			Diagnostics: fmt.Sprintf("ServiceRequest.status can only be changed to revoked (it is %s)", curSt)})
	}
	if len(issues) > 0 {
		return "", &fhir.Error{Status: http.StatusUnprocessableEntity, Issues: issues}
	}
	return st, nil
}

// renderedSR is the ServiceRequest as clients read it.
type renderedSR struct {
	body     []byte
	status   string
	version  string
	modified time.Time
}

// renderServiceRequest renders the stored ServiceRequest with its current status. The store keeps the
// ServiceRequest JSON as it was accepted (version 1); when the referral's ServiceRequestStatus has moved on
// (revoked on cancellation, completed, entered-in-error) the status is replaced, meta.versionId is the stored
// one plus 1 and meta.lastUpdated the time of that change (from the referral timeline when the store keeps
// one, else the referral's last update).
func (s *Server) renderServiceRequest(ctx context.Context, ref outbox.Referral) (renderedSR, error) {
	out := renderedSR{body: ref.ServiceRequest, version: srVersion(ref), modified: ref.Record.CreatedAt}
	stored, ok := topLevelString(ref.ServiceRequest, "status")
	if !ok {
		var head struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(ref.ServiceRequest, &head); err != nil {
			return out, fmt.Errorf("stored service request: %w", err)
		}
		stored = head.Status
	}
	out.status = stored
	if ref.ServiceRequestStatus == "" || ref.ServiceRequestStatus == stored {
		return out, nil
	}
	n, err := strconv.Atoi(out.version)
	if err != nil {
		n = 1
	}
	out.status, out.version, out.modified = ref.ServiceRequestStatus, strconv.Itoa(n+1), s.srChangedAt(ctx, ref)
	body, err := replaceMembers(ref.ServiceRequest, map[string]func(json.RawMessage) (json.RawMessage, error){
		"status": func(json.RawMessage) (json.RawMessage, error) { return json.Marshal(out.status) },
		"meta": func(old json.RawMessage) (json.RawMessage, error) {
			var meta map[string]json.RawMessage
			if err := json.Unmarshal(old, &meta); err != nil || meta == nil {
				meta = map[string]json.RawMessage{}
			}
			meta["versionId"] = mustJSON(out.version)
			meta["lastUpdated"] = mustJSON(fhir.Instant(out.modified))
			return json.Marshal(meta)
		},
	})
	if err != nil {
		return out, fmt.Errorf("render service request: %w", err)
	}
	out.body = body
	return out, nil
}

// srChangedAt is when the referral reached the status that changed its ServiceRequest's status.
func (s *Server) srChangedAt(ctx context.Context, ref outbox.Referral) time.Time {
	tl, ok := s.store.(outbox.Timeliner)
	if !ok {
		return ref.Record.UpdatedAt
	}
	entries, err := tl.Timeline(ctx, ref.Record.ID)
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

// srVersionOf is the ServiceRequest version clients see (see renderServiceRequest), without rendering it.
func srVersionOf(ref outbox.Referral) string {
	v := srVersion(ref)
	stored, ok := topLevelString(ref.ServiceRequest, "status")
	if !ok || ref.ServiceRequestStatus == "" || ref.ServiceRequestStatus == stored {
		return v
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		n = 1
	}
	return strconv.Itoa(n + 1)
}

// objectMembers splits a JSON object into its members.
func objectMembers(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// replaceMembers rewrites the named top-level members of a JSON object, keeping every member's position.
func replaceMembers(b []byte, repl map[string]func(json.RawMessage) (json.RawMessage, error)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		if f, ok := repl[key]; ok {
			if val, err = f(val); err != nil {
				return nil, err
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(mustJSON(key))
		buf.WriteByte(':')
		buf.Write(val)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// mustJSON marshals a string (cannot fail).
func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// canonicalEqual reports whether two JSON values (nil: absent) are equal as canonical JSON.
func canonicalEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ca, errA := fhir.Canonical(a)
	cb, errB := fhir.Canonical(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca, cb)
}

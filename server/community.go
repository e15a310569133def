package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The community API (/community/v1, DESIGN.md): JSON for community services without FHIR. Every route is
// communityOnly (other roles: 403) and scoped to the client's one service (other services' referrals: 404).

const (
	communityDefaultLimit = 50
	communityMaxLimit     = 200
	// maxReasonRunes and maxOutcomeRunes bound the free texts a service sends (they are stored and shown to the GP).
	maxReasonRunes  = 1000
	maxOutcomeRunes = 4000
)

// communityRecord is a referral as the community API shows it: the community referral record plus the
// Task's notes (task_notes: author, time, text, oldest first), which the service and the GP practice write.
type communityRecord struct {
	mapping.Record
	TaskNotes []mapping.TaskNote `json:"task_notes,omitempty"`
}

// communityView renders a referral for the community API.
func communityView(ref outbox.Referral) communityRecord {
	return communityRecord{Record: ref.Record, TaskNotes: ref.TaskNotes}
}

// noteAuthor is the author shown on a note a client adds: a community service's name (the directory requires
// one), a GP client's id.
func (s *Server) noteAuthor(cl config.Client) string {
	if cl.Role == config.RoleCommunity {
		return s.serviceName(cl.Service)
	}
	return cl.ID
}

// inboxPage is the body of GET /community/v1/referrals.
type inboxPage struct {
	Referrals []communityRecord `json:"referrals"`
	// Next is the cursor of the next page when more referrals match now (absent at the end).
	Next string `json:"next,omitempty"`
	// Resume is where the next poll starts (pass it as ?since=): the cursor of the last referral on this page,
	// or the since the client sent when the page is empty. Absent only for an empty first poll.
	Resume string `json:"resume,omitempty"`
}

// communityList is GET /community/v1/referrals: the pull inbox, ordered by (updated_at, id).
func (s *Server) communityList(w http.ResponseWriter, r *http.Request) {
	cl := clientFrom(r.Context())
	q, since, err := parseInboxQuery(r.URL.Query(), cl)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	refs, next, err := s.store.SearchReferrals(r.Context(), q)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	page := inboxPage{Referrals: make([]communityRecord, 0, len(refs)), Resume: since}
	for _, ref := range refs {
		if ref.Record.Service.ID != cl.Service { // defence in depth: the query is already scoped
			continue
		}
		page.Referrals = append(page.Referrals, communityView(ref))
	}
	if n := len(refs); n > 0 {
		last := refs[n-1].Record
		page.Resume = encodeCursor(outbox.Cursor{UpdatedAt: last.UpdatedAt, ID: last.ID})
	}
	if next != nil {
		page.Next = encodeCursor(*next)
	}
	s.writeJSON(w, http.StatusOK, page)
}

// parseInboxQuery validates the inbox's query parameters (status, since, limit; anything else is a 400 naming
// it) and returns the scoped query and the since value to echo.
func parseInboxQuery(vals url.Values, cl config.Client) (outbox.ReferralQuery, string, error) {
	q := outbox.ReferralQuery{ServiceID: cl.Service, Limit: communityDefaultLimit}
	if cl.Service == "" { // a community client always has a service (config validates); never widen the scope
		q.ServiceID = "\x00no-service"
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	bad := func(field, code, msg string) error {
		return &jsonError{Status: http.StatusBadRequest, Code: code, Message: msg, Field: field}
	}
	var since string
	for _, k := range keys {
		if len(vals[k]) != 1 {
			return q, "", bad(k, "invalid_parameter", k+" must be given once")
		}
		v := vals[k][0]
		switch k {
		case "status":
			for _, part := range strings.Split(v, ",") {
				st, ok := mapping.ParseTaskStatus(strings.TrimSpace(part))
				if !ok {
					return q, "", bad("status", "invalid_status",
						fmt.Sprintf("status %q is not a referral status; use a comma list of %s", part, statusNames(mapping.AllStatuses())))
				}
				if !slices.Contains(q.Statuses, st) {
					q.Statuses = append(q.Statuses, st)
				}
			}
		case "since":
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				q.UpdatedAfter = t.UTC()
			} else if c, err := decodeCursor(v); err == nil {
				q.After = &c
			} else {
				return q, "", bad("since", "invalid_since",
					"since must be an RFC 3339 time (e.g. 2026-11-21T10:00:00Z) or a next/resume cursor returned by this API, unchanged")
			}
			since = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > communityMaxLimit {
				return q, "", bad("limit", "invalid_limit", fmt.Sprintf("limit must be a whole number from 1 to %d", communityMaxLimit))
			}
			q.Limit = n
		default:
			return q, "", bad(k, "unknown_parameter", fmt.Sprintf("query parameter %q is not supported; use status, since and limit", k))
		}
	}
	return q, since, nil
}

// communityReferral loads the referral {id} (a referral id) if it belongs to the client's service; any other
// referral is a 404, never a 403 that would reveal that it exists.
func (s *Server) communityReferral(r *http.Request) (outbox.Referral, error) {
	id := mux.Vars(r)["id"]
	ref, err := s.getReferral(r, id)
	if err != nil {
		return outbox.Referral{}, err
	}
	if ref.Record.ID != id {
		return outbox.Referral{}, outbox.ErrNotFound
	}
	return ref, nil
}

// communityGet is GET /community/v1/referrals/{id}: one referral record.
func (s *Server) communityGet(w http.ResponseWriter, r *http.Request) {
	ref, err := s.communityReferral(r)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(ref.Record.Version)))
	s.writeJSON(w, http.StatusOK, communityView(ref))
}

// statusRequest is the body of POST /community/v1/referrals/{id}/status.
type statusRequest struct {
	Status      string           `json:"status"`
	Reason      string           `json:"reason"`
	Outcome     string           `json:"outcome"`
	OutcomeCode *mapping.Concept `json:"outcome_code"`
	// Note, when given, is added to the Task's notes (author: the service, time: now) with the change; with
	// the status the referral already has it is a note-only change.
	Note *string `json:"note"`
}

// communityStatuses are the statuses a community service sets (the Task vocabulary without the requester's).
var communityStatuses = []mapping.TaskStatus{
	mapping.StatusReceived, mapping.StatusAccepted, mapping.StatusRejected, mapping.StatusInProgress,
	mapping.StatusOnHold, mapping.StatusCompleted, mapping.StatusFailed,
}

// communityStatus is POST /community/v1/referrals/{id}/status: acknowledge, accept, decline, start, hold,
// complete or fail a referral, optionally adding a note. The same status again without a note is a no-op
// (200, the record unchanged, no new version); with a note it adds the note (a new version).
func (s *Server) communityStatus(w http.ResponseWriter, r *http.Request) {
	ref, err := s.communityReferral(r)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	expect := 0
	if h := r.Header.Get("If-Match"); h != "" {
		v, ok := parseETagVersion(h)
		if !ok {
			s.writeAPIError(w, r, &jsonError{Status: http.StatusBadRequest, Code: "invalid_if_match", Field: "If-Match",
				Message: `If-Match must name one version, e.g. "3" (the record's version or ETag)`})
			return
		}
		expect = v
	}
	body, err := s.readJSONBody(w, r)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	req, err := decodeStatusRequest(body)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	change := mapping.StatusChange{To: mapping.TaskStatus(req.Status), By: mapping.ActorCommunity, Reason: req.Reason, NewID: s.newID}
	if req.Outcome != "" || req.OutcomeCode != nil {
		change.Outcome = &mapping.Outcome{Text: req.Outcome, Code: req.OutcomeCode}
	}
	if req.Note != nil {
		change.Notes, change.NoteAuthor = []string{*req.Note}, s.noteAuthor(clientFrom(r.Context()))
	}
	from := ref.Record.Status
	next, err := s.changeStatus(r, ref, expect, change)
	if err != nil {
		s.writeAPIError(w, r, communityFieldError(err))
		return
	}
	s.logStatusChange(r, ref, from, next)
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(next.Record.Version)))
	s.writeJSON(w, http.StatusOK, communityView(next))
}

// changeStatus applies one status change to a referral through the state machine, in one store transaction
// with the events it causes. The same status again is a no-op that returns the referral unchanged. expect > 0
// must be the current version (outbox.ErrVersionMismatch otherwise).
func (s *Server) changeStatus(r *http.Request, ref outbox.Referral, expect int, change mapping.StatusChange) (outbox.Referral, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	return s.store.UpdateReferral(r.Context(), ref.Record.ID, expect, now, s.statusUpdate(change, now))
}

// statusUpdate is the store update that applies change with mapping.ApplyStatus. The service is told of the
// requester's moves when it has a webhook: messages of one referral are delivered in order, so a cancellation
// queued behind a referral.created not yet delivered still arrives after it (or, when the service never got
// the referral, the store withdraws both: outbox.Store.UpdateReferral). now must be the time given to
// UpdateReferral, so that notes and event payloads carry the new version's time.
func (s *Server) statusUpdate(change mapping.StatusChange, now time.Time) outbox.ReferralUpdate {
	return func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		c := change
		svc, ok := s.cfg.Directory.Service(cur.Record.Service.ID)
		c.ServiceHasWebhook = ok && svc.Delivery.URL != ""
		c.ServiceHasReferral = c.ServiceHasWebhook
		next, events, err := mapping.ApplyStatus(cur.Referral, c, now)
		if errors.Is(err, mapping.ErrNoChange) {
			return cur.Referral, nil, outbox.ErrNoChange
		}
		return next, events, err
	}
}

// logStatusChange logs a status change (ids and statuses only: no patient data).
func (s *Server) logStatusChange(r *http.Request, ref outbox.Referral, from mapping.TaskStatus, next outbox.Referral) {
	if next.Record.Version == ref.Record.Version {
		s.log.Debug("referral status unchanged (repeat)", "request_id", requestID(r.Context()),
			"referral_id", ref.Record.ID, "status", next.Record.Status, "client", clientFrom(r.Context()).ID)
		return
	}
	s.log.Info("referral status changed", "request_id", requestID(r.Context()), "referral_id", ref.Record.ID,
		"from", from, "to", next.Record.Status, "version", next.Record.Version, "client", clientFrom(r.Context()).ID)
}

// communityFieldError names the community API's fields in the state machine's business-rule errors (which
// name Task elements): a missing reason is a 422 naming "reason", a misplaced outcome a 422 naming "outcome".
func communityFieldError(err error) error {
	var fe *fhir.Error
	if !errors.As(err, &fe) || len(fe.Issues) == 0 {
		return err
	}
	is := fe.Issues[0]
	out := &jsonError{Status: fe.Status, Code: string(is.Code), Message: is.Diagnostics}
	if len(is.Expression) > 0 {
		out.Field = is.Expression[0]
	}
	switch out.Field {
	case "Task.statusReason":
		out.Code, out.Field = "reason_required", "reason"
		out.Message = strings.Replace(out.Message, "a reason is required", "reason is required", 1)
	case "Task.output":
		out.Code, out.Field = "invalid_outcome", "outcome"
	case "Task.note":
		out.Code, out.Field = "too_many_notes", "note"
	}
	return out
}

// readJSONBody checks the media type (415: application/json) and size (413) of a JSON API request body.
func (s *Server) readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return nil, &jsonError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type",
			Message: fmt.Sprintf("Content-Type %q is not supported; send application/json", ct)}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, &jsonError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "Content-Type",
			Message: "only charset=utf-8 is supported"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &jsonError{Status: http.StatusRequestEntityTooLarge, Code: "too_large",
				Message: fmt.Sprintf("request body is larger than the limit of %d bytes", s.maxBody)}
		}
		return nil, &jsonError{Status: http.StatusBadRequest, Code: "invalid_body", Message: "could not read the request body"}
	}
	return body, nil
}

// decodeStatusRequest decodes a status change strictly: one JSON object, no duplicate or unknown fields
// (all unknown ones are named), the right types, a status from the community vocabulary, bounded texts and a
// well-formed outcome_code.
func decodeStatusRequest(body []byte) (statusRequest, error) {
	var req statusRequest
	bad := func(code, field, msg string) error {
		return &jsonError{Status: http.StatusBadRequest, Code: code, Field: field, Message: msg}
	}
	if !utf8.Valid(body) {
		return req, bad("invalid_json", "", "the body is not UTF-8")
	}
	if _, err := fhir.Canonical(body); err != nil {
		return req, bad("invalid_json", "", "the body must be one JSON object without duplicate keys")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return req, bad("invalid_json", "", "the body must be a JSON object")
	}
	if err := unknownFields(top, "", "status", "reason", "outcome", "outcome_code", "note"); err != nil {
		return req, err
	}
	if raw, ok := top["outcome_code"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		var oc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &oc); err != nil || oc == nil {
			return req, bad("invalid_type", "outcome_code", `outcome_code must be an object {"system", "code", "display"}`)
		}
		if err := unknownFields(oc, "outcome_code.", "system", "code", "display"); err != nil {
			return req, err
		}
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return req, bad("invalid_type", te.Field, fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String())))
		}
		return req, bad("invalid_json", "", "the body is not a valid status change")
	}
	st := mapping.TaskStatus(req.Status)
	switch {
	case req.Status == "":
		return req, bad("required", "status", "status is required: one of "+statusNames(communityStatuses))
	case !slices.Contains(communityStatuses, st):
		return req, bad("invalid_status", "status", fmt.Sprintf("status %q is not one a community service sets; use one of %s", req.Status, statusNames(communityStatuses)))
	case utf8.RuneCountInString(req.Reason) > maxReasonRunes:
		return req, bad("too_long", "reason", fmt.Sprintf("reason is longer than %d characters", maxReasonRunes))
	case utf8.RuneCountInString(req.Outcome) > maxOutcomeRunes:
		return req, bad("too_long", "outcome", fmt.Sprintf("outcome is longer than %d characters", maxOutcomeRunes))
	case req.Note != nil && strings.TrimSpace(*req.Note) == "":
		return req, bad("invalid_value", "note", "note must not be blank (leave it out to add none)")
	case req.Note != nil && mapping.CheckNoteText(*req.Note) != "":
		return req, bad("too_long", "note", fmt.Sprintf("note is longer than %d characters", mapping.MaxNoteRunes))
	}
	if oc := req.OutcomeCode; oc != nil {
		switch {
		case strings.TrimSpace(oc.Code) == "":
			return req, bad("required", "outcome_code.code", "outcome_code needs a code")
		case oc.System != "" && !absoluteURI(oc.System):
			return req, bad("invalid_value", "outcome_code.system", "outcome_code.system must be an absolute URI naming the code system")
		case len(oc.Code) > 200 || utf8.RuneCountInString(oc.Display) > 500:
			return req, bad("too_long", "outcome_code", "outcome_code.code or display is too long")
		}
	}
	return req, nil
}

// unknownFields is a 400 naming every member of obj not in allowed (prefix qualifies nested names).
func unknownFields(obj map[string]json.RawMessage, prefix string, allowed ...string) error {
	var unknown []string
	for k := range obj {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, prefix+k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return &jsonError{Status: http.StatusBadRequest, Code: "unknown_field", Field: strings.Join(unknown, ","),
		Message: fmt.Sprintf("unknown field(s) %s; allowed: %s", strings.Join(unknown, ", "), strings.Join(allowed, ", "))}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "ptr", "map":
		return "object"
	}
	return goKind
}

// absoluteURI reports whether s is an absolute URI (a scheme and no spaces).
func absoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && !strings.ContainsAny(s, " \t\r\n")
}

func statusNames(ss []mapping.TaskStatus) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// parseETagVersion reads a version from an If-Match value: W/"3" (FHIR), "3" or 3. ok is false for anything
// else, including "*" and lists.
func parseETagVersion(v string) (int, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return 0, false
	}
	return n, true
}

package communityapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// The community API (/community/v1, docs/design.md#community-api): JSON for community services without FHIR. Every route is
// communityOnly (other roles: 403) and scoped to the client's one service (other services' referrals: 404).

const (
	defaultLimit = 50
	maxLimit     = 200
	// maxReasonRunes and maxOutcomeRunes bound the free texts a service sends (they are stored and shown to the GP).
	maxReasonRunes  = 1000
	maxOutcomeRunes = 4000
)

// bad is a 400 of the JSON API naming the rule and the field.
func bad(code, field, msg string) error {
	return fault.New(fault.Invalid, fault.Code(code), field, msg)
}

// record is a referral as the community API shows it: the community referral record plus the Task's notes
// (task_notes: author, time, text, oldest first), which the service and the GP practice write.
type record struct {
	mapping.Record
	TaskNotes []mapping.TaskNote `json:"task_notes,omitempty"`
}

// view renders a referral for the community API: its record cut to the service's sharing profile.
func (a *API) view(ref outbox.Referral) record {
	return record{Record: a.svc.Shared(ref.Record), TaskNotes: ref.TaskNotes}
}

// page is the body of GET /community/v1/referrals.
type page struct {
	Referrals []record `json:"referrals"`
	// Next is the cursor of the next page when more referrals match now (absent at the end).
	Next string `json:"next,omitempty"`
	// Resume is where the next poll starts (pass it as ?since=): the cursor of the last referral on this page,
	// or the since the client sent when the page is empty. Absent only for an empty first poll.
	Resume string `json:"resume,omitempty"`
}

// list is GET /community/v1/referrals: the pull inbox, ordered by (updated_at, id).
func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q, since, err := parseListQuery(r.URL.Query())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	refs, next, err := a.svc.Search(r.Context(), web.Caller(r.Context()), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	p := page{Referrals: make([]record, 0, len(refs)), Resume: since}
	for _, ref := range refs {
		p.Referrals = append(p.Referrals, a.view(ref))
	}
	if n := len(refs); n > 0 {
		last := refs[n-1].Record
		p.Resume = web.EncodeCursor(outbox.Cursor{UpdatedAt: last.UpdatedAt, ID: last.ID})
	}
	if next != nil {
		p.Next = web.EncodeCursor(*next)
	}
	web.WriteJSON(w, a.log, http.StatusOK, p)
}

// parseListQuery validates the inbox's query parameters (status, since, limit; anything else is a 400 naming
// it) and returns the query (scoped to the client by the use case) and the since value to echo.
func parseListQuery(vals url.Values) (referral.Query, string, error) {
	var q referral.Query
	q.Limit = defaultLimit
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var since string
	for _, k := range keys {
		if len(vals[k]) != 1 {
			return q, "", bad("invalid_parameter", k, k+" must be given once")
		}
		v := vals[k][0]
		switch k {
		case "status":
			for _, part := range strings.Split(v, ",") {
				st, ok := mapping.ParseTaskStatus(strings.TrimSpace(part))
				if !ok {
					return q, "", bad("invalid_status", "status",
						fmt.Sprintf("status %q is not a referral status; use a comma list of %s", part, statusNames(mapping.AllStatuses())))
				}
				if !slices.Contains(q.Statuses, st) {
					q.Statuses = append(q.Statuses, st)
				}
			}
		case "since":
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				q.UpdatedAfter = t.UTC()
			} else if c, err := web.DecodeCursor(v); err == nil {
				q.After = &c
			} else {
				return q, "", bad("invalid_since", "since",
					"since must be an RFC 3339 time (e.g. 2026-11-21T10:00:00Z) or a next/resume cursor returned by this API, unchanged")
			}
			since = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				return q, "", bad("invalid_limit", "limit", fmt.Sprintf("limit must be a whole number from 1 to %d", maxLimit))
			}
			q.Limit = n
		default:
			return q, "", bad("unknown_parameter", k, fmt.Sprintf("query parameter %q is not supported; use status, since and limit", k))
		}
	}
	return q, since, nil
}

// referral loads the referral {id} (a record id) if it belongs to the client's service; any other referral
// is a 404, never a 403 that would reveal that it exists.
func (a *API) referral(r *http.Request) (outbox.Referral, error) {
	return a.svc.Get(r.Context(), web.Caller(r.Context()), referral.ByRecordID, mux.Vars(r)["id"])
}

// get is GET /community/v1/referrals/{id}: one referral record.
func (a *API) get(w http.ResponseWriter, r *http.Request) {
	ref, err := a.referral(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(ref.Record.Version)))
	web.WriteJSON(w, a.log, http.StatusOK, a.view(ref))
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

// status is POST /community/v1/referrals/{id}/status: acknowledge, accept, decline, start, hold, complete or
// fail a referral, optionally adding a note (referral.Service.ChangeStatus).
func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ref, expect, body, ok := a.changeRequest(w, r)
	if !ok {
		return
	}
	req, err := decodeStatusRequest(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sr := referral.StatusRequest{ReferralID: ref.Record.ID, ExpectVersion: expect, Status: mapping.TaskStatus(req.Status), Reason: req.Reason}
	if req.Outcome != "" || req.OutcomeCode != nil {
		sr.Outcome = &mapping.Outcome{Text: req.Outcome, Code: req.OutcomeCode}
	}
	if req.Note != nil {
		sr.Note = *req.Note
	}
	_, next, err := a.svc.ChangeStatus(r.Context(), web.Caller(r.Context()), sr)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(next.Record.Version)))
	web.WriteJSON(w, a.log, http.StatusOK, a.view(next))
}

// changeRequest reads what every change of one referral starts with: the referral (the caller's own), the
// optional If-Match (0: none) and the JSON body; ok false when it already answered with the error.
func (a *API) changeRequest(w http.ResponseWriter, r *http.Request) (ref outbox.Referral, expect int, body []byte, ok bool) {
	ref, err := a.referral(r)
	if err != nil {
		a.fail(w, r, err)
		return ref, 0, nil, false
	}
	if h := r.Header.Get("If-Match"); h != "" {
		v, ok := web.ParseETagVersion(h)
		if !ok {
			a.fail(w, r, bad("invalid_if_match", "If-Match", `If-Match must name one version, e.g. "3" (the record's version or ETag)`))
			return ref, 0, nil, false
		}
		expect = v
	}
	if body, err = a.readJSON(w, r); err != nil {
		a.fail(w, r, err)
		return ref, 0, nil, false
	}
	return ref, expect, body, true
}

// readJSON checks the media type (415: application/json) and size (413) of a JSON API request body.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, params, ok := web.MediaType(r)
	if !ok || mt != "application/json" {
		return nil, fault.New(fault.UnsupportedMedia, web.CodeUnsupportedMedia, "Content-Type",
			fmt.Sprintf("Content-Type %q is not supported; send application/json", r.Header.Get("Content-Type")))
	}
	if !web.UTF8Charset(params) {
		return nil, fault.New(fault.UnsupportedMedia, web.CodeUnsupportedMedia, "Content-Type", "only charset=utf-8 is supported")
	}
	body, err := web.ReadAll(w, r, a.o.MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	return body, web.CheckJSONText(body)
}

// decodeStatusRequest decodes a status change strictly: one JSON object, no duplicate or unknown fields
// (all unknown ones are named), the right types, a status from the community vocabulary, bounded texts and a
// well-formed outcome_code.
func decodeStatusRequest(body []byte) (statusRequest, error) {
	var req statusRequest
	top, err := strictObject(body, "status", "reason", "outcome", "outcome_code", "note")
	if err != nil {
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
	if err := typedUnmarshal(body, &req, "status change"); err != nil {
		return req, err
	}
	st := mapping.TaskStatus(req.Status)
	statuses := referral.CommunityStatuses()
	switch {
	case req.Status == "":
		return req, bad("required", "status", "status is required: one of "+statusNames(statuses))
	case !slices.Contains(statuses, st):
		return req, bad("invalid_status", "status", fmt.Sprintf("status %q is not one a community service sets; use one of %s", req.Status, statusNames(statuses)))
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

// strictObject checks a JSON API body: UTF-8, one JSON object without duplicate keys, no member outside
// allowed (all named); it returns the object's members.
func strictObject(body []byte, allowed ...string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(body) {
		return nil, bad("invalid_json", "", "the body is not UTF-8")
	}
	if _, err := fhir.Canonical(body); err != nil {
		return nil, bad("invalid_json", "", "the body must be one JSON object without duplicate keys")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, bad("invalid_json", "", "the body must be a JSON object")
	}
	return top, unknownFields(top, "", allowed...)
}

// typedUnmarshal decodes body into v, a 400 naming the member of the wrong type (what: the request's name).
func typedUnmarshal(body []byte, v any, what string) error {
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return bad("invalid_type", te.Field, fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String())))
		}
		return bad("invalid_json", "", "the body is not a valid "+what)
	}
	return nil
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
	return bad("unknown_field", strings.Join(unknown, ","),
		fmt.Sprintf("unknown field(s) %s; allowed: %s", strings.Join(unknown, ", "), strings.Join(allowed, ", ")))
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

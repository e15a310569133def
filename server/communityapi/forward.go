package communityapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// forwardRequest is the body of POST /community/v1/referrals/{id}/forward.
type forwardRequest struct {
	Services []string `json:"services"`
	Note     string   `json:"note"`
}

// forwardAnswer is the answer of a forward: the link worker's record and the children created.
type forwardAnswer struct {
	Referral record   `json:"referral"`
	Children []record `json:"children"`
}

// forward is POST /community/v1/referrals/{id}/forward: the link-worker service suggests groups of the
// directory for one of its referrals (referral.Service.Forward); 201 with the children.
func (a *API) forward(w http.ResponseWriter, r *http.Request) {
	ref, err := a.referral(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	expect := 0
	if h := r.Header.Get("If-Match"); h != "" {
		v, ok := web.ParseETagVersion(h)
		if !ok {
			a.fail(w, r, bad("invalid_if_match", "If-Match", `If-Match must name one version, e.g. "3" (the record's version or ETag)`))
			return
		}
		expect = v
	}
	body, err := a.readJSON(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	req, err := decodeForwardRequest(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	parent, children, err := a.svc.Forward(r.Context(), web.Caller(r.Context()), referral.ForwardRequest{ReferralID: ref.Record.ID,
		ExpectVersion: expect, Services: req.Services, Note: req.Note})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.Quote(strconv.Itoa(parent.Record.Version)))
	web.WriteJSON(w, a.log, http.StatusCreated, a.forwardAnswer(parent, children))
}

// forwardAnswer renders a forward's answer: each child as the link worker may see it (its own sharing cut).
func (a *API) forwardAnswer(parent outbox.Referral, children []outbox.Referral) forwardAnswer {
	out := forwardAnswer{Referral: a.view(parent), Children: []record{}}
	for _, ch := range children {
		out.Children = append(out.Children, a.view(ch))
	}
	return out
}

// decodeForwardRequest decodes a forward strictly: one JSON object, only services (a list of strings) and
// note (a string).
func decodeForwardRequest(body []byte) (forwardRequest, error) {
	var req forwardRequest
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
	if err := unknownFields(top, "", "services", "note"); err != nil {
		return req, err
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return req, bad("invalid_type", te.Field, fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String())))
		}
		return req, bad("invalid_json", "", "the body is not a valid forward")
	}
	if len(req.Services) == 0 {
		return req, bad("required", "services", `services is required: the directory ids of the groups to suggest, e.g. ["frome-walks"]`)
	}
	return req, nil
}

package communityapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// capacityView is the body of GET and PUT /community/v1/capacity: what the group set, how many referrals it
// holds open, and the state it is in now (effective_status: full while open reaches max_open, open again once
// a pause's until has come).
type capacityView struct {
	Service          mapping.ServiceRef     `json:"service"`
	Status           mapping.CapacityStatus `json:"status"`
	EffectiveStatus  mapping.CapacityStatus `json:"effective_status"`
	ExpectedWaitDays int                    `json:"expected_wait_days"`
	Until            string                 `json:"until,omitempty"`
	MaxOpen          int                    `json:"max_open"`
	Open             int                    `json:"open"`
	Note             string                 `json:"note"`
	UpdatedAt        *time.Time             `json:"updated_at,omitempty"`
	UpdatedBy        string                 `json:"updated_by,omitempty"`
}

// viewCapacity renders c for the community API at now.
func (a *API) viewCapacity(c mapping.Capacity, now time.Time) capacityView {
	v := capacityView{Service: mapping.ServiceRef{ID: c.ServiceID, Name: a.svc.ServiceName(c.ServiceID)}, Status: c.Status,
		EffectiveStatus: c.Effective(now), ExpectedWaitDays: c.ExpectedWaitDays, MaxOpen: c.MaxOpen, Open: c.Open,
		Note: c.Note(now), UpdatedBy: c.UpdatedBy}
	if !c.Until.IsZero() {
		v.Until = c.Until.UTC().Format(time.DateOnly)
	}
	if !c.UpdatedAt.IsZero() {
		t := c.UpdatedAt
		v.UpdatedAt = &t
	}
	return v
}

// getCapacity is GET /community/v1/capacity: the client's service's capacity.
func (a *API) getCapacity(w http.ResponseWriter, r *http.Request) {
	c, err := a.svc.Capacity(r.Context(), web.Caller(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteJSON(w, a.log, http.StatusOK, a.viewCapacity(c, a.now()))
}

// capacityRequest is the body of PUT /community/v1/capacity.
type capacityRequest struct {
	Status           string  `json:"status"`
	ExpectedWaitDays int     `json:"expected_wait_days"`
	Until            *string `json:"until"`
	MaxOpen          *int    `json:"max_open"`
}

// putCapacity is PUT /community/v1/capacity: the group says how full it is.
func (a *API) putCapacity(w http.ResponseWriter, r *http.Request) {
	body, err := a.readJSON(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	req, err := decodeCapacityRequest(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cl := web.Caller(r.Context())
	c, err := a.svc.SetCapacity(r.Context(), cl, req, "api:"+cl.Client.ID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteJSON(w, a.log, http.StatusOK, a.viewCapacity(c, a.now()))
}

// decodeCapacityRequest decodes a capacity setting strictly: one JSON object, no duplicate or unknown fields,
// the right types, a status from the capacity vocabulary. The rules between fields are the use case's
// (mapping.CheckCapacity).
func decodeCapacityRequest(body []byte) (referral.CapacityRequest, error) {
	var out referral.CapacityRequest
	if !utf8.Valid(body) {
		return out, bad("invalid_json", "", "the body is not UTF-8")
	}
	if _, err := fhir.Canonical(body); err != nil {
		return out, bad("invalid_json", "", "the body must be one JSON object without duplicate keys")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return out, bad("invalid_json", "", "the body must be a JSON object")
	}
	if err := unknownFields(top, "", "status", "expected_wait_days", "until", "max_open"); err != nil {
		return out, err
	}
	var req capacityRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			kind := jsonKind(te.Type.Kind().String())
			if kind == "int" {
				kind = "whole number"
			}
			return out, bad("invalid_type", te.Field, fmt.Sprintf("%s must be a JSON %s", te.Field, kind))
		}
		return out, bad("invalid_json", "", "the body is not a valid capacity setting")
	}
	st := mapping.CapacityStatus(req.Status)
	switch {
	case req.Status == "":
		return out, bad("required", "status", "status is required: one of open, waitlist, full, paused")
	case !st.Valid():
		return out, bad("invalid_status", "status", fmt.Sprintf("status %q is not a capacity state; use open, waitlist, full or paused", req.Status))
	}
	out.Status, out.ExpectedWaitDays, out.MaxOpen = st, req.ExpectedWaitDays, req.MaxOpen
	if req.Until != nil {
		out.Until = *req.Until
		if out.Until == "" {
			return out, bad("invalid_value", "until", "until must be a date, YYYY-MM-DD (leave it out for none)")
		}
	}
	return out, nil
}

package communityapi

import (
	"net/http"
	"strconv"

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
	ref, expect, body, ok := a.changeRequest(w, r)
	if !ok {
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
	if _, err := strictObject(body, "services", "note"); err != nil {
		return req, err
	}
	if err := typedUnmarshal(body, &req, "forward"); err != nil {
		return req, err
	}
	if len(req.Services) == 0 {
		return req, bad("required", "services", `services is required: the directory ids of the groups to suggest, e.g. ["frome-walks"]`)
	}
	return req, nil
}

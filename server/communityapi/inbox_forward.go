package communityapi

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// suggestGroup is one group the link worker may tick on the "Suggest groups" form.
type suggestGroup struct {
	ID, Name string
	Note     string // its capacity now ("taking referrals", "full", …)
	Open     bool   // it takes referrals now (a full or paused group cannot be ticked)
	Checked  bool   // ticked on a refused form
}

// suggestions are the groups the "Suggest groups" form lists for ref: every other directory service with its
// capacity, when ref is the link-worker service's own open referral (not itself forwarded); nil otherwise.
// form is a refused form whose ticks are kept (nil: none).
func (a *API) suggestions(ctx context.Context, ref outbox.Referral, form url.Values) []suggestGroup {
	dir := a.svc.Directory()
	lw, ok := dir.LinkWorker()
	rec := ref.Record
	if !ok || lw.ID != rec.Service.ID || rec.Status.Terminal() || rec.ConsentWithdrawn || ref.Parent != nil {
		return nil
	}
	caps, err := a.svc.ServiceCapacities(ctx)
	if err != nil {
		a.log.Warn("inbox: capacities unavailable for the suggest form", "err", err)
		return nil
	}
	now := a.now()
	var out []suggestGroup
	for _, sc := range caps {
		id := sc.Service.ID
		if id == lw.ID || slices.ContainsFunc(ref.Children, func(c mapping.LinkRef) bool { return c.ServiceID == id }) {
			continue
		}
		out = append(out, suggestGroup{ID: id, Name: sc.Service.Name, Note: sc.Capacity.Note(now),
			Open: sc.Capacity.Effective(now).TakesReferrals(), Checked: slices.Contains(form["service"], id)})
	}
	slices.SortFunc(out, func(x, y suggestGroup) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// inboxForward is POST /inbox/referrals/{id}/forward: the link worker's "Suggest groups" form (the same
// change as POST /community/v1/referrals/{id}/forward).
func (a *API) inboxForward(w http.ResponseWriter, r *http.Request) {
	p, ok := a.inboxReferralForm(w, r, "Referral")
	if !ok {
		return
	}
	r, ref, form := p.s.r, p.ref, p.form
	if k := web.RepeatedField(form, "note", "version"); k != "" {
		p.fail(w, http.StatusBadRequest, k, k+" was sent more than once")
		return
	}
	expect, err := strconv.Atoi(form.Get("version"))
	if err != nil || expect < 1 {
		p.fail(w, http.StatusBadRequest, "version", "the form is missing the referral's version; open the referral again")
		return
	}
	if len(form["service"]) == 0 {
		p.fail(w, http.StatusUnprocessableEntity, "services", "Tick at least one group to suggest.")
		return
	}
	_, children, err := a.svc.Forward(r.Context(), web.Caller(r.Context()), referral.ForwardRequest{ReferralID: ref.Record.ID,
		ExpectVersion: expect, Services: form["service"], Note: strings.TrimSpace(form.Get("note"))})
	if err != nil {
		p.refused(w, err, "services", nil)
		return
	}
	a.log.Info("inbox: referral forwarded", "request_id", web.RequestID(r.Context()), "referral_id", ref.Record.ID, "children", len(children))
	inboxRedirect(w, inboxPath+"referrals/"+url.PathEscape(ref.Record.ID)+"?done=forwarded")
}

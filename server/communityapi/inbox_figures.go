package communityapi

import (
	"html/template"
	"net/http"

	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// figuresView is the inbox's monthly figures page (issue 14): the chart and its table, for the months shown.
type figuresView struct {
	From, To string
	Chart    template.HTML
}

// inboxFigures is GET /inbox/figures[?from=YYYY-MM&to=YYYY-MM]: the group's monthly figures as a chart a
// volunteer can read, with the same figures as a table (web.FiguresChart); the last twelve months unless
// asked otherwise. A month that is not one, or a span too long, is the page with the problem in words (400).
// It is a page of its own, linked from the list, because the figures read every referral of the months.
func (a *API) inboxFigures(w http.ResponseWriter, r *http.Request) {
	s, ok := a.inboxPageSession(w, r, "Monthly figures")
	if !ok {
		return
	}
	r, d := s.r, s.d
	from, to := web.DefaultMonths(a.now(), a.uk)
	from, to = cmpOr(r.URL.Query().Get("from"), from), cmpOr(r.URL.Query().Get("to"), to)
	d.Figures = &figuresView{From: from, To: to}
	figs, err := a.svc.Figures(r.Context(), web.Caller(r.Context()), referral.FiguresRequest{From: from, To: to})
	if err != nil {
		a.inboxFailure(w, r, d, err)
		return
	}
	d.Figures.Chart = web.FiguresChart("figures", d.Service, figs)
	a.renderInbox(w, r, http.StatusOK, d)
}

package console

import (
	"html/template"
	"net/http"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// figuresBody is the monthly figures page (issue 14).
type figuresBody struct {
	From, To, Practice, Service string
	Services                    []mapping.Service
	Chart                       template.HTML
}

// figures is GET /admin/figures[?from=&to=&practice=ODS|&service=ID]: the area's (or one practice's or
// service's) monthly figures as a chart and a table (web.FiguresChart); the last twelve months by default.
func (c *Console) figures(w http.ResponseWriter, r *http.Request) {
	s, ok := c.get(w, r, "Monthly figures", "see the monthly figures")
	if !ok {
		return
	}
	q := r.URL.Query()
	from, to := web.DefaultMonths(c.o.Clock(), c.uk)
	body := figuresBody{From: cmpOr(q.Get("from"), from), To: cmpOr(q.Get("to"), to), Practice: q.Get("practice"),
		Service: q.Get("service"), Services: c.o.Service.Directory().Services}
	p := s.page
	p.View, p.Body = "figures", body
	scope := "The whole area"
	switch {
	case body.Practice != "" && body.Service != "":
		p.Error, p.Field = "Choose a practice or a service, not both.", "practice"
		c.render(w, r, http.StatusBadRequest, p)
		return
	case body.Practice != "":
		scope = "Practice " + body.Practice
	case body.Service != "":
		scope = c.o.Service.ServiceName(body.Service)
	}
	figs, err := c.o.Service.Figures(r.Context(), referral.Caller{Client: s.sess.Client, RequestID: web.RequestID(r.Context())},
		referral.FiguresRequest{From: body.From, To: body.To, Practice: body.Practice, ServiceID: body.Service})
	if status, je := web.JSONError(err); err != nil && status == http.StatusBadRequest {
		p.Error, p.Field = je.Message, je.Field // the form stays, with the problem
		c.render(w, r, status, p)
		return
	}
	if err != nil {
		c.failure(w, r, p, err)
		return
	}
	body.Chart = web.FiguresChart("figures", scope, figs)
	p.Body = body
	c.render(w, r, http.StatusOK, p)
}

// cmpOr is v, or def when v is empty.
func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

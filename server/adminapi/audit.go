package adminapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// auditQuery parses GET /admin/v1/audit's filters: referral, client (the actor: a client id, or
// console:…/cli:… for an engineer), since and until (RFC 3339), limit (1..1000, default 100), after_seq.
func (a *API) auditQuery(r *http.Request) (outbox.AuditQuery, error) {
	q := outbox.AuditQuery{Limit: 100}
	for key, vals := range r.URL.Query() {
		v := vals[0]
		invalid := func(msg string) error { return bad("invalid_parameter", key, msg) }
		if len(vals) > 1 {
			return q, invalid(key + " may be given once")
		}
		switch key {
		case "referral", "client":
			if strings.TrimSpace(v) == "" {
				return q, invalid(key + " needs a value (leave the parameter out for all)")
			}
			if key == "referral" {
				q.ReferralID = v
			} else {
				q.ActorID = v
			}
		case "since", "until":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return q, invalid(key + " must be an RFC 3339 time such as 2026-12-01T09:00:00Z")
			}
			if key == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return q, invalid("limit must be a whole number from 1 to 1000")
			}
			q.Limit = n
		case "after_seq":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, invalid("after_seq must be an audit record's seq (the next_after_seq of the page before)")
			}
			q.AfterSeq = n
		default:
			return q, invalid(fmt.Sprintf("unknown parameter %q (referral, client, since, until, limit, after_seq)", key))
		}
	}
	return q, nil
}

// audit is GET /admin/v1/audit: the audit trail, oldest first, a page at a time.
func (a *API) audit(w http.ResponseWriter, r *http.Request) {
	q, err := a.auditQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	recs, err := a.op.AuditTrail(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := map[string]any{"records": referral.AuditViews(recs)}
	if len(recs) == q.Limit {
		out["next_after_seq"] = recs[len(recs)-1].Seq
	}
	web.WriteJSON(w, a.log, http.StatusOK, out)
}

// Package adminapi is socialrx's admin API (/admin/v1, admin clients only): the HTTP face of referral.Operator,
// the same code path as the `socialrx outbox` CLI and the operations console: list and filter outbox
// messages, show one with every attempt, replay one or many (reason recorded, dry run, paced), discard,
// pause and resume a service, the overview, and a referral's timeline.
package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// Options are what the admin API needs.
type Options struct {
	Service *referral.Service
	Logger  *slog.Logger
	Clock   func() time.Time
	// MaxBodyBytes limits request bodies (413 beyond).
	MaxBodyBytes int64
}

// API serves the admin routes.
type API struct {
	o   Options
	op  referral.Operator
	log *slog.Logger
}

// New returns the admin API.
func New(o Options) *API { return &API{o: o, op: o.Service.Operator(), log: o.Logger} }

// Routes are the admin API's routes (admin clients only).
func (a *API) Routes() []web.Route {
	get, post := http.MethodGet, http.MethodPost
	return []web.Route{
		{Path: "/admin/v1/messages", Name: "admin_messages", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.listMessages}},
		{Path: "/admin/v1/messages/{id}", Name: "admin_message", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.showMessage}},
		{Path: "/admin/v1/messages/{id}/replay", Name: "admin_message_replay", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.replayOne}},
		{Path: "/admin/v1/replay", Name: "admin_replay", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.replayMany}},
		{Path: "/admin/v1/referrals/{id}/timeline", Name: "admin_timeline", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.timeline}},
		{Path: "/admin/v1/messages/{id}/discard", Name: "admin_message_discard", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.discardOne}},
		{Path: "/admin/v1/discard", Name: "admin_discard", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.discardMany}},
		{Path: "/admin/v1/pauses", Name: "admin_pauses", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.pauses}},
		{Path: "/admin/v1/services/{id}/pause", Name: "admin_service_pause", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.pause}},
		{Path: "/admin/v1/services/{id}/resume", Name: "admin_service_resume", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{post: a.resume}},
		{Path: "/admin/v1/overview", Name: "admin_overview", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.overview}},
		{Path: "/admin/v1/audit", Name: "admin_audit", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.audit}},
		{Path: "/admin/v1/figures", Name: "admin_figures", Access: web.AdminOnly, Methods: map[string]http.HandlerFunc{get: a.figures}},
	}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	web.WriteError(w, r, a.log, err)
}

// bad is a 400 naming the rule and the field.
func bad(code, field, msg string) error {
	return fault.New(fault.Invalid, fault.Code(code), field, msg)
}

// readJSONRequest decodes a JSON request body strictly: application/json, within the size limit, one object,
// no unknown fields. Errors name the field and are 4xx.
func (a *API) readJSONRequest(w http.ResponseWriter, r *http.Request, v any) error {
	if mt, _, ok := web.MediaType(r); !ok || mt != "application/json" {
		return fault.New(fault.UnsupportedMedia, web.CodeUnsupportedMedia, "", "send Content-Type: application/json")
	}
	body, err := web.ReadAll(w, r, a.o.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := web.CheckJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return fault.New(fault.TooLarge, web.CodeTooLarge, "", fmt.Sprintf("body larger than %d bytes", a.o.MaxBodyBytes))
		case errors.As(err, &ute):
			return bad("invalid_type", ute.Field, fmt.Sprintf("%s must be a JSON %s", ute.Field, ute.Type.Kind()))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return bad("unknown_field", field, fmt.Sprintf("unknown field %q", field))
		case errors.Is(err, io.EOF):
			return bad("invalid_json", "", "empty body; send a JSON object")
		}
		return bad("invalid_json", "", "body is not a valid JSON object")
	}
	if dec.More() {
		return bad("invalid_json", "", "send one JSON object, nothing after it")
	}
	return nil
}

// messageQuery parses the admin list filters: state (comma list), service, referral, type (comma list),
// older_than (a Go duration like 30m), limit (1..1000), after_seq (paging).
func (a *API) messageQuery(r *http.Request) (outbox.MessageQuery, error) {
	q := outbox.MessageQuery{Limit: 100}
	for key, vals := range r.URL.Query() {
		v := vals[0]
		invalid := func(msg string) error { return bad("invalid_parameter", key, msg) }
		switch key {
		case "state":
			for _, st := range strings.Split(v, ",") {
				ms, err := outbox.ParseState(st)
				if err != nil {
					return q, invalid(fmt.Sprintf("state %q must be pending, inflight, delivered, dead, cancelled or discarded", st))
				}
				q.States = append(q.States, ms)
			}
		case "type":
			for _, typ := range strings.Split(v, ",") {
				if strings.TrimSpace(typ) == "" {
					return q, invalid("type needs event types, e.g. referral.created")
				}
				q.Types = append(q.Types, mapping.EventType(strings.TrimSpace(typ)))
			}
		case "service", "referral":
			if strings.TrimSpace(v) == "" {
				return q, invalid(key + " needs a value (leave the parameter out to list all)")
			}
			if key == "service" {
				q.ServiceID = v
			} else {
				q.ReferralID = v
			}
		case "older_than":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return q, invalid("older_than must be a positive duration such as 30m or 2h")
			}
			q.CreatedBefore = a.o.Clock().Add(-d)
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return q, invalid("limit must be a whole number from 1 to 1000")
			}
			q.Limit = n
		case "after_seq":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, invalid("after_seq must be a message seq")
			}
			q.AfterSeq = n
		default:
			return q, invalid(fmt.Sprintf("unknown parameter %q (state, service, referral, type, older_than, limit, after_seq)", key))
		}
	}
	return q, nil
}

// listMessages is GET /admin/v1/messages.
func (a *API) listMessages(w http.ResponseWriter, r *http.Request) {
	q, err := a.messageQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	msgs, err := a.op.List(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pauses, err := a.op.Pauses(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := map[string]any{"messages": referral.MarkPaused(referral.Views(msgs), pauses)}
	if len(msgs) == q.Limit {
		out["next_after_seq"] = msgs[len(msgs)-1].Seq
	}
	web.WriteJSON(w, a.log, http.StatusOK, out)
}

// showMessage is GET /admin/v1/messages/{id}.
func (a *API) showMessage(w http.ResponseWriter, r *http.Request) {
	d, err := a.op.Show(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteJSON(w, a.log, http.StatusOK, referral.DetailViewOf(d))
}

// replayBody is the body of the replay endpoints.
type replayBody struct {
	IDs     []string `json:"ids"`
	State   string   `json:"state"`
	Service string   `json:"service"`
	Reason  string   `json:"reason"`
	DryRun  bool     `json:"dry_run"`
	// PerSecond paces a filtered replay: at most this many replayed messages become due per second (0: all
	// at once).
	PerSecond float64 `json:"per_second"`
}

// replayOne is POST /admin/v1/messages/{id}/replay {"reason": "…", "dry_run": false}.
func (a *API) replayOne(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(b.IDs) > 0 || b.State != "" || b.Service != "" || b.PerSecond != 0 {
		a.fail(w, r, bad("invalid_field", "", "this endpoint replays the message in its path; use /admin/v1/replay for many"))
		return
	}
	b.IDs = []string{mux.Vars(r)["id"]}
	a.replay(w, r, b)
}

// replayMany is POST /admin/v1/replay {"ids": […]} or {"state": "dead", "service": "…"}, with "reason" and
// optional "dry_run".
func (a *API) replayMany(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	a.replay(w, r, b)
}

func (a *API) replay(w http.ResponseWriter, r *http.Request, b replayBody) {
	req := outbox.ReplayRequest{IDs: b.IDs, Reason: b.Reason, Actor: actor(r), DryRun: b.DryRun}
	if len(b.IDs) == 0 && (b.State != "" || b.Service != "") {
		f := outbox.MessageQuery{ServiceID: b.Service}
		if b.State != "" {
			st, err := outbox.ParseState(b.State)
			if err != nil {
				a.fail(w, r, bad("invalid_field", "state", err.Error()))
				return
			}
			f.States = []outbox.MessageState{st}
		}
		req.Filter = &f
		switch {
		case b.PerSecond < 0:
			a.fail(w, r, bad("invalid_field", "per_second", "per_second must not be negative"))
			return
		case b.PerSecond > 0:
			req.Pace = time.Duration(float64(time.Second) / b.PerSecond)
		}
	}
	msgs, err := a.op.Replay(r.Context(), req)
	if err != nil {
		a.fail(w, r, badRequest("invalid_replay", err))
		return
	}
	if !b.DryRun {
		a.log.Info("outbox replay", "request_id", web.RequestID(r.Context()), "actor", req.Actor, "messages", len(msgs))
	}
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"dry_run": b.DryRun, "count": len(msgs), "replayed": referral.Views(msgs)})
}

// badRequest turns an operator's outbox.ErrBadRequest into a 400 with code and the field it is about (the
// reason when the message says so, else the selection); other errors pass unchanged.
func badRequest(code string, err error) error {
	if !errors.Is(err, outbox.ErrBadRequest) {
		return err
	}
	msg := strings.TrimPrefix(err.Error(), outbox.ErrBadRequest.Error()+": ")
	field := "ids"
	switch {
	case strings.Contains(msg, "reason"):
		field = "reason"
	case strings.Contains(msg, "actor"):
		field = ""
	case strings.Contains(msg, "service") || strings.Contains(msg, "pull-only") || strings.Contains(msg, "paused"):
		field = "service"
	}
	return bad(code, field, msg)
}

// actor is who an admin API change is recorded as: the admin client.
func actor(r *http.Request) string { return "admin:" + web.Client(r.Context()).ID }

// discardBody is the body of the discard endpoints.
type discardBody struct {
	IDs    []string `json:"ids"`
	Reason string   `json:"reason"`
	DryRun bool     `json:"dry_run"`
}

// discardOne is POST /admin/v1/messages/{id}/discard {"reason": "…", "dry_run": false}.
func (a *API) discardOne(w http.ResponseWriter, r *http.Request) {
	var b discardBody
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(b.IDs) > 0 {
		a.fail(w, r, bad("invalid_field", "ids", "this endpoint discards the message in its path; use /admin/v1/discard for many"))
		return
	}
	b.IDs = []string{mux.Vars(r)["id"]}
	a.discard(w, r, b)
}

// discardMany is POST /admin/v1/discard {"ids": […], "reason": "…", "dry_run": false}.
func (a *API) discardMany(w http.ResponseWriter, r *http.Request) {
	var b discardBody
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	a.discard(w, r, b)
}

func (a *API) discard(w http.ResponseWriter, r *http.Request, b discardBody) {
	msgs, err := a.op.Discard(r.Context(), outbox.DiscardRequest{IDs: b.IDs, Reason: b.Reason, Actor: actor(r), DryRun: b.DryRun})
	if err != nil {
		a.fail(w, r, badRequest("invalid_discard", err))
		return
	}
	if !b.DryRun {
		a.log.Info("outbox discard", "request_id", web.RequestID(r.Context()), "actor", actor(r), "messages", len(msgs))
	}
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"dry_run": b.DryRun, "count": len(msgs), "discarded": referral.Views(msgs)})
}

// pauses is GET /admin/v1/pauses: the paused services.
func (a *API) pauses(w http.ResponseWriter, r *http.Request) {
	ps, err := a.op.Pauses(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"pauses": referral.PauseViews(ps)})
}

// pause is POST /admin/v1/services/{id}/pause {"reason": "…"}: 201 with the pause, or 200 with the pause
// already in force.
func (a *API) pause(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Reason string `json:"reason"`
	}
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	p, started, err := a.op.Pause(r.Context(), mux.Vars(r)["id"], b.Reason, actor(r))
	if err != nil {
		a.fail(w, r, badRequest("invalid_pause", err))
		return
	}
	status := http.StatusOK
	if started {
		status = http.StatusCreated
		a.log.Info("outbox pause", "request_id", web.RequestID(r.Context()), "actor", actor(r), "destination", p.Destination.String())
	}
	web.WriteJSON(w, a.log, status, map[string]any{"started": started, "pause": referral.PauseViewOf(p)})
}

// resume is POST /admin/v1/services/{id}/resume (no body, or {}).
func (a *API) resume(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		var b struct{}
		if err := a.readJSONRequest(w, r, &b); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	res, err := a.op.Resume(r.Context(), mux.Vars(r)["id"], actor(r))
	if err != nil {
		a.fail(w, r, badRequest("invalid_resume", err))
		return
	}
	a.log.Info("outbox resume", "request_id", web.RequestID(r.Context()), "actor", actor(r),
		"destination", res.Pause.Destination.String(), "messages", res.Messages)
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"pause": referral.PauseViewOf(res.Pause), "messages": res.Messages})
}

// overviewView is the JSON form of the overview.
type overviewView struct {
	At                   time.Time                 `json:"at"`
	Counts               map[string]int            `json:"counts"`
	OldestPendingSeconds float64                   `json:"oldest_pending_seconds"`
	DeliveredLastMinute  int                       `json:"delivered_last_minute"`
	Destinations         []destinationOverviewView `json:"destinations"`
	Pauses               []referral.PauseView      `json:"pauses"`
	Inboxes              []inboxOverviewView       `json:"inboxes"`
}

type destinationOverviewView struct {
	Destination string         `json:"destination"`
	Counts      map[string]int `json:"counts"`
	Paused      bool           `json:"paused"`
}

type inboxOverviewView struct {
	Service           string  `json:"service"`
	Name              string  `json:"name"`
	PullOnly          bool    `json:"pull_only"`
	Waiting           int     `json:"waiting"`
	Overdue           int     `json:"overdue"`
	OldestWaitSeconds float64 `json:"oldest_wait_seconds"`
}

// overview is GET /admin/v1/overview: the system at a glance.
func (a *API) overview(w http.ResponseWriter, r *http.Request) {
	ov, err := a.op.Overview(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := overviewView{At: ov.At, Counts: map[string]int{}, OldestPendingSeconds: ov.OldestPending.Seconds(),
		DeliveredLastMinute: ov.DeliveredLastMinute, Destinations: []destinationOverviewView{},
		Pauses: referral.PauseViews(ov.Pauses), Inboxes: []inboxOverviewView{}}
	for st, n := range ov.Counts {
		out.Counts[string(st)] = n
	}
	for _, d := range ov.Destinations {
		v := destinationOverviewView{Destination: d.Destination.String(), Counts: map[string]int{}, Paused: d.Pause != nil}
		for st, n := range d.Counts {
			v.Counts[string(st)] = n
		}
		out.Destinations = append(out.Destinations, v)
	}
	for _, in := range ov.Inboxes {
		out.Inboxes = append(out.Inboxes, inboxOverviewView{Service: in.ServiceID, Name: in.Name, PullOnly: in.PullOnly,
			Waiting: in.Waiting, Overdue: in.Overdue, OldestWaitSeconds: in.OldestWait.Seconds()})
	}
	web.WriteJSON(w, a.log, http.StatusOK, out)
}

// timelineView is one version of a referral in the admin timeline.
type timelineView struct {
	Version        int       `json:"version"`
	At             time.Time `json:"at"`
	Cause          string    `json:"cause"`
	Status         string    `json:"status"`
	BusinessStatus string    `json:"business_status,omitempty"`
	StatusReason   string    `json:"status_reason,omitempty"`
	Messages       []string  `json:"messages,omitempty"`
	// Withdrawn are the messages this version withdrew before delivery (now cancelled).
	Withdrawn []string `json:"withdrawn,omitempty"`
}

// timeline is GET /admin/v1/referrals/{id}/timeline: every version of the referral with the messages it
// wrote, then the messages with their states.
func (a *API) timeline(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	entries, err := a.op.Timeline(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := make([]timelineView, 0, len(entries))
	refID := id
	for _, e := range entries {
		refID = e.ReferralID
		out = append(out, timelineView{Version: e.Version, At: e.At, Cause: string(e.Cause), Status: string(e.Status),
			BusinessStatus: string(e.BusinessStatus), StatusReason: e.StatusReason, Messages: e.Messages,
			Withdrawn: e.Withdrawn})
	}
	msgs, err := a.op.List(r.Context(), outbox.MessageQuery{ReferralID: refID, Limit: 1000})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"referral_id": refID, "versions": out, "messages": referral.Views(msgs)})
}

// figures is GET /admin/v1/figures?from=YYYY-MM&to=YYYY-MM[&practice=ODS|&service=ID][&format=csv]: monthly
// figures for one practice, one service or (with neither) the whole area (issue 14).
func (a *API) figures(w http.ResponseWriter, r *http.Request) {
	q, err := web.ParseFiguresQuery(r.URL.Query(), "practice", "service")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if q.Extra["practice"] != "" && q.Extra["service"] != "" {
		a.fail(w, r, fault.New(fault.Invalid, "invalid_parameter", "practice", "give practice or service, not both"))
		return
	}
	figs, err := a.o.Service.Figures(r.Context(), web.Caller(r.Context()),
		referral.FiguresRequest{From: q.From, To: q.To, Practice: q.Extra["practice"], ServiceID: q.Extra["service"]})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	scope := "area"
	switch {
	case q.Extra["practice"] != "":
		scope = "practice-" + strings.ToUpper(q.Extra["practice"])
	case q.Extra["service"] != "":
		scope = "service-" + q.Extra["service"]
	}
	web.WriteFigures(w, a.log, q, scope, figs)
}

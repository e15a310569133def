// Package adminapi is socialrx's admin API (/admin/v1, admin clients only): the HTTP face of referral.Operator,
// the same code path as the `socialrx outbox` CLI: list and filter outbox messages, show one with every
// attempt, replay one or many (reason recorded, dry run), and a referral's timeline.
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

// messageQuery parses the admin list filters: state (comma list), service, referral, older_than (a Go duration
// like 30m), limit (1..1000), after_seq (paging).
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
					return q, invalid(fmt.Sprintf("state %q must be pending, inflight, delivered, dead or cancelled", st))
				}
				q.States = append(q.States, ms)
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
			return q, invalid(fmt.Sprintf("unknown parameter %q (state, service, referral, older_than, limit, after_seq)", key))
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
	out := map[string]any{"messages": referral.Views(msgs)}
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
}

// replayOne is POST /admin/v1/messages/{id}/replay {"reason": "…", "dry_run": false}.
func (a *API) replayOne(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	if err := a.readJSONRequest(w, r, &b); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(b.IDs) > 0 || b.State != "" || b.Service != "" {
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
	req := outbox.ReplayRequest{IDs: b.IDs, Reason: b.Reason, Actor: "admin:" + web.Client(r.Context()).ID, DryRun: b.DryRun}
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
	}
	msgs, err := a.op.Replay(r.Context(), req)
	if errors.Is(err, outbox.ErrBadRequest) {
		field := "reason"
		if !strings.Contains(err.Error(), "reason") {
			field = "ids"
		}
		err = bad("invalid_replay", field, err.Error())
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if !b.DryRun {
		a.log.Info("outbox replay", "request_id", web.RequestID(r.Context()), "actor", req.Actor, "messages", len(msgs))
	}
	web.WriteJSON(w, a.log, http.StatusOK, map[string]any{"dry_run": b.DryRun, "replayed": referral.Views(msgs)})
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

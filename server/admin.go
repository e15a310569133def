package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/outbox"
)

// The admin API (/admin/v1, admin clients only) is the HTTP face of outbox.Operator, the same code path as the
// `socialrx outbox` CLI: list and filter messages, show one with every attempt, replay one or many (reason
// recorded, dry run), and a referral's timeline.

func (s *Server) operator() outbox.Operator { return outbox.Operator{Store: s.store, Clock: s.now} }

// readJSONRequest decodes a JSON request body strictly: application/json, within the size limit, one object,
// no unknown fields. Errors name the field and are 4xx.
func (s *Server) readJSONRequest(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &jsonError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send Content-Type: application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return &jsonError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("body larger than %d bytes", s.maxBody)}
		case errors.As(err, &ute):
			return &jsonError{Status: http.StatusBadRequest, Code: "invalid_type", Field: ute.Field,
				Message: fmt.Sprintf("%s must be a JSON %s", ute.Field, ute.Type.Kind())}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &jsonError{Status: http.StatusBadRequest, Code: "unknown_field", Field: field, Message: fmt.Sprintf("unknown field %q", field)}
		case errors.Is(err, io.EOF):
			return &jsonError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "empty body; send a JSON object"}
		}
		return &jsonError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "body is not a valid JSON object"}
	}
	if dec.More() {
		return &jsonError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "send one JSON object, nothing after it"}
	}
	return nil
}

// messageQuery parses the admin list filters: state (comma list), service, referral, older_than (a Go duration
// like 30m), limit (1..1000), after_seq (paging).
func (s *Server) messageQuery(r *http.Request) (outbox.MessageQuery, error) {
	q := outbox.MessageQuery{Limit: 100}
	for key, vals := range r.URL.Query() {
		v := vals[0]
		bad := func(msg string) error {
			return &jsonError{Status: http.StatusBadRequest, Code: "invalid_parameter", Field: key, Message: msg}
		}
		switch key {
		case "state":
			for _, st := range strings.Split(v, ",") {
				ms, err := outbox.ParseState(st)
				if err != nil {
					return q, bad(fmt.Sprintf("state %q must be pending, inflight, delivered, dead or cancelled", st))
				}
				q.States = append(q.States, ms)
			}
		case "service", "referral":
			if strings.TrimSpace(v) == "" {
				return q, bad(key + " needs a value (leave the parameter out to list all)")
			}
			if key == "service" {
				q.ServiceID = v
			} else {
				q.ReferralID = v
			}
		case "older_than":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return q, bad("older_than must be a positive duration such as 30m or 2h")
			}
			q.CreatedBefore = s.now().Add(-d)
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return q, bad("limit must be a whole number from 1 to 1000")
			}
			q.Limit = n
		case "after_seq":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return q, bad("after_seq must be a message seq")
			}
			q.AfterSeq = n
		default:
			return q, bad(fmt.Sprintf("unknown parameter %q (state, service, referral, older_than, limit, after_seq)", key))
		}
	}
	return q, nil
}

// adminListMessages is GET /admin/v1/messages.
func (s *Server) adminListMessages(w http.ResponseWriter, r *http.Request) {
	q, err := s.messageQuery(r)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	msgs, err := s.operator().List(r.Context(), q)
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	out := map[string]any{"messages": outbox.Views(msgs)}
	if len(msgs) == q.Limit {
		out["next_after_seq"] = msgs[len(msgs)-1].Seq
	}
	s.writeJSON(w, http.StatusOK, out)
}

// adminShowMessage is GET /admin/v1/messages/{id}.
func (s *Server) adminShowMessage(w http.ResponseWriter, r *http.Request) {
	d, err := s.operator().Show(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, d.View())
}

// replayBody is the body of the replay endpoints.
type replayBody struct {
	IDs     []string `json:"ids"`
	State   string   `json:"state"`
	Service string   `json:"service"`
	Reason  string   `json:"reason"`
	DryRun  bool     `json:"dry_run"`
}

// adminReplayOne is POST /admin/v1/messages/{id}/replay {"reason": "…", "dry_run": false}.
func (s *Server) adminReplayOne(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	if err := s.readJSONRequest(w, r, &b); err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	if len(b.IDs) > 0 || b.State != "" || b.Service != "" {
		s.writeAPIError(w, r, &jsonError{Status: http.StatusBadRequest, Code: "invalid_field", Message: "this endpoint replays the message in its path; use /admin/v1/replay for many"})
		return
	}
	b.IDs = []string{mux.Vars(r)["id"]}
	s.replay(w, r, b)
}

// adminReplay is POST /admin/v1/replay {"ids": […]} or {"state": "dead", "service": "…"}, with "reason" and
// optional "dry_run".
func (s *Server) adminReplay(w http.ResponseWriter, r *http.Request) {
	var b replayBody
	if err := s.readJSONRequest(w, r, &b); err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	s.replay(w, r, b)
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, b replayBody) {
	req := outbox.ReplayRequest{IDs: b.IDs, Reason: b.Reason, Actor: "admin:" + clientFrom(r.Context()).ID, DryRun: b.DryRun}
	if len(b.IDs) == 0 && (b.State != "" || b.Service != "") {
		f := outbox.MessageQuery{ServiceID: b.Service}
		if b.State != "" {
			st, err := outbox.ParseState(b.State)
			if err != nil {
				s.writeAPIError(w, r, &jsonError{Status: http.StatusBadRequest, Code: "invalid_field", Field: "state", Message: err.Error()})
				return
			}
			f.States = []outbox.MessageState{st}
		}
		req.Filter = &f
	}
	msgs, err := s.operator().Replay(r.Context(), req)
	if errors.Is(err, outbox.ErrBadRequest) {
		field := "reason"
		if !strings.Contains(err.Error(), "reason") {
			field = "ids"
		}
		err = &jsonError{Status: http.StatusBadRequest, Code: "invalid_replay", Field: field, Message: err.Error()}
	}
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	if !b.DryRun {
		s.log.Info("outbox replay", "request_id", requestID(r.Context()), "actor", req.Actor, "messages", len(msgs))
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"dry_run": b.DryRun, "replayed": outbox.Views(msgs)})
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

// adminTimeline is GET /admin/v1/referrals/{id}/timeline: every version of the referral with the messages it
// wrote, then the messages with their states.
func (s *Server) adminTimeline(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	op := s.operator()
	entries, err := op.Timeline(r.Context(), id)
	if err != nil {
		s.writeAPIError(w, r, err)
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
	msgs, err := op.List(r.Context(), outbox.MessageQuery{ReferralID: refID, Limit: 1000})
	if err != nil {
		s.writeAPIError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusOK, map[string]any{"referral_id": refID, "versions": out, "messages": outbox.Views(msgs)})
}

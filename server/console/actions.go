package console

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server/internal/web"
)

// defaultRate is how many messages a bulk replay from the console makes due per second.
const defaultRate = 10

// done redirects to path with the confirmation what (and n) shown there.
func done(w http.ResponseWriter, path, what string, n int) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	redirect(w, path+sep+url.Values{"done": {what}, "n": {strconv.Itoa(n)}}.Encode())
}

// refusal is an operator's refusal in words (outbox.ErrBadRequest), or "" for another error.
func refusal(err error) string {
	if !errors.Is(err, outbox.ErrBadRequest) {
		return ""
	}
	msg := strings.TrimPrefix(err.Error(), outbox.ErrBadRequest.Error()+": ")
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

// replayOne is POST /admin/messages/{id}/replay (reason).
func (c *Console) replayOne(w http.ResponseWriter, r *http.Request) {
	c.oneMessage(w, r, "replayed", func(s signedIn, id, reason string) (int, error) {
		ms, err := c.op.Replay(r.Context(), outbox.ReplayRequest{IDs: []string{id}, Reason: reason, Actor: s.actor})
		return len(ms), err
	})
}

// discardOne is POST /admin/messages/{id}/discard (reason).
func (c *Console) discardOne(w http.ResponseWriter, r *http.Request) {
	c.oneMessage(w, r, "discarded", func(s signedIn, id, reason string) (int, error) {
		ms, err := c.op.Discard(r.Context(), outbox.DiscardRequest{IDs: []string{id}, Reason: reason, Actor: s.actor})
		return len(ms), err
	})
}

// oneMessage runs an action on the message of the path with the posted reason, and shows the message again:
// with the confirmation, or with the refusal and what was typed.
func (c *Console) oneMessage(w http.ResponseWriter, r *http.Request, what string, do func(s signedIn, id, reason string) (int, error)) {
	s, ok := c.post(w, r, "Message")
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	reason := r.PostForm.Get("reason")
	n, err := do(s, id, reason)
	if msg := refusal(err); msg != "" {
		d, derr := c.op.Show(r.Context(), id)
		if derr != nil {
			c.failure(w, r, s.page, derr)
			return
		}
		c.renderMessage(w, r, s, d, false, http.StatusBadRequest, msg, "reason", reason)
		return
	}
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	c.log.Info("console "+what, "request_id", web.RequestID(r.Context()), "actor", s.actor, "message_id", id)
	done(w, "/admin/messages/"+url.PathEscape(id), what, n)
}

// act is POST /admin/messages/act, the list's form: replay or discard the selected messages (id, repeated),
// or replay every dead message the list's filter matches: first a preview of how many (found as the real
// replay finds them), then, confirmed, the replay itself, paced.
func (c *Console) act(w http.ResponseWriter, r *http.Request) {
	s, ok := c.post(w, r, "Messages")
	if !ok {
		return
	}
	form := r.PostForm
	reason := form.Get("reason")
	f, mq, bad, err := readFilter(form, c.o.Clock())
	back := f.link()
	if err != nil {
		c.renderMessages(w, r, s, form, http.StatusBadRequest, err.Error(), bad, reason)
		return
	}
	ids := form["id"]
	var n int
	switch form.Get("action") {
	case "replay", "discard":
		if len(ids) == 0 {
			c.renderMessages(w, r, s, form, http.StatusBadRequest, "Tick the messages first.", "id", reason)
			return
		}
		if form.Get("action") == "replay" {
			var ms []outbox.Message
			ms, err = c.op.Replay(r.Context(), outbox.ReplayRequest{IDs: ids, Reason: reason, Actor: s.actor})
			n = len(ms)
		} else {
			var ms []outbox.Message
			ms, err = c.op.Discard(r.Context(), outbox.DiscardRequest{IDs: ids, Reason: reason, Actor: s.actor})
			n = len(ms)
		}
	case "replay-all":
		if len(mq.States) == 0 {
			mq.States = []outbox.MessageState{outbox.StateDead}
		}
		req := outbox.ReplayRequest{Filter: &mq, Reason: reason, Actor: s.actor, DryRun: form.Get("confirm") != "yes",
			Pace: c.pace()}
		var ms []outbox.Message
		ms, err = c.op.Replay(r.Context(), req)
		n = len(ms)
		if err == nil && req.DryRun {
			c.preview(w, r, s, f, reason, n)
			return
		}
	default:
		c.renderMessages(w, r, s, form, http.StatusBadRequest, "Choose what to do with a button.", "action", reason)
		return
	}
	if msg := refusal(err); msg != "" {
		field := "reason"
		if !strings.Contains(msg, "reason") {
			field = "id"
		}
		c.renderMessages(w, r, s, form, http.StatusBadRequest, msg, field, reason)
		return
	}
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	what := "replayed"
	if form.Get("action") == "discard" {
		what = "discarded"
	}
	c.log.Info("console "+what, "request_id", web.RequestID(r.Context()), "actor", s.actor, "messages", n)
	done(w, back, what, n)
}

// pace is the spacing of a bulk replay's due times (defaultRate a second).
func (c *Console) pace() time.Duration { return time.Second / defaultRate }

// previewBody is the confirmation page of a bulk replay.
type previewBody struct {
	Describe string            // the filter in words
	Hidden   map[string]string // the filter as hidden fields
	Back     string            // the list, to cancel
	Reason   string
	Count    int
	Rate     int
}

// preview shows how many messages a bulk replay would replay and asks to confirm.
func (c *Console) preview(w http.ResponseWriter, r *http.Request, s signedIn, f filter, reason string, n int) {
	p := s.page
	p.Title, p.View = "Replay every matching dead message?", "preview"
	p.Body = previewBody{Describe: f.describe(), Hidden: f.hidden(), Back: f.link(), Reason: reason, Count: n, Rate: defaultRate}
	c.render(w, r, http.StatusOK, p)
}

// pause is POST /admin/services/{id}/pause (reason).
func (c *Console) pause(w http.ResponseWriter, r *http.Request) {
	s, ok := c.post(w, r, "Service")
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	reason := r.PostForm.Get("reason")
	_, started, err := c.op.Pause(r.Context(), id, reason, s.actor)
	if msg := refusal(err); msg != "" {
		c.renderService(w, r, s, id, http.StatusBadRequest, msg, "reason", reason)
		return
	}
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	what := "paused"
	if !started {
		what = "already-paused"
	}
	c.log.Info("console pause", "request_id", web.RequestID(r.Context()), "actor", s.actor, "service", id, "started", started)
	done(w, "/admin/services/"+url.PathEscape(id), what, 0)
}

// resume is POST /admin/services/{id}/resume.
func (c *Console) resume(w http.ResponseWriter, r *http.Request) {
	s, ok := c.post(w, r, "Service")
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	res, err := c.op.Resume(r.Context(), id, s.actor)
	if msg := refusal(err); msg != "" {
		c.renderService(w, r, s, id, http.StatusBadRequest, msg, "", "")
		return
	}
	if err != nil {
		c.failure(w, r, s.page, err)
		return
	}
	c.log.Info("console resume", "request_id", web.RequestID(r.Context()), "actor", s.actor, "service", id, "messages", res.Messages)
	done(w, "/admin/services/"+url.PathEscape(id), "resumed", res.Messages)
}

package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Operator is the one code path behind the admin API (/admin/v1), the operations console (/admin/) and the
// `socialrx outbox` CLI: all three list, show, replay, discard, pause and resume through it, so an engineer
// sees and does the same thing whichever they use.
type Operator struct {
	Store outbox.Store
	Clock func() time.Time // default time.Now
	// Directory, when set, is the community directory: Pause and Resume accept its services only (and refuse
	// pull-only ones, to which nothing is delivered), and Overview lists every pull-only inbox. Without it
	// (the CLI without SOCIALRX_CONFIG), a service is known when the outbox has messages for it.
	Directory *mapping.Directory
	// PageSize is how many messages a bulk run (a filtered list or replay) reads or changes at a time, each
	// page in its own transaction (default DefaultPageSize).
	PageSize int
	// Progress, if set, is told after each page of a bulk run how far it got (done of total).
	Progress func(done, total int)
	// Logger receives the audit lines of Reveal (default: discard).
	Logger *slog.Logger
	// Audit, when set, records every read and change of patient data in the audit trail, by the actor of
	// the context's Origin (the console's engineer, the CLI's --actor, the admin client).
	Audit Auditor
}

// DefaultPageSize is the page of a bulk run.
const DefaultPageSize = 100

func (o Operator) now() time.Time {
	if o.Clock != nil {
		return o.Clock()
	}
	return time.Now()
}

func (o Operator) pageSize() int {
	if o.PageSize > 0 {
		return min(o.PageSize, 1000)
	}
	return DefaultPageSize
}

// List returns one page of messages matching q (q.Limit, default 100, at most 1000; page on with AfterSeq).
func (o Operator) List(ctx context.Context, q outbox.MessageQuery) ([]outbox.Message, error) {
	return o.Store.ListMessages(ctx, q)
}

// Each calls fn with every message matching q, in Seq order, a page at a time (PageSize), and returns how
// many it passed: all of them, or at most q.Limit when it is positive. It stops at fn's first error.
func (o Operator) Each(ctx context.Context, q outbox.MessageQuery, fn func(page []outbox.Message) error) (int, error) {
	limit := q.Limit
	n := 0
	for {
		q.Limit = o.pageSize()
		if limit > 0 {
			q.Limit = min(q.Limit, limit-n)
		}
		page, err := o.Store.ListMessages(ctx, q)
		if err != nil {
			return n, err
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return n, err
			}
			n += len(page)
			q.AfterSeq = page[len(page)-1].Seq
		}
		if len(page) < q.Limit || (limit > 0 && n >= limit) {
			return n, nil
		}
	}
}

// Count returns how many messages match q (q.Limit ignored), counting a page at a time.
func (o Operator) Count(ctx context.Context, q outbox.MessageQuery) (int, error) {
	q.Limit = 0
	return o.Each(ctx, q, func([]outbox.Message) error { return nil })
}

// Counts returns the number of messages in each state and the oldest pending message's creation (metrics).
func (o Operator) Counts(ctx context.Context) (map[outbox.MessageState]int, time.Time, error) {
	return o.Store.CountMessages(ctx)
}

// Show returns one message with every attempt and replay.
func (o Operator) Show(ctx context.Context, id string) (outbox.MessageDetail, error) {
	d, err := o.Store.GetMessage(ctx, id)
	if err != nil {
		return d, err
	}
	if err := o.auditMessages(ctx, outbox.AuditRead, d.Message); err != nil {
		return outbox.MessageDetail{}, err
	}
	return d, nil
}

// maxReasonLen bounds a replay reason (it is stored with every replayed message).
const maxReasonLen = 500

// checkReason checks the reason and actor every change of an engineer carries; what names the change.
func checkReason(what, reason, actor string) (string, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", fmt.Errorf("%w: a reason is required (it is recorded with every %s message)", outbox.ErrBadRequest, what)
	case utf8.RuneCountInString(reason) > maxReasonLen:
		return "", fmt.Errorf("%w: the reason is longer than %d characters", outbox.ErrBadRequest, maxReasonLen)
	case strings.TrimSpace(actor) == "":
		return "", fmt.Errorf("%w: the actor is required", outbox.ErrBadRequest)
	}
	return reason, nil
}

// Replay moves the selected messages back to pending, keeping their ids (receivers dedupe on webhook-id),
// recording actor and reason, and setting their referrals' businessStatus back to queued. Named messages are
// replayed in one transaction; a filter replays every dead message that matches (a filter takes dead
// messages only), a page (PageSize) per transaction, reporting Progress, with req.Pace carried across the
// pages. A cancelled or discarded message is refused with outbox.ErrBadRequest. With DryRun nothing changes
// and the returned messages are what would be replayed, found exactly as the real run finds them. The
// returned messages carry no payload.
func (o Operator) Replay(ctx context.Context, req outbox.ReplayRequest) ([]outbox.Message, error) {
	reason, err := checkReason("replayed", req.Reason, req.Actor)
	if err != nil {
		return nil, err
	}
	req.Reason = reason
	switch {
	case len(req.IDs) == 0 && req.Filter == nil:
		return nil, fmt.Errorf("%w: name message ids or a filter (e.g. state dead)", outbox.ErrBadRequest)
	case len(req.IDs) > 0 && req.Filter != nil:
		return nil, fmt.Errorf("%w: name message ids or a filter, not both", outbox.ErrBadRequest)
	}
	for _, id := range req.IDs {
		d, err := o.Store.GetMessage(ctx, id)
		if err != nil {
			return nil, err
		}
		switch d.Message.State {
		case outbox.StateCancelled:
			return nil, fmt.Errorf("%w: message %s is cancelled (withdrawn before delivery: its referral was cancelled by the GP); a cancelled message is never sent, so it cannot be replayed", outbox.ErrBadRequest, id)
		case outbox.StateDiscarded:
			return nil, fmt.Errorf("%w: message %s was discarded (by %s: %s); a discarded message is never sent, so it cannot be replayed", outbox.ErrBadRequest, id, discardedBy(d), discardReason(d))
		case outbox.StatePending, outbox.StateInflight, outbox.StateDelivered, outbox.StateDead:
		}
	}
	req.Update = outbox.QueuedAgain
	if req.Filter == nil {
		ms, err := o.Store.ReplayMessages(ctx, o.now(), req)
		if err == nil && !req.DryRun {
			_ = o.auditMessages(ctx, outbox.AuditUpdate, ms...) // a change: never refused for the trail
		}
		return withoutPayloads(ms), err
	}
	f := *req.Filter
	if len(f.States) == 0 {
		f.States = []outbox.MessageState{outbox.StateDead}
	}
	if slices.Contains(f.States, outbox.StateCancelled) || slices.Contains(f.States, outbox.StateDiscarded) {
		return nil, fmt.Errorf("%w: cancelled and discarded messages are never sent, so they cannot be replayed; a filtered replay takes dead messages only", outbox.ErrBadRequest)
	}
	if slices.ContainsFunc(f.States, func(s outbox.MessageState) bool { return s != outbox.StateDead }) {
		return nil, fmt.Errorf("%w: a filtered replay takes dead messages only; name other messages by id", outbox.ErrBadRequest)
	}
	ms, err := o.replayPages(ctx, req, f)
	if !req.DryRun {
		_ = o.auditMessages(ctx, outbox.AuditUpdate, ms...) // a change: never refused for the trail
	}
	return ms, err
}

// replayPages replays (or, with req.DryRun, lists) every dead message matching f, a page per transaction.
func (o Operator) replayPages(ctx context.Context, req outbox.ReplayRequest, f outbox.MessageQuery) ([]outbox.Message, error) {
	total := -1
	if o.Progress != nil {
		n, err := o.Count(ctx, f)
		if err != nil {
			return nil, err
		}
		total = n
	}
	limit := f.Limit
	now := o.now()
	req.DueFrom = now
	var out []outbox.Message
	for {
		page := f
		page.Limit = o.pageSize()
		if limit > 0 {
			page.Limit = min(page.Limit, limit-len(out))
		}
		req.Filter = &page
		ms, err := o.Store.ReplayMessages(ctx, now, req)
		if err != nil {
			return withoutPayloads(out), err
		}
		out = append(out, withoutPayloads(ms)...)
		if len(ms) > 0 {
			f.AfterSeq = ms[len(ms)-1].Seq
			req.DueFrom = now.Add(time.Duration(len(out)) * req.Pace)
		}
		if o.Progress != nil {
			o.Progress(len(out), max(total, len(out)))
		}
		if len(ms) < page.Limit || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
	}
}

// withoutPayloads drops the messages' payloads (patient data; bulk results stay small).
func withoutPayloads(ms []outbox.Message) []outbox.Message {
	for i := range ms {
		ms[i].Payload = nil
	}
	return ms
}

// Timeline returns every version of a referral with the messages each wrote (outbox.ErrNotFound when there is
// no such referral).
func (o Operator) Timeline(ctx context.Context, referralID string) ([]outbox.TimelineEntry, error) {
	es, err := o.Store.Timeline(ctx, referralID)
	if err != nil || len(es) == 0 || o.Audit == nil {
		return es, err
	}
	r := o.auditRecord(ctx, outbox.AuditRead, "Referral", es[0].ReferralID)
	r.ReferralID = es[0].ReferralID
	if err := o.recordAudit(ctx, outbox.AuditRead, []outbox.AuditRecord{r}); err != nil {
		return nil, err
	}
	return es, nil
}

// MessageView is the JSON form of a message shared by the admin API and the CLI. It carries no payload (which
// holds patient data) except in DetailView.
type MessageView struct {
	ID            string     `json:"id"`
	Seq           int64      `json:"seq"`
	ReferralID    string     `json:"referral_id"`
	Destination   string     `json:"destination"`
	Type          string     `json:"type"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	CreatedAt     time.Time  `json:"created_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// Paused: the message's destination is paused (a pending message is held until it is resumed).
	Paused  bool            `json:"paused,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// AttemptView is the JSON form of an attempt.
type AttemptView struct {
	N          int       `json:"n"`
	StartedAt  time.Time `json:"started_at"`
	LatencyMS  float64   `json:"latency_ms"`
	StatusCode int       `json:"status_code"`
	Error      string    `json:"error,omitempty"`
	// Response is the start of the receiver's answer (at most 1 KB, as text).
	Response string `json:"response,omitempty"`
}

// ReplayView is the JSON form of a replay record.
type ReplayView struct {
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	FromState string    `json:"from_state"`
}

// DiscardView is the JSON form of a discard record.
type DiscardView struct {
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	FromState string    `json:"from_state"`
}

// PauseView is the JSON form of a pause.
type PauseView struct {
	Destination string     `json:"destination"`
	Service     string     `json:"service,omitempty"`
	PausedAt    time.Time  `json:"paused_at"`
	PausedBy    string     `json:"paused_by"`
	Reason      string     `json:"reason"`
	ResumedAt   *time.Time `json:"resumed_at,omitempty"`
	ResumedBy   string     `json:"resumed_by,omitempty"`
}

// PauseViewOf renders a pause for JSON output.
func PauseViewOf(p outbox.Pause) PauseView {
	v := PauseView{Destination: p.Destination.String(), PausedAt: p.PausedAt, PausedBy: p.PausedBy, Reason: p.Reason,
		ResumedAt: timePtr(p.ResumedAt), ResumedBy: p.ResumedBy}
	if p.Destination.Kind == mapping.DestinationService {
		v.Service = p.Destination.ID
	}
	return v
}

// PauseViews renders pauses for JSON output.
func PauseViews(ps []outbox.Pause) []PauseView {
	out := make([]PauseView, 0, len(ps))
	for _, p := range ps {
		out = append(out, PauseViewOf(p))
	}
	return out
}

// MarkPaused sets Paused on the views whose destination one of pauses holds.
func MarkPaused(vs []MessageView, pauses []outbox.Pause) []MessageView {
	for i := range vs {
		vs[i].Paused = slices.ContainsFunc(pauses, func(p outbox.Pause) bool { return p.Destination.String() == vs[i].Destination })
	}
	return vs
}

// DetailView is one message with its history.
type DetailView struct {
	Message  MessageView   `json:"message"`
	Attempts []AttemptView `json:"attempts"`
	Replays  []ReplayView  `json:"replays"`
	Discard  *DiscardView  `json:"discard,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// ViewOf renders a message for JSON output (without its payload).
func ViewOf(m outbox.Message) MessageView {
	return MessageView{ID: m.ID, Seq: m.Seq, ReferralID: m.ReferralID, Destination: m.Destination.String(),
		Type: string(m.Type), State: string(m.State), Attempts: m.Attempts, CreatedAt: m.CreatedAt,
		NextAttemptAt: timePtr(m.NextAttemptAt), DeliveredAt: timePtr(m.DeliveredAt), LastError: m.LastError}
}

// Views renders messages for JSON output.
func Views(msgs []outbox.Message) []MessageView {
	out := make([]MessageView, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, ViewOf(m))
	}
	return out
}

// DetailViewOf renders a message with its attempts, replays and payload.
func DetailViewOf(d outbox.MessageDetail) DetailView {
	v := DetailView{Message: ViewOf(d.Message), Attempts: []AttemptView{}, Replays: []ReplayView{}}
	v.Message.Payload = d.Message.Payload
	for _, a := range d.Attempts {
		v.Attempts = append(v.Attempts, AttemptView{N: a.N, StartedAt: a.StartedAt,
			LatencyMS: float64(a.Latency.Microseconds()) / 1000, StatusCode: a.StatusCode, Error: a.Error, Response: a.Response})
	}
	if dc := d.Discard; dc != nil {
		v.Discard = &DiscardView{At: dc.At, Actor: dc.Actor, Reason: dc.Reason, FromState: string(dc.FromState)}
	}
	for _, r := range d.Replays {
		v.Replays = append(v.Replays, ReplayView{At: r.At, Actor: r.Actor, Reason: r.Reason, FromState: string(r.FromState)})
	}
	return v
}

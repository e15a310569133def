package referral

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socialrx/socialrx/outbox"
)

// Operator is the one code path behind the admin API (/admin/v1) and the `socialrx outbox` CLI: both list, show
// and replay messages through it, so an engineer sees and does the same thing either way.
type Operator struct {
	Store outbox.Store
	Clock func() time.Time // default time.Now
}

func (o Operator) now() time.Time {
	if o.Clock != nil {
		return o.Clock()
	}
	return time.Now()
}

// List returns messages matching q.
func (o Operator) List(ctx context.Context, q outbox.MessageQuery) ([]outbox.Message, error) {
	return o.Store.ListMessages(ctx, q)
}

// Counts returns the number of messages in each state and the oldest pending message's creation (metrics).
func (o Operator) Counts(ctx context.Context) (map[outbox.MessageState]int, time.Time, error) {
	return o.Store.CountMessages(ctx)
}

// Show returns one message with every attempt and replay.
func (o Operator) Show(ctx context.Context, id string) (outbox.MessageDetail, error) {
	return o.Store.GetMessage(ctx, id)
}

// maxReasonLen bounds a replay reason (it is stored with every replayed message).
const maxReasonLen = 500

// Replay moves the selected messages back to pending, keeping their ids (receivers dedupe on webhook-id),
// recording actor and reason, and setting their referrals' businessStatus back to queued. A filter replays only
// dead messages; a cancelled message (withdrawn before delivery) is refused with outbox.ErrBadRequest. With DryRun nothing changes and the returned messages are what would be replayed.
func (o Operator) Replay(ctx context.Context, req outbox.ReplayRequest) ([]outbox.Message, error) {
	req.Reason = strings.TrimSpace(req.Reason)
	switch {
	case req.Reason == "":
		return nil, fmt.Errorf("%w: a reason is required (it is recorded with every replayed message)", outbox.ErrBadRequest)
	case utf8.RuneCountInString(req.Reason) > maxReasonLen:
		return nil, fmt.Errorf("%w: the reason is longer than %d characters", outbox.ErrBadRequest, maxReasonLen)
	case strings.TrimSpace(req.Actor) == "":
		return nil, fmt.Errorf("%w: the actor is required", outbox.ErrBadRequest)
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
		if d.Message.State == outbox.StateCancelled {
			return nil, fmt.Errorf("%w: message %s is cancelled (withdrawn before delivery: its referral was cancelled by the GP); a cancelled message is never sent, so it cannot be replayed", outbox.ErrBadRequest, id)
		}
	}
	if req.Filter != nil {
		f := *req.Filter
		if len(f.States) == 0 {
			f.States = []outbox.MessageState{outbox.StateDead}
		}
		if slices.Contains(f.States, outbox.StateCancelled) {
			return nil, fmt.Errorf("%w: cancelled messages (withdrawn before delivery) cannot be replayed; a filtered replay takes dead messages only", outbox.ErrBadRequest)
		}
		if slices.ContainsFunc(f.States, func(s outbox.MessageState) bool { return s != outbox.StateDead }) {
			return nil, fmt.Errorf("%w: a filtered replay takes dead messages only; name other messages by id", outbox.ErrBadRequest)
		}
		req.Filter = &f
	}
	req.Update = outbox.QueuedAgain
	return o.Store.ReplayMessages(ctx, o.now(), req)
}

// Timeline returns every version of a referral with the messages each wrote (outbox.ErrNotFound when there is
// no such referral).
func (o Operator) Timeline(ctx context.Context, referralID string) ([]outbox.TimelineEntry, error) {
	return o.Store.Timeline(ctx, referralID)
}

// MessageView is the JSON form of a message shared by the admin API and the CLI. It carries no payload (which
// holds patient data) except in DetailView.
type MessageView struct {
	ID            string          `json:"id"`
	Seq           int64           `json:"seq"`
	ReferralID    string          `json:"referral_id"`
	Destination   string          `json:"destination"`
	Type          string          `json:"type"`
	State         string          `json:"state"`
	Attempts      int             `json:"attempts"`
	CreatedAt     time.Time       `json:"created_at"`
	NextAttemptAt *time.Time      `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`
	LastError     string          `json:"last_error,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
}

// AttemptView is the JSON form of an attempt.
type AttemptView struct {
	N          int       `json:"n"`
	StartedAt  time.Time `json:"started_at"`
	LatencyMS  float64   `json:"latency_ms"`
	StatusCode int       `json:"status_code"`
	Error      string    `json:"error,omitempty"`
}

// ReplayView is the JSON form of a replay record.
type ReplayView struct {
	At        time.Time `json:"at"`
	Actor     string    `json:"actor"`
	Reason    string    `json:"reason"`
	FromState string    `json:"from_state"`
}

// DetailView is one message with its history.
type DetailView struct {
	Message  MessageView   `json:"message"`
	Attempts []AttemptView `json:"attempts"`
	Replays  []ReplayView  `json:"replays"`
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
			LatencyMS: float64(a.Latency.Microseconds()) / 1000, StatusCode: a.StatusCode, Error: a.Error})
	}
	for _, r := range d.Replays {
		v.Replays = append(v.Replays, ReplayView{At: r.At, Actor: r.Actor, Reason: r.Reason, FromState: string(r.FromState)})
	}
	return v
}

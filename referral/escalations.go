package referral

import (
	"context"
	"slices"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Escalation is a referral at another group that the response-deadline ladder escalated to the link-worker
// service (still unanswered) or declined for want of an answer: what the link worker sees of it — the
// identifiers, the group, the referring practice and the dates, as the referral.escalated event carries them
// — never the person, whose referral is not the link worker's. A pull-only link worker (no webhook) reads
// its escalations in its inbox.
type Escalation struct {
	ReferralID  string
	TaskID      string
	ServiceID   string
	ServiceName string
	PracticeODS string
	Step        mapping.DeadlineStep
	CreatedAt   time.Time // when the referral was made
	UpdatedAt   time.Time // when it reached the rung
}

// maxEscalations bounds the escalations listed (the most recent).
const maxEscalations = 50

// Escalations lists the referrals of other groups escalated to the link-worker service or declined for no
// answer, changed since since, newest first (at most 50). Only the link-worker service may ask
// (fault.Forbidden for anyone else).
func (s *Service) Escalations(ctx context.Context, c Caller, since time.Time) ([]Escalation, error) {
	lw, ok := s.cfg.Directory.LinkWorker()
	if c.Client.Role != config.RoleCommunity || !ok || lw.ID != c.Client.Service {
		return nil, fault.New(fault.Forbidden, "forbidden", "", "only the link-worker service is told of escalations")
	}
	refs, _, err := s.store.SearchReferrals(ctx, outbox.ReferralQuery{UpdatedFrom: since, Limit: 4 * maxEscalations,
		DeadlineSteps: []mapping.DeadlineStep{mapping.DeadlineEscalated, mapping.DeadlineDeclined},
		Statuses:      []mapping.TaskStatus{mapping.StatusRequested, mapping.StatusRejected}})
	if err != nil {
		return nil, err
	}
	var out []Escalation
	for _, r := range refs {
		rec := r.Record
		if rec.Service.ID == lw.ID || (rec.DeadlineStep == mapping.DeadlineEscalated) != (rec.Status == mapping.StatusRequested) {
			continue // its own referrals are in its list; an escalated referral answered since is no longer waiting
		}
		out = append(out, Escalation{ReferralID: rec.ID, TaskID: rec.TaskID, ServiceID: rec.Service.ID,
			ServiceName: s.ServiceName(rec.Service.ID), PracticeODS: r.PracticeODS, Step: rec.DeadlineStep,
			CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt})
	}
	slices.Reverse(out) // the store's order is oldest change first
	return out[:min(len(out), maxEscalations)], nil
}

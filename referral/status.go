package referral

import (
	"context"
	"errors"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// StatusRequest is a community service's move on one of its referrals: acknowledge, accept, decline, start,
// hold, complete or not complete, optionally with a note.
type StatusRequest struct {
	// ReferralID is the community record's id.
	ReferralID string
	// ExpectVersion > 0 must be the referral's current version (the caller read it; fault.Stale otherwise).
	ExpectVersion int
	Status        mapping.TaskStatus
	Reason        string
	Outcome       *mapping.Outcome
	// Note, when not empty, is added to the Task's notes (author: the service, time: now) with the change;
	// with the status the referral already has it is a note-only change.
	Note string
}

// CommunityStatuses are the statuses a community service sets (the Task vocabulary without the requester's).
func CommunityStatuses() []mapping.TaskStatus {
	return []mapping.TaskStatus{
		mapping.StatusReceived, mapping.StatusAccepted, mapping.StatusRejected, mapping.StatusInProgress,
		mapping.StatusOnHold, mapping.StatusCompleted, mapping.StatusFailed,
	}
}

// ChangeStatus applies a community service's move through the state machine (mapping.ApplyStatus), in one
// store transaction with the events it causes, and returns the referral before and after. The same status
// again without a note is a harmless repeat: the referral is returned unchanged (no new version, nothing
// sent). Errors: outbox.ErrNotFound (not this service's referral), outbox.ErrVersionMismatch (stale
// ExpectVersion), a *mapping.TransitionError (the move is not allowed), a fault.Rule error naming the field
// (a reason or outcome the move needs, too many notes).
func (s *Service) ChangeStatus(ctx context.Context, c Caller, req StatusRequest) (before, after outbox.Referral, err error) {
	if c.Client.Role != config.RoleCommunity {
		return outbox.Referral{}, outbox.Referral{}, fault.New(fault.Forbidden, "forbidden", "", "only the referral's community service may change its status here")
	}
	change := mapping.StatusChange{To: req.Status, By: mapping.ActorCommunity, Reason: req.Reason, Outcome: req.Outcome, NewID: s.newID,
		Actor: eventActor(ctx, c)}
	if req.Note != "" {
		change.Notes, change.NoteAuthor = []string{req.Note}, s.noteAuthor(c.Client)
	}
	now := s.Now()
	apply := s.statusUpdate(change, now)
	after, err = s.store.UpdateReferral(ctx, req.ReferralID, req.ExpectVersion, now,
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			before = cur
			if !Visible(c.Client, cur) || cur.Record.ID != req.ReferralID {
				return cur.Referral, nil, notVisible(string(ByRecordID))
			}
			return apply(cur)
		})
	if err != nil {
		return outbox.Referral{}, outbox.Referral{}, err
	}
	if before.Record.ID == "" { // a no-op answered without running the update
		before = after
	}
	action := outbox.AuditUpdate
	if after.Record.Version == before.Record.Version {
		action = outbox.AuditRead
	}
	if err := s.audit(ctx, c, action, ByRecordID, after); err != nil {
		return outbox.Referral{}, outbox.Referral{}, err
	}
	s.logStatusChange(c, before, after)
	s.settleChoice(ctx, before, after)
	return before, after, nil
}

// statusUpdate is the store update that applies change with mapping.ApplyStatus. The service is told of the
// requester's moves when it has a webhook: messages of one referral are delivered in order, so a cancellation
// queued behind a referral.created not yet delivered still arrives after it (or, when the service never got
// the referral, the store withdraws both: outbox.Store.UpdateReferral). now must be the time given to
// UpdateReferral, so that notes and event payloads carry the new version's time.
func (s *Service) statusUpdate(change mapping.StatusChange, now time.Time) outbox.ReferralUpdate {
	return func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		c := change
		svc, ok := s.cfg.Directory.Service(cur.Record.Service.ID)
		c.ServiceHasWebhook = ok && svc.Delivery.URL != ""
		c.ServiceHasReferral = c.ServiceHasWebhook
		next, events, err := mapping.ApplyStatus(cur.Referral, c, now)
		if errors.Is(err, mapping.ErrNoChange) {
			return cur.Referral, nil, outbox.ErrNoChange
		}
		return next, events, err
	}
}

// logStatusChange logs a status change (ids and statuses only: no patient data).
func (s *Service) logStatusChange(c Caller, before, after outbox.Referral) {
	if after.Record.Version == before.Record.Version {
		s.log.Debug("referral status unchanged (repeat)", "request_id", c.RequestID,
			"referral_id", before.Record.ID, "status", after.Record.Status, "client", c.Client.ID)
		return
	}
	s.log.Info("referral status changed", "request_id", c.RequestID, "referral_id", before.Record.ID,
		"from", before.Record.Status, "to", after.Record.Status, "version", after.Record.Version, "client", c.Client.ID)
}

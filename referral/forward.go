package referral

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// ForwardRequest is the link-worker service's onward referral of one of its referrals to groups of the
// directory (docs/design.md#link-worker-onward-referral).
type ForwardRequest struct {
	// ReferralID is the link worker's community record id.
	ReferralID string
	// ExpectVersion > 0 must be the referral's current version (fault.Stale otherwise).
	ExpectVersion int
	// Services are the directory ids of the groups suggested (a shortlist: the person chooses).
	Services []string
	// Note, when not empty, goes on every child's Task (author: the link-worker service).
	Note string
}

// Forward writes the link worker's onward referral (mapping.Forward): one linked referral per chosen group,
// each visible to that group only, and the link worker's referral with the children linked, in one store
// transaction. Errors: fault.Forbidden (not a community client, or not the link-worker service), ErrNotFound
// (not this service's referral), fault.Conflict (closed referral, a group with no room: capacity_full naming
// it, a group already suggested), fault.Rule (a group that cannot meet the needs), fault.Invalid (unknown or
// repeated services, a bad note), outbox.ErrVersionMismatch.
func (s *Service) Forward(ctx context.Context, c Caller, req ForwardRequest) (parent outbox.Referral, children []outbox.Referral, err error) {
	if c.Client.Role != config.RoleCommunity {
		return outbox.Referral{}, nil, fault.New(fault.Forbidden, "forbidden", "", "only the referral's community service may forward it")
	}
	fw, ok := s.store.(outbox.Forwarder)
	if !ok {
		return outbox.Referral{}, nil, fmt.Errorf("forward: %w: the store cannot write onward referrals", fault.Sentinel(fault.Unavailable, "no forwarder"))
	}
	caps, err := s.capacities(ctx)
	if err != nil {
		return outbox.Referral{}, nil, err
	}
	now := s.Now()
	in := mapping.ForwardInput{Directory: s.cfg.Directory, Capacities: caps, Services: req.Services, Note: req.Note,
		NoteAuthor: s.noteAuthor(c.Client), Now: now, NewID: s.newID}
	parent, children, err = fw.Forward(ctx, req.ReferralID, req.ExpectVersion, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Intake, error) {
		if !Visible(c.Client, cur) || cur.Record.ID != req.ReferralID {
			return cur.Referral, nil, notVisible(string(ByRecordID))
		}
		next, kids, err := mapping.Forward(cur.Referral, in)
		for i := range kids {
			kids[i].ServiceRequest = cur.ServiceRequest // the same ServiceRequest: the children's Task focus
		}
		return next, kids, err
	})
	if err != nil {
		return outbox.Referral{}, nil, err
	}
	if err := s.audit(ctx, c, outbox.AuditUpdate, ByRecordID, parent); err != nil {
		return outbox.Referral{}, nil, err
	}
	for _, ch := range children {
		if err := s.audit(ctx, c, outbox.AuditCreate, ByRecordID, ch); err != nil {
			return outbox.Referral{}, nil, err
		}
	}
	s.log.Info("referral forwarded", "request_id", c.RequestID, "referral_id", parent.Record.ID, "children", len(children),
		"client", c.Client.ID)
	return parent, children, nil
}

// settleChoice runs after a forwarded referral was accepted: under the link worker's referral's lock, the
// first child accepted is recorded as the person's choice, and every other child still open is cancelled
// with reason "the person chose another group" (a child that lost a race of two accepts is cancelled too).
// The accept has committed already: a failure here is logged, and the next accept of a sibling settles again.
func (s *Service) settleChoice(ctx context.Context, before, after outbox.Referral) {
	if after.Parent == nil || after.Record.Status != mapping.StatusAccepted || before.Record.Status == mapping.StatusAccepted {
		return
	}
	now := s.Now()
	chosen := after.Record.ID
	parent, err := s.store.UpdateReferral(ctx, after.Parent.ReferralID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		if cur.ChosenChild != "" {
			chosen = cur.ChosenChild
			return cur.Referral, nil, outbox.ErrNoChange
		}
		next := mapping.AppendTaskNotes(cur.Referral, mapping.SystemAuthor, now, "The person chose "+after.Record.Service.Name+".")
		next.ChosenChild = chosen
		return next, nil, nil
	})
	if err != nil {
		s.log.Error("settling an onward referral failed", "referral_id", after.Parent.ReferralID, "err", err)
		return
	}
	for _, sib := range parent.Children {
		if sib.ReferralID == chosen {
			continue
		}
		svc, ok := s.cfg.Directory.Service(sib.ServiceID)
		hook := ok && svc.Delivery.URL != ""
		_, err := s.store.UpdateReferral(ctx, sib.ReferralID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			next, events, err := mapping.SiblingCancel(cur.Referral, chosen, hook, now, s.newID)
			if errors.Is(err, mapping.ErrNoChange) {
				return cur.Referral, nil, outbox.ErrNoChange
			}
			return next, events, err
		})
		if err != nil {
			s.log.Error("cancelling a sibling of a chosen group failed", "referral_id", sib.ReferralID, "err", err)
		}
	}
}

// propagateEnd carries the GP's end of the link worker's referral parent — its cancellation (the Task
// cancelled, the ServiceRequest revoked), or the person's consent withdrawn — to every referral forwarded from
// it, with the parent's reason: each child its own transaction, a failure returned after trying all. A child
// already final keeps its status (a consent withdrawal still erases it); a child already ended is no change,
// so the GP system's retry (a repeat, no change to the parent) finishes a propagation cut short.
func (s *Service) propagateEnd(ctx context.Context, c Caller, parent outbox.Referral, now time.Time) error {
	if parent.Record.Status != mapping.StatusCancelled || len(parent.Children) == 0 {
		return nil
	}
	change := mapping.StatusChange{To: mapping.StatusCancelled, By: mapping.ActorRequester, NewID: s.newID,
		ConsentWithdrawn: parent.Record.ConsentWithdrawn, Actor: eventActor(ctx, c)}
	if !change.ConsentWithdrawn {
		change.Reason = parent.Record.StatusReason
	}
	apply := s.statusUpdate(change, now)
	var errs []error
	for _, ch := range parent.Children {
		_, err := s.store.UpdateReferral(ctx, ch.ReferralID, 0, now, func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			if cur.Record.Status.Terminal() && !change.ConsentWithdrawn {
				return cur.Referral, nil, outbox.ErrNoChange
			}
			return apply(cur)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("end forwarded referral %s: %w", ch.ReferralID, err))
		}
	}
	return errors.Join(errs...)
}

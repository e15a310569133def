package referral

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Task updates (issue 4): PUT and PATCH of the Task from FHIR-capable community platforms (the owner, as the
// community actor) and from GP systems (the requesting practice, as the requester actor: cancelled with a
// reason, or entered-in-error). What may change is decided by mapping.TaskUpdate and the state machine by
// mapping.ApplyStatus.

// TaskForUpdate loads the Task id for an update by its owner's community client (the community actor) or the
// requesting practice's GP client (the requester actor): admins may not (fault.Forbidden); anyone else sees
// nothing (outbox.ErrNotFound).
func (s *Service) TaskForUpdate(ctx context.Context, c Caller, id string) (outbox.Referral, mapping.Actor, error) {
	var actor mapping.Actor
	switch c.Client.Role {
	case config.RoleCommunity:
		actor = mapping.ActorCommunity
	case config.RoleGP:
		actor = mapping.ActorRequester
	case config.RoleAdmin:
		return outbox.Referral{}, "", fhir.NewError(fault.Forbidden, fhir.CodeForbidden,
			"admin clients operate the outbox; only the owning service or the requesting practice may update a Task")
	}
	if actor == "" {
		return outbox.Referral{}, "", fhir.NewError(fault.Forbidden, fhir.CodeForbidden, "this client may not update Tasks")
	}
	ref, err := s.Get(ctx, c, ByTaskID, id)
	if err != nil {
		return outbox.Referral{}, "", err
	}
	return ref, actor, nil
}

// ExpectVersion checks that the caller read the referral's current version (If-Match), so that a stale update
// is refused (outbox.ErrVersionMismatch) before anything else is read.
func ExpectVersion(ref outbox.Referral, expect int) error {
	if expect != ref.Record.Version {
		return fmt.Errorf("task %s is at version %d, If-Match names %d: %w", ref.Record.TaskID, ref.Record.Version, expect, outbox.ErrVersionMismatch)
	}
	return nil
}

// UpdateTask validates the new Task (body: the whole Task as PUT, or as a JSON Patch left it) against the
// current one and applies the status change and notes it asks for, in one store transaction, as actor (from
// TaskForUpdate). The Task sent back exactly as read is no change. Errors: fault.Invalid (not a valid R4 Task,
// or Task.id not the one updated), fault.Rule (an element that may not change, naming each), a
// *mapping.TransitionError, outbox.ErrVersionMismatch.
func (s *Service) UpdateTask(ctx context.Context, c Caller, ref outbox.Referral, actor mapping.Actor, expect int, body []byte) (outbox.Referral, error) {
	if err := fhir.ValidateResource(body, "Task"); err != nil {
		return outbox.Referral{}, err
	}
	var head struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.ID == nil || *head.ID != ref.Record.TaskID {
		return outbox.Referral{}, fhir.NewError(fault.Invalid, fhir.CodeInvalid, "Task.id is required and must equal the id in the URL", "Task.id")
	}
	// The client sends back the Task as it was shown to it (a community service's cut to its sharing profile),
	// so that is what the update is compared with; the change is applied to the whole referral.
	shown := func(r outbox.Referral) mapping.Referral { return s.ViewFor(c.Client, r).Referral }
	if _, err := mapping.TaskUpdate(shown(ref), body); err != nil {
		return outbox.Referral{}, err
	}
	now := s.Now()
	before := ref
	next, err := s.store.UpdateReferral(ctx, ref.Record.ID, expect, now,
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			before = cur
			change, err := mapping.TaskUpdate(shown(cur), body) // against the state inside the transaction
			if err != nil {
				return cur.Referral, nil, err
			}
			if change.To == cur.Record.Status && len(change.Notes) == 0 && !change.ConsentWithdrawn { // the Task as it is (TaskUpdate refused any other change): a no-op
				return cur.Referral, nil, outbox.ErrNoChange // whoever sends it, even if it is not their status to set
			}
			// New notes (with the same status: a note-only change) are authored by the calling client, now.
			change.By, change.NewID, change.NoteAuthor = actor, s.newID, s.noteAuthor(c.Client)
			change.Actor = eventActor(ctx, c)
			return s.statusUpdate(change, now)(cur)
		})
	if err != nil {
		return outbox.Referral{}, err
	}
	action := outbox.AuditUpdate
	if next.Record.Version == before.Record.Version {
		action = outbox.AuditRead
	}
	if err := s.audit(ctx, c, action, ByTaskID, next); err != nil {
		return outbox.Referral{}, err
	}
	s.logStatusChange(c, before, next)
	// Every cancellation and withdrawal by the GP, a repeat included, reaches the forwarded referrals (a child
	// already ended is no change): a propagation cut short (an error, a crash after the parent's commit) is
	// finished by the GP system's retry.
	if actor == mapping.ActorRequester {
		if err := s.propagateEnd(ctx, c, next, now); err != nil {
			return outbox.Referral{}, err
		}
	}
	s.settleChoice(ctx, before, next)
	return next, nil
}

package referral

import (
	"context"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// MeasureRequest is a community service recording an outcome measure on one of its referrals (issue 14).
type MeasureRequest struct {
	// ID names the referral: a community record id (ByRecordID) or a Task id (ByTaskID, the FHIR API).
	ID   string
	Kind IDKind
	// ExpectVersion > 0 must be the referral's current version (fault.Stale otherwise).
	ExpectVersion int
	Measure       mapping.MeasureInput
}

// RecordMeasure validates a measure (mapping.AddMeasure: every problem of the measure at once, then the
// referral's rules) and appends it to the referral in one store transaction: a new Task version whose
// output references the measure's Observation, so the GP side sees it (polling, Subscriptions) exactly as
// for a status change. Nothing is sent to the service, which recorded it. Only the referral's community
// service records measures (fault.Forbidden for other roles; another service's referral is not found).
func (s *Service) RecordMeasure(ctx context.Context, c Caller, req MeasureRequest) (outbox.Referral, mapping.Measure, error) {
	if c.Client.Role != config.RoleCommunity {
		return outbox.Referral{}, mapping.Measure{}, fault.New(fault.Forbidden, "forbidden", "", "only the referral's community service records outcome measures")
	}
	now := s.Now()
	if err := mapping.CheckMeasure(req.Measure, now); err != nil {
		return outbox.Referral{}, mapping.Measure{}, err
	}
	author := s.noteAuthor(c.Client)
	var added mapping.Measure
	after, err := s.store.UpdateReferral(ctx, req.ID, req.ExpectVersion, now,
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			if !Visible(c.Client, cur) || idOf(cur, req.Kind) != req.ID {
				return cur.Referral, nil, notVisible(string(req.Kind))
			}
			next, m, err := mapping.AddMeasure(cur.Referral, req.Measure, author, now)
			added = m
			return next, nil, err
		})
	if err != nil {
		return outbox.Referral{}, mapping.Measure{}, err
	}
	obs := mapping.ObservationID(after.Record.TaskID, added.N)
	_ = s.auditResource(ctx, c, outbox.AuditCreate, "Observation", obs, after) // a change: logged, never refused
	s.log.Info("outcome measure recorded", "request_id", c.RequestID, "referral_id", after.Record.ID,
		"instrument", added.Instrument, "timing", added.Timing, "n", added.N, "version", after.Record.Version, "client", c.Client.ID)
	return after, added, nil
}

// Observation returns the referral and measure behind a FHIR Observation id (mapping.ObservationID), if the
// caller may see the referral: the requesting practice, the referral's service, an admin. Anything else,
// and an unknown or malformed id, is outbox.ErrNotFound.
func (s *Service) Observation(ctx context.Context, c Caller, id string) (outbox.Referral, mapping.Measure, error) {
	taskID, n, ok := mapping.ParseObservationID(id)
	if !ok {
		return outbox.Referral{}, mapping.Measure{}, notVisible("observation")
	}
	ref, err := s.get(ctx, c, ByTaskID, taskID)
	if err != nil {
		return outbox.Referral{}, mapping.Measure{}, err
	}
	m, ok := ref.Measure(n)
	if !ok {
		return outbox.Referral{}, mapping.Measure{}, notVisible("observation")
	}
	if err := s.auditResource(ctx, c, outbox.AuditRead, "Observation", id, ref); err != nil {
		return outbox.Referral{}, mapping.Measure{}, err
	}
	return ref, m, nil
}

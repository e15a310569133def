package referral

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/outbox"
)

// Version history (FHIR vread and _history, R4 http.html#vread): every Task version a client was ever
// served reads again exactly as it was (the store keeps each version's referral: outbox.Timeliner), and a
// ServiceRequest has at most two versions: as accepted (1) and with the status its referral's end gave it
// (revoked, completed, entered-in-error). Who may read a version is who may read the resource now: the
// referral's practice and service never change.

// TaskVersions returns the Task's kept versions, oldest first, if the caller may see it (outbox.ErrNotFound
// otherwise). Versions written before socialrx kept version history (schema migration 20) are missing; the
// current one is always there.
func (s *Service) TaskVersions(ctx context.Context, c Caller, taskID string) ([]outbox.Referral, error) {
	if _, err := s.Get(ctx, c, ByTaskID, taskID); err != nil {
		return nil, err
	}
	return s.store.ReferralVersions(ctx, taskID)
}

// TaskVersion returns version v (a versionId as the client sent it) of the Task, if the caller may see it.
// An unknown version is fault.NotFound with a message saying which versions exist.
func (s *Service) TaskVersion(ctx context.Context, c Caller, taskID, v string) (outbox.Referral, error) {
	cur, err := s.Get(ctx, c, ByTaskID, taskID)
	if err != nil {
		return outbox.Referral{}, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > cur.Record.Version {
		return outbox.Referral{}, noVersion("Task", taskID, v, strconv.Itoa(cur.Record.Version))
	}
	ref, err := s.store.ReferralVersion(ctx, taskID, n)
	if errors.Is(err, outbox.ErrNotFound) {
		return outbox.Referral{}, fhir.NewError(fault.NotFound, fhir.CodeNotFound, fmt.Sprintf(
			"version %d of Task/%s was written before socialrx kept version history, so it cannot be read; later versions can", n, taskID))
	}
	return ref, err
}

// ServiceRequestVersions returns the ServiceRequest's versions, oldest first, if the caller may see it: as
// accepted, then, once the referral ended it, with its new status.
func (s *Service) ServiceRequestVersions(ctx context.Context, c Caller, srID string) ([]RenderedServiceRequest, error) {
	ref, err := s.Get(ctx, c, ByServiceRequestID, srID)
	if err != nil {
		return nil, err
	}
	cur, err := s.ServiceRequest(ctx, ref)
	if err != nil {
		return nil, err
	}
	first := s.acceptedServiceRequest(ref)
	if cur.Version == first.Version {
		return []RenderedServiceRequest{cur}, nil
	}
	return []RenderedServiceRequest{first, cur}, nil
}

// ServiceRequestVersion returns version v of the ServiceRequest, if the caller may see it (fault.NotFound
// naming the versions that exist for an unknown one).
func (s *Service) ServiceRequestVersion(ctx context.Context, c Caller, srID, v string) (RenderedServiceRequest, error) {
	versions, err := s.ServiceRequestVersions(ctx, c, srID)
	if err != nil {
		return RenderedServiceRequest{}, err
	}
	for _, sr := range versions {
		if sr.Version == v {
			return sr, nil
		}
	}
	return RenderedServiceRequest{}, noVersion("ServiceRequest", srID, v, versions[len(versions)-1].Version)
}

// acceptedServiceRequest is the ServiceRequest as it was accepted (its first version): the stored JSON.
func (s *Service) acceptedServiceRequest(ref outbox.Referral) RenderedServiceRequest {
	status, _ := fhir.TopLevelString(ref.ServiceRequest, "status")
	return RenderedServiceRequest{Body: ref.ServiceRequest, Status: status, Version: srVersion(ref), Modified: ref.Record.CreatedAt}
}

// noVersion is the error for an unknown version of an existing resource.
func noVersion(typ, id, v, current string) error {
	if len(v) > 20 {
		v = v[:20] + "…"
	}
	return fhir.NewError(fault.NotFound, fhir.CodeNotFound, fmt.Sprintf(
		"%s/%s has no version %q: its versions are 1 to %s (see %s/%s/_history)", typ, id, v, current, typ, id))
}

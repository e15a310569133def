package referral

import (
	"context"
	"fmt"
	"strings"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// IDKind says which of a referral's ids a caller names.
type IDKind string

// Ids of a referral.
const (
	ByRecordID         IDKind = "record"          // the community record's id (community API, inbox)
	ByTaskID           IDKind = "task"            // Task.id
	ByServiceRequestID IDKind = "service-request" // ServiceRequest.id
)

// Visible reports whether a client may see a referral: a GP client its practices' referrals, a community
// client its service's, an admin every one.
func Visible(cl config.Client, r outbox.Referral) bool {
	switch cl.Role {
	case config.RoleGP:
		return cl.MayReferFrom(r.PracticeODS)
	case config.RoleCommunity:
		return r.Record.Service.ID == cl.Service
	case config.RoleAdmin:
		return true
	}
	return false
}

// notVisible is the error for a referral the caller may not see: not found, never forbidden (a client cannot
// learn that a referral exists).
func notVisible(what string) error {
	return fmt.Errorf("referral: %s: %w", what, outbox.ErrNotFound)
}

// Get returns the referral whose id of kind k is id, if the caller may see it (outbox.ErrNotFound otherwise).
func (s *Service) Get(ctx context.Context, c Caller, k IDKind, id string) (outbox.Referral, error) {
	ref, err := s.get(ctx, c, k, id)
	if err != nil {
		return outbox.Referral{}, err
	}
	if err := s.audit(ctx, c, outbox.AuditRead, k, ref); err != nil {
		return outbox.Referral{}, err
	}
	return ref, nil
}

// get is Get without the audit record (the caller records what it shows).
func (s *Service) get(ctx context.Context, c Caller, k IDKind, id string) (outbox.Referral, error) {
	if k == ByServiceRequestID {
		if err := MayReadGPRecord(c); err != nil {
			return outbox.Referral{}, err
		}
	}
	ref, err := s.store.GetReferral(ctx, id)
	if err != nil {
		return outbox.Referral{}, err
	}
	if !Visible(c.Client, ref) || idOf(ref, k) != id {
		return outbox.Referral{}, notVisible(string(k))
	}
	return ref, nil
}

// idOf is the referral's id of kind k.
func idOf(ref outbox.Referral, k IDKind) string {
	switch k {
	case ByRecordID:
		return ref.Record.ID
	case ByTaskID:
		return ref.Record.TaskID
	case ByServiceRequestID:
		return ref.Record.ServiceRequestID
	}
	return ""
}

// Query is a search over the referrals a caller may see.
type Query struct {
	outbox.ReferralQuery
	// RequesterODS narrows to one referring practice (requester:identifier); "" does not filter.
	RequesterODS string
	// None says the filters contradict each other or name nothing that exists (an unknown owner, a Task code
	// other than fulfill): nothing matches, and the store is not asked.
	None bool
	// Resource is which of the referrals' resources the caller is shown (the audit trail's resource):
	// ByTaskID for a Task search, ByServiceRequestID for a ServiceRequest search, ByRecordID (or "") for the
	// community record.
	Resource IDKind
}

// Search returns the referrals matching q that the caller may see, in (UpdatedAt, ID) order, and the cursor of
// the next page (nil when none). The caller's scope is applied here, whatever q asks: a GP client sees its
// practices only, a community client its service only.
func (s *Service) Search(ctx context.Context, c Caller, q Query) ([]outbox.Referral, *outbox.Cursor, error) {
	if q.Resource == ByServiceRequestID {
		if err := MayReadGPRecord(c); err != nil {
			return nil, nil, err
		}
	}
	sq, ok := scope(c.Client, q)
	if !ok {
		return nil, nil, nil
	}
	refs, next, err := s.store.SearchReferrals(ctx, sq)
	if err != nil {
		return nil, nil, err
	}
	out := refs[:0]
	for _, r := range refs {
		if Visible(c.Client, r) { // defence in depth: the query is already scoped
			out = append(out, r)
		}
	}
	if err := s.audit(ctx, c, outbox.AuditRead, q.Resource, out...); err != nil {
		return nil, nil, err
	}
	return out, next, nil
}

// Count returns how many referrals match q that the caller may see (a search's Bundle.total), whatever q's
// page.
func (s *Service) Count(ctx context.Context, c Caller, q Query) (int, error) {
	sq, ok := scope(c.Client, q)
	if !ok {
		return 0, nil
	}
	return s.store.CountReferrals(ctx, sq)
}

// scope narrows q to what cl may see; ok is false when nothing can match.
func scope(cl config.Client, q Query) (outbox.ReferralQuery, bool) {
	sq := q.ReferralQuery
	if q.None {
		return sq, false
	}
	// Practices are stored in upper case (mapping.NormalODS): ODS codes match whatever case the directory
	// file or the search uses.
	switch cl.Role {
	case config.RoleGP:
		sq.Practices = make([]string, 0, len(cl.Practices))
		for _, p := range cl.Practices {
			sq.Practices = append(sq.Practices, mapping.NormalODS(p))
		}
		if q.RequesterODS != "" {
			if !cl.MayReferFrom(q.RequesterODS) {
				return sq, false
			}
			sq.Practices = []string{mapping.NormalODS(q.RequesterODS)}
		}
	case config.RoleCommunity:
		if cl.Service == "" || (sq.ServiceID != "" && sq.ServiceID != cl.Service) {
			return sq, false
		}
		sq.ServiceID = cl.Service
		if q.RequesterODS != "" {
			sq.Practices = []string{mapping.NormalODS(q.RequesterODS)}
		}
	case config.RoleAdmin:
		if q.RequesterODS != "" {
			sq.Practices = []string{mapping.NormalODS(q.RequesterODS)}
		}
	default:
		return sq, false
	}
	return sq, true
}

// ServiceByReference resolves an owner search value to a directory service id: "frome-walks",
// "Organization/frome-walks" or "HealthcareService/frome-walks"; with byIdentifier, "system|value" (or
// "value") of one of the service's directory identifiers.
func (s *Service) ServiceByReference(v string, byIdentifier bool) (string, bool) {
	for _, svc := range s.cfg.Directory.Services {
		if byIdentifier {
			want := ParseToken(v)
			for _, id := range svc.Identifiers {
				if (want.System == "" || want.System == id.System) && mapping.SameIdentifierValue(id.System, id.Value, want.Value) {
					return svc.ID, true
				}
			}
			continue
		}
		if v == svc.ID || strings.TrimPrefix(v, "Organization/") == svc.ID || strings.TrimPrefix(v, "HealthcareService/") == svc.ID {
			return svc.ID, true
		}
	}
	return "", false
}

// ParseToken splits a FHIR token value "system|value" (or "value").
func ParseToken(v string) mapping.Identifier {
	if sys, val, ok := strings.Cut(v, "|"); ok {
		return mapping.Identifier{System: sys, Value: val}
	}
	return mapping.Identifier{Value: v}
}

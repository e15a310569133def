package referral

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// CapacityRequest is what a group says about how full it is (community API PUT /community/v1/capacity, the
// inbox's one-tap control). The store counts the open referrals; a group never sends that number.
type CapacityRequest struct {
	Status           mapping.CapacityStatus
	ExpectedWaitDays int
	Until            string // YYYY-MM-DD (paused), "" for none
	// MaxOpen is the maximum of open referrals; nil keeps the current one (the inbox's one tap changes only
	// the status).
	MaxOpen *int
}

// CodeInvalidCapacity is the rule code of a refused capacity setting (the field names the part at fault).
const CodeInvalidCapacity fault.Code = "invalid_capacity"

// ServiceCapacity is one directory service with its capacity as the store has it now.
type ServiceCapacity struct {
	Service  mapping.Service
	Capacity mapping.Capacity
}

// communityService is the caller's own service (community clients only).
func (s *Service) communityService(c Caller) (mapping.Service, error) {
	if c.Client.Role != config.RoleCommunity {
		return mapping.Service{}, fault.New(fault.Forbidden, "forbidden", "", "only a community service's own client reads or sets its capacity")
	}
	svc, ok := s.cfg.Directory.Service(c.Client.Service)
	if !ok {
		return mapping.Service{}, fault.New(fault.Forbidden, "forbidden", "", "the client's service is not in the directory")
	}
	return svc, nil
}

// capacityOf is svc's capacity: the stored one, else the directory's initial setting, else open; with the
// open count either way.
func (s *Service) capacityOf(svc mapping.Service, stored mapping.Capacity, found bool) mapping.Capacity {
	if found {
		return stored
	}
	c := mapping.Capacity{ServiceID: svc.ID, Status: mapping.CapacityOpen, Open: stored.Open}
	if svc.Capacity != nil {
		c.Status, c.ExpectedWaitDays, c.Until, c.MaxOpen = svc.Capacity.Status, svc.Capacity.ExpectedWaitDays, svc.Capacity.Until, svc.Capacity.MaxOpen
	}
	return c
}

// Capacity returns the caller's own service's capacity (community clients only).
func (s *Service) Capacity(ctx context.Context, c Caller) (mapping.Capacity, error) {
	svc, err := s.communityService(c)
	if err != nil {
		return mapping.Capacity{}, err
	}
	stored, found, err := s.store.GetCapacity(ctx, svc.ID)
	if err != nil {
		return mapping.Capacity{}, err
	}
	return s.capacityOf(svc, stored, found), nil
}

// SetCapacity stores what the caller's service says about its capacity (community clients only) and returns
// it with the open count. A setting that breaks a rule (mapping.CheckCapacity) is fault.Invalid naming the
// field, and changes nothing.
func (s *Service) SetCapacity(ctx context.Context, c Caller, req CapacityRequest, actor string) (mapping.Capacity, error) {
	svc, err := s.communityService(c)
	if err != nil {
		return mapping.Capacity{}, err
	}
	now := s.Now()
	next := mapping.Capacity{ServiceID: svc.ID, Status: req.Status, ExpectedWaitDays: req.ExpectedWaitDays, UpdatedAt: now, UpdatedBy: actor}
	if req.Until != "" {
		u, err := parseDate(req.Until)
		if err != nil {
			return mapping.Capacity{}, fault.New(fault.Invalid, CodeInvalidCapacity, mapping.FieldUntil, "until must be a date, YYYY-MM-DD")
		}
		next.Until = u
	}
	if req.MaxOpen != nil {
		next.MaxOpen = *req.MaxOpen
	} else {
		cur, err := s.Capacity(ctx, c)
		if err != nil {
			return mapping.Capacity{}, err
		}
		next.MaxOpen = cur.MaxOpen
	}
	if field, why := mapping.CheckCapacity(next, now); field != "" {
		return mapping.Capacity{}, fault.New(fault.Invalid, CodeInvalidCapacity, field, why)
	}
	out, _, err := s.store.SetCapacity(ctx, next, false)
	if err != nil {
		return mapping.Capacity{}, fmt.Errorf("referral: set capacity: %w", err)
	}
	s.log.InfoContext(ctx, "capacity set", slog.String("request_id", c.RequestID), slog.String("service", svc.ID),
		slog.String("status", string(out.Status)), slog.Int("max_open", out.MaxOpen))
	return out, nil
}

// SeedCapacities stores the directory's initial capacity of every service that has one and has never set
// its own (a group's setting is never overridden), stamped now. serve runs it at start, before it serves:
// from then on the store enforces a directory max_open like a group's.
func SeedCapacities(ctx context.Context, store outbox.Capacities, dir mapping.Directory, now time.Time) error {
	for _, svc := range dir.Services {
		if svc.Capacity == nil {
			continue
		}
		c := *svc.Capacity
		c.ServiceID, c.UpdatedAt, c.UpdatedBy, c.Open = svc.ID, now, "directory", 0
		if _, _, err := store.SetCapacity(ctx, c, true); err != nil {
			return fmt.Errorf("referral: seed capacity of %s: %w", svc.ID, err)
		}
	}
	return nil
}

// ServiceCapacities returns every directory service with its capacity now, in directory order (any client:
// the directory holds no patient data).
func (s *Service) ServiceCapacities(ctx context.Context) ([]ServiceCapacity, error) {
	all, err := s.store.ListCapacities(ctx)
	if err != nil {
		return nil, err
	}
	return s.withDirectory(all), nil
}

// withDirectory is every directory service, in directory order, with its capacity from the stored ones (by
// service id) or, when it never set one, the directory's (capacityOf).
func (s *Service) withDirectory(all map[string]mapping.Capacity) []ServiceCapacity {
	out := make([]ServiceCapacity, 0, len(s.cfg.Directory.Services))
	for _, svc := range s.cfg.Directory.Services {
		stored, found := all[svc.ID]
		stored.ServiceID = svc.ID
		found = found && stored.Status.Valid()
		out = append(out, ServiceCapacity{Service: svc, Capacity: s.capacityOf(svc, stored, found)})
	}
	return out
}

// parseDate reads a YYYY-MM-DD date as its UTC midnight.
func parseDate(s string) (time.Time, error) { return time.Parse(time.DateOnly, s) }

// capacities are every directory service's capacity now, by id, as routing reads them
// (mapping.BuildInput.Capacities): the open count only of the services with a maximum, stored or from the
// directory (outbox.Capacities.RouteCapacities), since routing compares it with nothing else.
func (s *Service) capacities(ctx context.Context) (map[string]mapping.Capacity, error) {
	var count []string
	for _, svc := range s.cfg.Directory.Services {
		if svc.Capacity != nil && svc.Capacity.MaxOpen > 0 {
			count = append(count, svc.ID)
		}
	}
	stored, err := s.store.RouteCapacities(ctx, count)
	if err != nil {
		return nil, err
	}
	all := s.withDirectory(stored)
	out := make(map[string]mapping.Capacity, len(all))
	for _, sc := range all {
		out[sc.Service.ID] = sc.Capacity
	}
	return out, nil
}

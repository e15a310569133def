package referral

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Caller is who asks for a use case: the authenticated client and the request's correlation id (for the
// log lines a use case writes; never patient data).
type Caller struct {
	Client    config.Client
	RequestID string
}

// Options are what a Service needs; everything that varies is injected.
type Options struct {
	Store  outbox.Store
	Config *config.Config
	Clock  func() time.Time // default time.Now
	NewID  func() string    // default UUIDv7
	Logger *slog.Logger     // default: discard
	// Instance names this process's readiness probe row (default: "instance-" + a new id).
	Instance string
	// Secrets seal stored credentials (Subscription channel.header values); nil: none can be stored.
	Secrets *outbox.Keyring
	// MaxSubscriptionsPerClient caps a GP client's active Subscriptions (0: no cap).
	MaxSubscriptionsPerClient int
	// SubscriptionOff, if set, is told the id of each Subscription its owner turns off (metrics forget it).
	SubscriptionOff func(id string)
	// Auditor, when set, records every read and change of patient data (the audit trail).
	Auditor Auditor
}

// Service runs the use cases against one store and one directory. It is safe for concurrent use.
type Service struct {
	store outbox.Store
	cfg   *config.Config
	now   func() time.Time
	newID func() string
	log   *slog.Logger
	// instance names this process's readiness probe (CheckWrite).
	instance string
	// secrets, maxSubs and subscriptionOff: see Options.
	secrets         *outbox.Keyring
	maxSubs         int
	subscriptionOff func(id string)
	auditor         Auditor
	uk              *time.Location // Europe/London: months of the figures, dates on the GP letter
}

// New returns a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Config == nil {
		return nil, errors.New("referral: Store and Config are required")
	}
	uk, err := time.LoadLocation("Europe/London")
	if err != nil {
		return nil, fmt.Errorf("referral: the UK time zone: %w", err)
	}
	s := &Service{store: o.Store, cfg: o.Config, now: o.Clock, newID: o.NewID, log: o.Logger, uk: uk}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = NewUUIDv7
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.secrets, s.maxSubs, s.subscriptionOff = o.Secrets, o.MaxSubscriptionsPerClient, o.SubscriptionOff
	s.instance = o.Instance
	s.auditor = o.Auditor
	if s.instance == "" {
		s.instance = "instance-" + s.newID()
	}
	return s, nil
}

// UK is the Europe/London time zone (loaded once, by New).
func (s *Service) UK() *time.Location { return s.uk }

// NewUUIDv7 returns a new time-ordered UUID string (a v4 if the random source fails v7).
func NewUUIDv7() string {
	id, err := uuid.NewV7()
	if err != nil { // only if the system's random source fails
		return uuid.NewString()
	}
	return id.String()
}

// Now is the Service's clock as stored: UTC, truncated to the microsecond.
func (s *Service) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Ping checks that the store answers.
func (s *Service) Ping(ctx context.Context) error { return s.store.Ping(ctx) }

// CheckWrite is readiness: the store takes a write now, and none failed for want of the database since the
// previous check (outbox.Store.CheckWrite).
func (s *Service) CheckWrite(ctx context.Context) error {
	return s.store.CheckWrite(ctx, s.instance, s.Now())
}

// Operator is the engineers' code path (admin API, console and CLI) over this Service's store, clock,
// directory and logger.
func (s *Service) Operator() Operator {
	return Operator{Store: s.store, Clock: s.now, Directory: &s.cfg.Directory, Logger: s.log, Audit: s.auditor}
}

// Directory is the community directory the Service routes to.
func (s *Service) Directory() mapping.Directory { return s.cfg.Directory }

// ServiceName is the directory name of a community service (its id when unnamed).
func (s *Service) ServiceName(id string) string {
	if svc, ok := s.cfg.Directory.Service(id); ok && svc.Name != "" {
		return svc.Name
	}
	return id
}

// Shared is rec as its community service may see it: cut to the service's sharing profile (the directory's
// sharing; the safe default for a service the directory no longer lists). Every surface a community service
// reads the record through (the community API, the inbox page) shows this; webhook payloads are cut by mapping
// when they are built.
func (s *Service) Shared(rec mapping.Record) mapping.Record {
	svc, _ := s.cfg.Directory.Service(rec.Service.ID)
	return svc.Sharing.Apply(rec)
}

// ViewFor is ref as the client sees it through FHIR (its Task and Observations): a community service's cut
// to its sharing profile (mapping.SharingProfile.ForService), anyone else's whole.
func (s *Service) ViewFor(cl config.Client, ref outbox.Referral) outbox.Referral {
	if cl.Role != config.RoleCommunity {
		return ref
	}
	svc, _ := s.cfg.Directory.Service(ref.Record.Service.ID)
	ref.Referral = svc.Sharing.ForService(ref.Referral)
	return ref
}

// MayReadGPRecord reports whether c may read the GP side's own documents — the ServiceRequest as the GP system
// sent it, and the GP letter — which carry everything about the person: not a community service
// (fault.Forbidden), which sees the referral only as its sharing profile lets it (its Task, the community API,
// the inbox).
func MayReadGPRecord(c Caller) error {
	if c.Client.Role == config.RoleCommunity {
		return fault.New(fault.Forbidden, "forbidden", "", "a community service reads its referrals as its Task "+
			"or through the community API, cut to its sharing profile; the GP's ServiceRequest and the GP letter are not shared with it")
	}
	return nil
}

// noteAuthor is the author shown on a note a client adds: a community service's name (the directory requires
// one), a GP client's id.
func (s *Service) noteAuthor(cl config.Client) string {
	if cl.Role == config.RoleCommunity {
		return s.ServiceName(cl.Service)
	}
	return cl.ID
}

// UseOnce records key (a hash of untrusted values, e.g. a client assertion's jti) until expiresAt for every
// instance sharing the store, and reports whether it was fresh (false: seen before and not yet expired).
func (s *Service) UseOnce(ctx context.Context, key string, expiresAt time.Time) (bool, error) {
	return s.store.UseNonce(ctx, key, expiresAt, s.now())
}

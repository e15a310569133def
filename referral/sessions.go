package referral

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// The community inbox page's sign-in (docs/design.md#community-inbox-page): a group signs in once with its
// community token and the service it says it is; the browser then holds only a random session id. The store
// keeps the id's hash, the client and the hash of the token the session was opened with, so that
//   - reading the database (or a backup) never yields a cookie or a token,
//   - signing out ends the session at once on every instance sharing the database, and
//   - rotating the client's token in the directory file voids its sessions: the first instance that runs
//     with the new directory and sees such a session deletes it, for every instance.
// Sessions end after an idle timeout and an absolute one (SessionPolicy). Wrong sign-ins are counted per
// client address and per service in the shared database; past the limits, sign-ins are refused (429) until
// the oldest failure leaves the window, before the token is even looked at.

// SessionPolicy is how long inbox sessions last and how wrong sign-ins are slowed down.
type SessionPolicy struct {
	// Idle ends a session not used for this long (default 30 minutes).
	Idle time.Duration
	// Max ends a session this long after sign-in however much it is used (default 8 hours).
	Max time.Duration
	// Window is how long a wrong sign-in counts against its address and its service (default 15 minutes).
	Window time.Duration
	// PerAddress wrong sign-ins from one client address within Window block its sign-ins (default 5).
	PerAddress int
	// PerService wrong sign-ins for one service within Window, from anywhere, block that service's sign-ins
	// (default 20): a guess spread over many addresses is slowed down too.
	PerService int
}

// DefaultSessionPolicy is the policy of an inbox started without settings.
func DefaultSessionPolicy() SessionPolicy {
	return SessionPolicy{Idle: 30 * time.Minute, Max: 8 * time.Hour, Window: 15 * time.Minute, PerAddress: 5, PerService: 20}
}

// withDefaults fills the zero fields of p from DefaultSessionPolicy; Idle is capped at Max.
func (p SessionPolicy) withDefaults() SessionPolicy {
	d := DefaultSessionPolicy()
	p.Idle = cmp.Or(p.Idle, d.Idle)
	p.Max = cmp.Or(p.Max, d.Max)
	p.Window = cmp.Or(p.Window, d.Window)
	p.PerAddress = cmp.Or(p.PerAddress, d.PerAddress)
	p.PerService = cmp.Or(p.PerService, d.PerService)
	p.Idle = min(p.Idle, p.Max)
	return p
}

// Errors of the inbox sign-in.
var (
	// ErrSignInRefused: the token is not the chosen service's community token. The error never says
	// whether the token is someone else's, nor whose.
	ErrSignInRefused = fault.Sentinel(fault.Unauthenticated, "that token is not recognised for that service")
	// ErrNoSession: no live session (none, signed out, expired, or void after a token rotation).
	ErrNoSession = fault.Sentinel(fault.Unauthenticated, "not signed in")
)

// ThrottledError refuses a sign-in because too many wrong ones came from the same address or for the same
// service recently. Its kind is fault.RateLimited.
type ThrottledError struct {
	// RetryAfter is how long until one more attempt is allowed (at least a second).
	RetryAfter time.Duration
	// PerService: the service's limit was reached (else the address's).
	PerService bool
}

// Error implements error.
func (e *ThrottledError) Error() string {
	who := "this address"
	if e.PerService {
		who = "this service"
	}
	return fmt.Sprintf("too many wrong sign-ins for %s; try again in %s", who, e.RetryAfter)
}

// FaultKind implements fault.Kinded.
func (e *ThrottledError) FaultKind() fault.Kind { return fault.RateLimited }

// SignInRequest is what the sign-in form sends.
type SignInRequest struct {
	Token string
	// ServiceID is the community service the person says they sign in for.
	ServiceID string
	// Address is the client's network address (an IP, with or without a port).
	Address string
}

// InboxSession is a live sign-in.
type InboxSession struct {
	// ID is the secret the browser's cookie holds (the store keeps only its hash).
	ID      string
	Client  config.Client
	Session outbox.Session
}

// InboxService is a service a group may sign in for.
type InboxService struct {
	ID, Name string
}

// Inbox is the inbox page's sign-in use cases over a Service's store, directory and clock.
type Inbox struct {
	s *Service
	p SessionPolicy
}

// Inbox returns the sign-in use cases with policy p (zero fields: DefaultSessionPolicy's).
func (s *Service) Inbox(p SessionPolicy) Inbox { return Inbox{s: s, p: p.withDefaults()} }

// Policy is the policy in force (defaults filled in).
func (in Inbox) Policy() SessionPolicy { return in.p }

// Services lists the services a group may sign in for (those with a community client that has a token), by
// name.
func (in Inbox) Services() []InboxService {
	var none [32]byte
	var out []InboxService
	for _, cl := range in.s.cfg.Clients {
		if cl.Role != config.RoleCommunity || cl.TokenSHA256 == none ||
			slices.ContainsFunc(out, func(x InboxService) bool { return x.ID == cl.Service }) {
			continue
		}
		out = append(out, InboxService{ID: cl.Service, Name: in.s.ServiceName(cl.Service)})
	}
	slices.SortFunc(out, func(a, b InboxService) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	return out
}

// SignIn opens a session for the community client whose token req.Token is, if that client is
// req.ServiceID's. Refusals: a service that is not offered (fault.Invalid, field "service"), too many wrong
// sign-ins recently (*ThrottledError, checked before the token), a token that is not that service's
// (ErrSignInRefused; counted against the address and the service).
func (in Inbox) SignIn(ctx context.Context, req SignInRequest) (InboxSession, error) {
	if !slices.ContainsFunc(in.Services(), func(x InboxService) bool { return x.ID == req.ServiceID }) {
		return InboxSession{}, fault.New(fault.Invalid, "invalid_service", "service", "choose your group from the list")
	}
	now := in.s.Now()
	since := now.Add(-in.p.Window)
	keys := []string{throttleKey("address", clientAddress(req.Address)), throttleKey("service", req.ServiceID)}
	counts, err := in.s.store.SignInFailures(ctx, keys, since)
	if err != nil {
		return InboxSession{}, fmt.Errorf("sign in: %w", err)
	}
	if err := in.throttled(counts, now); err != nil {
		return InboxSession{}, err
	}
	cl, ok := in.s.cfg.Authenticate(req.Token)
	if !ok || cl.Role != config.RoleCommunity || cl.Service != req.ServiceID {
		if _, err := in.s.store.RecordSignInFailure(ctx, keys, now, since); err != nil {
			return InboxSession{}, fmt.Errorf("sign in: %w", err)
		}
		return InboxSession{}, ErrSignInRefused
	}
	id, err := newSessionID()
	if err != nil {
		return InboxSession{}, fmt.Errorf("sign in: %w", err)
	}
	sess := outbox.Session{IDHash: sessionHash(id), ClientID: cl.ID, TokenHash: hex.EncodeToString(cl.TokenSHA256[:]),
		CreatedAt: now, LastSeenAt: now, IdleUntil: now.Add(in.p.Idle), ExpiresAt: now.Add(in.p.Max)}
	if _, err := in.s.store.PruneSessions(ctx, now, since); err != nil {
		return InboxSession{}, fmt.Errorf("sign in: %w", err)
	}
	if err := in.s.store.CreateSession(ctx, sess); err != nil {
		return InboxSession{}, fmt.Errorf("sign in: %w", err)
	}
	return InboxSession{ID: id, Client: cl, Session: sess}, nil
}

// throttled is a *ThrottledError when counts (address, service) reach their limits at now.
func (in Inbox) throttled(counts []outbox.FailureCount, now time.Time) error {
	limits := []int{in.p.PerAddress, in.p.PerService}
	for i, c := range counts {
		if c.N < limits[i] {
			continue
		}
		wait := max(c.Earliest.Add(in.p.Window).Sub(now), time.Second).Round(time.Second)
		return &ThrottledError{RetryAfter: wait, PerService: i == 1}
	}
	return nil
}

// Session returns the live session whose cookie holds id, and records its use. ErrNoSession when there is
// none; a session whose client is gone from the directory, is no longer a community client, or has another
// token now (rotated) is deleted and is ErrNoSession too.
func (in Inbox) Session(ctx context.Context, id string) (InboxSession, error) {
	if !validSessionID(id) {
		return InboxSession{}, ErrNoSession
	}
	hash := sessionHash(id)
	sess, err := in.s.store.TouchSession(ctx, hash, in.s.Now(), in.p.Idle)
	if errors.Is(err, outbox.ErrNotFound) {
		return InboxSession{}, ErrNoSession
	}
	if err != nil {
		return InboxSession{}, fmt.Errorf("inbox session: %w", err)
	}
	i := slices.IndexFunc(in.s.cfg.Clients, func(c config.Client) bool { return c.ID == sess.ClientID })
	if i < 0 || in.s.cfg.Clients[i].Role != config.RoleCommunity ||
		hex.EncodeToString(in.s.cfg.Clients[i].TokenSHA256[:]) != sess.TokenHash {
		if err := in.s.store.DeleteSession(ctx, hash); err != nil {
			return InboxSession{}, fmt.Errorf("inbox session: %w", err)
		}
		in.s.log.Info("inbox session ended: its client's token changed or the client was removed", "client", sess.ClientID)
		return InboxSession{}, ErrNoSession
	}
	return InboxSession{ID: id, Client: in.s.cfg.Clients[i], Session: sess}, nil
}

// SignOut ends the session whose cookie holds id, for every instance (nothing to do when there is none).
func (in Inbox) SignOut(ctx context.Context, id string) error {
	if !validSessionID(id) {
		return nil
	}
	if err := in.s.store.DeleteSession(ctx, sessionHash(id)); err != nil {
		return fmt.Errorf("sign out: %w", err)
	}
	return nil
}

// sessionIDBytes is the entropy of a session id.
const sessionIDBytes = 32

// newSessionID returns a fresh random session id (URL-safe base64 of 32 random bytes).
func newSessionID() (string, error) {
	b := make([]byte, sessionIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// validSessionID reports whether id has the shape newSessionID makes (anything else is never looked up).
func validSessionID(id string) bool {
	b, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(b) == sessionIDBytes
}

// sessionHash is what the store keeps of a session id: its SHA-256, hex.
func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// throttleKey is the stored key of a throttled scope: hashed, so that the database holds no client address.
func throttleKey(scope, value string) string {
	sum := sha256.Sum256([]byte("socialrx inbox sign-in\x00" + scope + "\x00" + value))
	return scope + ":" + hex.EncodeToString(sum[:16])
}

// clientAddress is the address a client is throttled under: its IP without the port; an IPv6 address by its
// /64 (one household or phone gets a whole /64, so a single address would be trivial to change).
func clientAddress(addr string) string {
	host := addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		host = ap.Addr().String()
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// Counts returns how many of the signed-in community client's referrals are in each status (for the
// inbox's tabs); a client of another role gets fault.Forbidden.
func (in Inbox) Counts(ctx context.Context, c Caller) (map[mapping.TaskStatus]int, error) {
	if c.Client.Role != config.RoleCommunity || c.Client.Service == "" {
		return nil, fault.New(fault.Forbidden, "forbidden", "", "only a community service has an inbox")
	}
	counts, err := in.s.store.CountByStatus(ctx, c.Client.Service)
	if err != nil {
		return nil, fmt.Errorf("inbox counts: %w", err)
	}
	return counts, nil
}

package referral

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

// The operations console's sign-in (docs/design.md#admin-api-and-cli): an admin client's token opens a
// session kept in the shared database exactly as the inbox's are (sessions.go): the browser holds a random
// id, the store its hash, the client and the hash of the token; sign-out, expiry (idle and absolute) and a
// token rotation end it on every instance. Wrong sign-ins are counted per client address and for the console
// as a whole, and past the policy's limits refused (429) before the token is looked at.

// consoleScope is the throttling scope every console sign-in shares (the inbox's is per service).
const consoleScope = "operations-console"

// Console is the operations console's sign-in use cases over a Service's store, directory and clock.
type Console struct {
	s *Service
	p SessionPolicy
}

// Console returns the console's sign-in with policy p (zero fields: DefaultSessionPolicy's; PerService
// limits the console's wrong sign-ins from anywhere).
func (s *Service) Console(p SessionPolicy) Console { return Console{s: s, p: p.withDefaults()} }

// ConsoleSession is a live console sign-in.
type ConsoleSession struct {
	// ID is the secret the browser's cookie holds (the store keeps only its hash).
	ID      string
	Client  config.Client
	Session outbox.Session
}

// SignIn opens a session for the admin client whose token this is. Refusals: too many wrong sign-ins
// recently from address or for the console (*ThrottledError, checked before the token), a token that is not
// an admin client's (ErrSignInRefused; counted).
func (c Console) SignIn(ctx context.Context, token, address string) (ConsoleSession, error) {
	now := c.s.Now()
	since := now.Add(-c.p.Window)
	keys := []string{throttleKey("console-address", clientAddress(address)), throttleKey("console", consoleScope)}
	counts, err := c.s.store.SignInFailures(ctx, keys, since)
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("console sign in: %w", err)
	}
	if err := Inbox(c).throttled(counts, now); err != nil {
		return ConsoleSession{}, err
	}
	cl, ok := c.s.cfg.Authenticate(token)
	if !ok || cl.Role != config.RoleAdmin {
		if _, err := c.s.store.RecordSignInFailure(ctx, keys, now, since); err != nil {
			return ConsoleSession{}, fmt.Errorf("console sign in: %w", err)
		}
		return ConsoleSession{}, ErrSignInRefused
	}
	id, err := newSessionID()
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("console sign in: %w", err)
	}
	sess := outbox.Session{IDHash: sessionHash(id), ClientID: cl.ID, TokenHash: hex.EncodeToString(cl.TokenSHA256[:]),
		CreatedAt: now, LastSeenAt: now, IdleUntil: now.Add(c.p.Idle), ExpiresAt: now.Add(c.p.Max)}
	if _, err := c.s.store.PruneSessions(ctx, now, since); err != nil {
		return ConsoleSession{}, fmt.Errorf("console sign in: %w", err)
	}
	if err := c.s.store.CreateSession(ctx, sess); err != nil {
		return ConsoleSession{}, fmt.Errorf("console sign in: %w", err)
	}
	return ConsoleSession{ID: id, Client: cl, Session: sess}, nil
}

// Session returns the live console session whose cookie holds id, and records its use. ErrNoSession when
// there is none; a session whose client is gone from the directory, is not an admin client, or has another
// token now (rotated) is deleted and is ErrNoSession too.
func (c Console) Session(ctx context.Context, id string) (ConsoleSession, error) {
	if !validSessionID(id) {
		return ConsoleSession{}, ErrNoSession
	}
	hash := sessionHash(id)
	sess, err := c.s.store.TouchSession(ctx, hash, c.s.Now(), c.p.Idle)
	if errors.Is(err, outbox.ErrNotFound) {
		return ConsoleSession{}, ErrNoSession
	}
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("console session: %w", err)
	}
	i := slices.IndexFunc(c.s.cfg.Clients, func(cl config.Client) bool { return cl.ID == sess.ClientID })
	if i < 0 || c.s.cfg.Clients[i].Role != config.RoleAdmin ||
		hex.EncodeToString(c.s.cfg.Clients[i].TokenSHA256[:]) != sess.TokenHash {
		if err := c.s.store.DeleteSession(ctx, hash); err != nil {
			return ConsoleSession{}, fmt.Errorf("console session: %w", err)
		}
		c.s.log.Info("console session ended: its client's token changed or the client was removed", "client", sess.ClientID)
		return ConsoleSession{}, ErrNoSession
	}
	return ConsoleSession{ID: id, Client: c.s.cfg.Clients[i], Session: sess}, nil
}

// SignOut ends the console session whose cookie holds id, for every instance.
func (c Console) SignOut(ctx context.Context, id string) error {
	return Inbox(c).SignOut(ctx, id)
}

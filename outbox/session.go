package outbox

import (
	"context"
	"time"
)

// Session is a signed-in browser of the community inbox page (/inbox/). The browser's cookie holds a random
// session id; the store keeps only its hash, so that reading the database never yields a cookie that signs
// anyone in. A session lives until it is deleted (sign-out, or found void after a token rotation), until it
// has not been used for the idle timeout (IdleUntil), or until its absolute end (ExpiresAt), whichever comes
// first. Sessions live in the shared database, so every instance sees a sign-out at once.
type Session struct {
	// IDHash identifies the session: the SHA-256 (hex) of the random id the browser's cookie holds.
	IDHash string
	// ClientID is the directory client (role community) that signed in.
	ClientID string
	// TokenHash is the SHA-256 (hex) of the token the session was opened with. A session whose client has
	// another token now (the token was rotated) is void: the caller deletes it.
	TokenHash string
	CreatedAt time.Time
	// LastSeenAt is the last time the session was used (TouchSession).
	LastSeenAt time.Time
	// IdleUntil is when the session ends unless it is used before: the last use plus the idle timeout,
	// never after ExpiresAt.
	IdleUntil time.Time
	// ExpiresAt is when the session ends however much it is used (its start plus the absolute timeout).
	ExpiresAt time.Time
}

// FailureCount is how many failed sign-ins a key (a client address, a service) has in a window, and the
// earliest of them (when the oldest one leaves the window, one more attempt is allowed).
type FailureCount struct {
	Key      string
	N        int
	Earliest time.Time
}

// Sessions is the part of Store behind the community inbox page's sign-in: its sessions and the failed
// sign-ins that slow down guessing, shared by every instance using the database. Every time passed in is the
// caller's clock, truncated to the microsecond.
type Sessions interface {
	// CreateSession stores s (IDHash, ClientID, TokenHash, CreatedAt, IdleUntil and ExpiresAt required;
	// IdleUntil not after ExpiresAt; LastSeenAt defaults to CreatedAt). An IDHash already stored is an
	// error. Sessions ended by s.CreatedAt are removed as it goes.
	CreateSession(ctx context.Context, s Session) error
	// TouchSession returns the session idHash if it is live at now (IdleUntil and ExpiresAt after now) and
	// records the use: LastSeenAt becomes now and IdleUntil now+idle (at most ExpiresAt); the Session
	// returned carries both. ErrNotFound when there is no such session or it has ended (an ended one is
	// deleted).
	TouchSession(ctx context.Context, idHash string, now time.Time, idle time.Duration) (Session, error)
	// DeleteSession removes the session idHash (sign-out; a void session). Removing one that is not there is
	// not an error.
	DeleteSession(ctx context.Context, idHash string) error
	// PruneSessions removes every session ended at now and every failed sign-in recorded at or before
	// failuresUpTo; it returns how many sessions it removed.
	PruneSessions(ctx context.Context, now, failuresUpTo time.Time) (int, error)
	// RecordSignInFailure records one failed sign-in at now under each of keys (non-empty) and returns each
	// key's failures recorded after since, this one included, in the order of keys. Failures recorded at or
	// before since are removed as it goes.
	RecordSignInFailure(ctx context.Context, keys []string, now, since time.Time) ([]FailureCount, error)
	// SignInFailures returns each key's failures recorded after since, in the order of keys (N 0 when none).
	SignInFailures(ctx context.Context, keys []string, since time.Time) ([]FailureCount, error)
}

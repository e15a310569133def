package referral_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/referral"
)

const (
	tokLinkWorkers = "demo-linkworkers-token"
	tokMuseum      = "demo-museum-token"
)

// advance moves the env's clock on by d.
func (e *env) advance(d time.Duration) { e.clock.Add(d.Microseconds()) }

// TestInboxSignIn: the token must be the chosen service's community token; a refusal never says whose token
// it was; the cookie's id is random and the store keeps only its hash.
func TestInboxSignIn(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		in := e.svc.Inbox(referral.SessionPolicy{})
		svcs := in.Services()
		if len(svcs) != 7 || svcs[0].Name != "Age UK Somerset Befriending" {
			t.Errorf("services offered: %+v", svcs)
		}
		for _, s := range svcs {
			if s.ID == "" || s.Name == "" {
				t.Errorf("service without id or name: %+v", s)
			}
		}
		sess, err := in.SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers, ServiceID: "link-workers", Address: "192.0.2.1:5000"})
		if err != nil {
			t.Fatal(err)
		}
		if sess.Client.ID != "link-workers" || len(sess.ID) < 43 || strings.Contains(sess.ID, tokLinkWorkers) {
			t.Errorf("session: client %s id %q", sess.Client.ID, sess.ID)
		}
		sum := sha256.Sum256([]byte(sess.ID))
		if sess.Session.IDHash == sess.ID || len(sess.Session.IDHash) != 64 || sess.Session.IDHash[:8] != hexPrefix(sum[:4]) {
			t.Errorf("the store keeps %q, want the SHA-256 of the id", sess.Session.IDHash)
		}
		other, err := in.SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers, ServiceID: "link-workers", Address: "192.0.2.1"})
		if err != nil || other.ID == sess.ID {
			t.Errorf("a second sign-in: %v, same id %v", err, other.ID == sess.ID)
		}
		got, err := in.Session(ctx, sess.ID)
		if err != nil || got.Client.ID != "link-workers" {
			t.Errorf("Session: %+v, %v", got.Client, err)
		}

		for name, req := range map[string]referral.SignInRequest{
			"unknown token":            {Token: "not-a-token", ServiceID: "link-workers"},
			"another service's token":  {Token: tokMuseum, ServiceID: "link-workers"},
			"a GP token":               {Token: "demo-gp-token", ServiceID: "link-workers"},
			"an admin token":           {Token: "demo-admin-token", ServiceID: "link-workers"},
			"the right token, no name": {Token: "", ServiceID: "link-workers"},
		} {
			_, err := in.SignIn(ctx, req)
			if !errors.Is(err, referral.ErrSignInRefused) || strings.Contains(err.Error(), "gp") || strings.Contains(err.Error(), "admin") {
				t.Errorf("%s: %v, want ErrSignInRefused that says nothing of the token's owner", name, err)
			}
		}
		_, err = in.SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers, ServiceID: "no-such-service"})
		kindIs(t, "an unknown service", err, fault.Invalid)
		for _, id := range []string{"", "short", tokLinkWorkers, strings.Repeat("A", 43)} {
			if _, err := in.Session(ctx, id); !errors.Is(err, referral.ErrNoSession) {
				t.Errorf("Session(%q): %v, want ErrNoSession", id, err)
			}
		}
	})
}

func hexPrefix(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

// TestInboxSessionEnds: sign-out, the idle timeout, the absolute timeout and a token rotation each end a
// session, for every instance sharing the store.
func TestInboxSessionEnds(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		in := e.svc.Inbox(referral.SessionPolicy{Idle: 30 * time.Minute, Max: 2 * time.Hour})
		signIn := func() string {
			t.Helper()
			s, err := in.SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers, ServiceID: "link-workers", Address: "192.0.2.7"})
			if err != nil {
				t.Fatal(err)
			}
			return s.ID
		}
		live := func(in referral.Inbox, id string) bool {
			t.Helper()
			_, err := in.Session(ctx, id)
			if err != nil && !errors.Is(err, referral.ErrNoSession) {
				t.Fatal(err)
			}
			return err == nil
		}

		// Sign-out.
		id := signIn()
		if err := in.SignOut(ctx, id); err != nil {
			t.Fatal(err)
		}
		if live(in, id) {
			t.Error("a session lived on after sign-out")
		}

		// Idle: 29 minutes between uses keeps it; 30 minutes unused ends it.
		id = signIn()
		e.advance(29 * time.Minute)
		if !live(in, id) {
			t.Error("a session used within the idle timeout ended")
		}
		e.advance(30 * time.Minute)
		if live(in, id) {
			t.Error("a session unused for the idle timeout lived on")
		}

		// Absolute: used every 20 minutes, it still ends 2 hours after sign-in.
		id = signIn()
		for range 5 {
			e.advance(20 * time.Minute)
			if !live(in, id) {
				t.Fatal("a session in use ended before its absolute end")
			}
		}
		e.advance(21 * time.Minute)
		if live(in, id) {
			t.Error("a session lived past its absolute end")
		}

		// Token rotation: another instance runs with the new directory (same database). Its first look ends
		// the session there and, the row being deleted, on the instance still running the old directory too.
		id = signIn()
		rotated, err := config.LoadDemo()
		if err != nil {
			t.Fatal(err)
		}
		for i := range rotated.Clients {
			if rotated.Clients[i].ID == "link-workers" {
				rotated.Clients[i].TokenSHA256 = sha256.Sum256([]byte("a-new-link-workers-token"))
			}
		}
		svc2, err := referral.New(referral.Options{Store: e.store, Config: rotated, Logger: quiet, Clock: func() time.Time {
			return time.UnixMicro(e.clock.Add(1000)).UTC()
		}})
		if err != nil {
			t.Fatal(err)
		}
		in2 := svc2.Inbox(referral.SessionPolicy{Idle: 30 * time.Minute, Max: 2 * time.Hour})
		if live(in2, id) {
			t.Error("a session opened with the old token lived on after the rotation")
		}
		if live(in, id) {
			t.Error("the instance with the old directory still accepted the session after another voided it")
		}
		if _, err := in2.SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers, ServiceID: "link-workers"}); !errors.Is(err, referral.ErrSignInRefused) {
			t.Errorf("the old token signed in after the rotation: %v", err)
		}
		if _, err := in2.SignIn(ctx, referral.SignInRequest{Token: "a-new-link-workers-token", ServiceID: "link-workers"}); err != nil {
			t.Errorf("the new token: %v", err)
		}
	})
}

// TestInboxThrottle: wrong sign-ins are counted per address and per service; past a limit, sign-ins are
// refused (even with the right token) until the oldest failure leaves the window; other addresses and
// services are not affected by an address's limit.
func TestInboxThrottle(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		in := e.svc.Inbox(referral.SessionPolicy{Window: 10 * time.Minute, PerAddress: 3, PerService: 5})
		try := func(token, service, addr string) error {
			t.Helper()
			_, err := in.SignIn(ctx, referral.SignInRequest{Token: token, ServiceID: service, Address: addr})
			return err
		}
		for i := range 3 {
			if err := try("wrong", "link-workers", "192.0.2.1:4000"); !errors.Is(err, referral.ErrSignInRefused) {
				t.Fatalf("wrong sign-in %d: %v", i+1, err)
			}
			e.advance(time.Minute)
		}
		// The address is blocked, whatever the token and service (the token is not even checked)…
		err := try(tokLinkWorkers, "link-workers", "192.0.2.1:4001")
		var te *referral.ThrottledError
		if !errors.As(err, &te) || te.PerService || fault.KindOf(err) != fault.RateLimited {
			t.Fatalf("fourth try: %v, want the address throttled", err)
		}
		// The first failure was at 0, now is 3m: one more try is allowed at 10m.
		if te.RetryAfter != 7*time.Minute {
			t.Errorf("RetryAfter %s, want 7m0s", te.RetryAfter)
		}
		if err := try(tokMuseum, "museum-volunteers", "192.0.2.1"); !errors.As(err, &te) {
			t.Errorf("another service from the blocked address: %v", err)
		}
		// …but not other addresses.
		if err := try(tokLinkWorkers, "link-workers", "198.51.100.9"); err != nil {
			t.Errorf("another address: %v", err)
		}
		// IPv6 addresses count by their /64.
		for i := range 3 {
			addr := "[2001:db8:1:2::" + string(rune('a'+i)) + "]:443"
			if err := try("wrong", "museum-volunteers", addr); !errors.Is(err, referral.ErrSignInRefused) {
				t.Fatalf("IPv6 wrong sign-in %d: %v", i, err)
			}
		}
		if err := try(tokMuseum, "museum-volunteers", "2001:db8:1:2::ffff"); !errors.As(err, &te) {
			t.Errorf("another address in the same /64: %v", err)
		}
		// The service: its 5th failure from anywhere blocks it (link-workers has 3; two more from elsewhere).
		for _, addr := range []string{"203.0.113.1", "203.0.113.2"} {
			if err := try("wrong", "link-workers", addr); !errors.Is(err, referral.ErrSignInRefused) {
				t.Fatalf("wrong sign-in from %s: %v", addr, err)
			}
		}
		if err := try(tokLinkWorkers, "link-workers", "203.0.113.3"); !errors.As(err, &te) || !te.PerService {
			t.Errorf("the service after 5 failures: %v, want the service throttled", err)
		}
		if err := try(tokMuseum, "museum-volunteers", "203.0.113.3"); err != nil {
			t.Errorf("another service from a fresh address: %v", err)
		}
		// When the window has passed, the right token signs in again from the first address.
		e.advance(11 * time.Minute)
		if err := try(tokLinkWorkers, "link-workers", "192.0.2.1"); err != nil {
			t.Errorf("after the window: %v", err)
		}
	})
}

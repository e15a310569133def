package referral_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/referral"
)

// TestConsoleSignIn: only an admin client's token opens a console session (a GP's, a community service's or
// nobody's is refused the same way, and counted); wrong sign-ins from one address are throttled before the
// token is looked at; the session ends at sign-out and when the admin token is rotated (seen by another
// instance); an inbox session is not a console session.
func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		con := e.svc.Console(referral.SessionPolicy{Window: 10 * time.Minute, PerAddress: 3, PerService: 10})
		for _, tok := range []string{"demo-gp-token", tokLinkWorkers, "not-a-token"} {
			if _, err := con.SignIn(ctx, tok, "192.0.2.7:1000"); !errors.Is(err, referral.ErrSignInRefused) {
				t.Errorf("console sign-in with %s: %v, want ErrSignInRefused", tok, err)
			}
		}
		var te *referral.ThrottledError
		if _, err := con.SignIn(ctx, "demo-admin-token", "192.0.2.7:1001"); !errors.As(err, &te) {
			t.Errorf("fourth try from the same address: %v, want throttled", err)
		}
		sess, err := con.SignIn(ctx, "demo-admin-token", "198.51.100.1:2000")
		if err != nil || sess.Client.ID != "ops" {
			t.Fatalf("admin sign-in: %+v, %v", sess.Client, err)
		}
		if got, err := con.Session(ctx, sess.ID); err != nil || got.Client.ID != "ops" {
			t.Errorf("Session: %+v, %v", got.Client, err)
		}
		inbox, err := e.svc.Inbox(referral.SessionPolicy{}).SignIn(ctx, referral.SignInRequest{Token: tokLinkWorkers,
			ServiceID: "link-workers", Address: "198.51.100.2"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := con.Session(ctx, inbox.ID); !errors.Is(err, referral.ErrNoSession) {
			t.Errorf("an inbox session used on the console: %v, want ErrNoSession", err)
		}
		if err := con.SignOut(ctx, sess.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := con.Session(ctx, sess.ID); !errors.Is(err, referral.ErrNoSession) {
			t.Errorf("after sign-out: %v", err)
		}

		// Token rotation, seen by another instance with the new directory.
		sess, err = con.SignIn(ctx, "demo-admin-token", "198.51.100.1")
		if err != nil {
			t.Fatal(err)
		}
		rotated, err := config.LoadDemo()
		if err != nil {
			t.Fatal(err)
		}
		for i := range rotated.Clients {
			if rotated.Clients[i].ID == "ops" {
				rotated.Clients[i].TokenSHA256 = sha256.Sum256([]byte("a-new-admin-token"))
			}
		}
		svc2, err := referral.New(referral.Options{Store: e.store, Config: rotated, Logger: quiet, Clock: func() time.Time {
			return time.UnixMicro(e.clock.Add(1000)).UTC()
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc2.Console(referral.SessionPolicy{}).Session(ctx, sess.ID); !errors.Is(err, referral.ErrNoSession) {
			t.Errorf("a console session opened with the old token, after rotation: %v", err)
		}
		if _, err := con.Session(ctx, sess.ID); !errors.Is(err, referral.ErrNoSession) {
			t.Error("the rotated session lived on on the first instance")
		}
	})
}

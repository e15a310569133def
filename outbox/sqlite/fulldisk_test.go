package sqlite_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/outbox/sqlite/disktest"
)

// TestDiskFull fills the disk under an open store (a 16 MiB tmpfs and a filler file; the kernel answers
// ENOSPC): every write fails with fault.Unavailable (SQLITE_FULL, never a kindless 500) and writes nothing,
// reads still answer, readiness fails on every check while the disk is full (a small probe may still fit:
// the free-space minimum and the failed writes say the truth); once space is freed, writes work again and
// readiness passes within two checks.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dir := disktest.Mount(t, 16<<20)
	s := openStore(t, filepath.Join(dir, "socialrx.db"), sqlite.Options{})
	ctx := t.Context()
	now := time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	for i := 1; i <= 20; i++ {
		if _, err := s.CreateReferral(ctx, testIntake(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CheckWrite(ctx, "i1", now); err != nil {
		t.Fatal(err)
	}

	free := disktest.Fill(t, dir)
	unavailable := func(what string, err error) {
		t.Helper()
		if err == nil || fault.KindOf(err) != fault.Unavailable {
			t.Errorf("%s on a full disk: %v (kind %s), want %s", what, err, fault.KindOf(err), fault.Unavailable)
		}
	}
	in := testIntake(21)
	_, err := s.CreateReferral(ctx, in)
	unavailable("CreateReferral", err)
	_, err = s.UseNonce(ctx, "n-1", now.Add(time.Hour), now)
	unavailable("UseNonce", err)
	unavailable("CheckWrite", s.CheckWrite(ctx, "i1", now))
	err = s.CheckWrite(ctx, "i1", now)
	unavailable("CheckWrite again, no write in between", err)
	if !errors.Is(err, sqlite.ErrDiskNearlyFull) {
		t.Errorf("readiness on a full disk: %v, want %v", err, sqlite.ErrDiskNearlyFull)
	}
	if _, err := s.GetReferral(ctx, testIntake(1).Referral.Record.ID); err != nil {
		t.Errorf("reads must still answer on a full disk: %v", err)
	}
	if _, err := s.GetReferral(ctx, in.Referral.Record.ID); err == nil {
		t.Error("the referral refused on a full disk was written")
	}

	free()
	if err := s.CheckWrite(ctx, "i1", now); err != nil {
		unavailable("the first CheckWrite after freeing space", err)
		if err := s.CheckWrite(ctx, "i1", now); err != nil {
			t.Fatalf("readiness after freeing space: %v", err)
		}
	}
	if _, err := s.CreateReferral(ctx, in); err != nil {
		t.Fatalf("CreateReferral after freeing space: %v", err)
	}
	if ms, err := s.ListMessages(ctx, outbox.MessageQuery{ReferralID: in.Referral.Record.ID}); err != nil || len(ms) != 1 {
		t.Errorf("the referral's message after freeing space: %d, %v", len(ms), err)
	}
}

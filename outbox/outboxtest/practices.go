package outboxtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// ofPractice is the intake made by another practice: same identifiers, its own ids, body and practice.
func ofPractice(in mapping.Intake, ods, suffix string) mapping.Intake {
	out := renamed(in, suffix)
	out.Referral.PracticeODS = ods
	out.Referral.Record.Referrer.ODSCode = ods
	out.Fingerprint = in.Fingerprint + "-" + strings.ToUpper(ods)
	return out
}

// testIdentifiersPerPractice: a ServiceRequest.identifier is a key of the referring practice (issue 9). Practice
// B posting practice A's identifier, with any body, neither conflicts with nor finds A's referral: it gets
// its own; A's resend still finds A's, and A's next referral under an identifier B took first is A's own.
// Practices compare case-insensitively.
func testIdentifiersPerPractice(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	a := intake(1)
	ra := outbox.CreateResult{Referral: create(t, s, a), Created: true}

	b := ofPractice(a, "B82002", "-b")
	res, err := s.CreateReferral(ctx, b)
	if err != nil {
		t.Fatalf("practice B under A's identifier: %v", err)
	}
	if !res.Created || res.Referral.Record.ID != b.Referral.Record.ID || res.Referral.PracticeODS != "B82002" {
		t.Fatalf("practice B must get its own referral, got created=%v id %s practice %s", res.Created,
			res.Referral.Record.ID, res.Referral.PracticeODS)
	}
	// B's identical resend finds B's, never A's.
	again, err := s.CreateReferral(ctx, renamed(b, "-again"))
	if err != nil || again.Created || again.Referral.Record.ID != b.Referral.Record.ID {
		t.Errorf("B's resend: created=%v id %s err %v, want B's referral", again.Created, again.Referral.Record.ID, err)
	}
	// A's resend finds A's; A's different body under its own identifier is still A's conflict.
	resend, err := s.CreateReferral(ctx, renamed(a, "-resend"))
	if err != nil || resend.Created || resend.Referral.Record.ID != ra.Referral.Record.ID {
		t.Errorf("A's resend: created=%v id %s err %v, want A's referral", resend.Created, resend.Referral.Record.ID, err)
	}
	changed := renamed(a, "-changed")
	changed.Fingerprint = "another body"
	_, err = s.CreateReferral(ctx, changed)
	wantErr(t, "A's different body under A's identifier", err, outbox.ErrConflict)

	// B squats an identifier A has not used yet: A's real referral is still created, as A's.
	squat := ofPractice(intake(2), "b82002", "-squat") // lower case: the same practice key as B82002
	create(t, s, squat)
	real := intake(2)
	res, err = s.CreateReferral(ctx, real)
	if err != nil || !res.Created || res.Referral.Record.ID != real.Referral.Record.ID {
		t.Fatalf("A's referral after B squatted its identifier: created=%v err %v", res.Created, err)
	}
	// The practice key ignores case: B82002 resending B's squat (another spelling) finds it.
	if r, err := s.CreateReferral(ctx, renamed(ofPractice(intake(2), "B82002", "-squat"), "-x")); err != nil || r.Created ||
		r.Referral.Record.ID != squat.Referral.Record.ID {
		t.Errorf("B82002's resend of b82002's referral: created=%v err %v", r.Created, err)
	}

	// A search by identifier, scoped to a practice, sees only that practice's referral.
	id := a.Identifiers[0]
	for ods, want := range map[string]string{"A81001": ra.Referral.Record.ID, "B82002": b.Referral.Record.ID} {
		refs, _, err := s.SearchReferrals(ctx, outbox.ReferralQuery{Identifier: &id, Practices: []string{ods}})
		if err != nil || len(refs) != 1 || refs[0].Record.ID != want {
			t.Errorf("identifier search for %s: %d referrals, err %v, want %s", ods, len(refs), err, want)
		}
	}
}

// testIdentifiersPerPracticeConcurrent: practices racing for the same identifier each get exactly one
// referral of their own, whatever the interleaving.
func testIdentifiersPerPracticeConcurrent(t *testing.T, open Opener) {
	s := open(t, Options{})
	practices := []string{"A81001", "A81002", "B82002", "C83003"}
	const perPractice = 4
	var wg sync.WaitGroup
	errs := make(chan error, len(practices)*perPractice)
	for _, ods := range practices {
		for i := range perPractice {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in := ofPractice(intake(1), ods, fmt.Sprintf("-%s-%d", ods, i))
				in.Fingerprint = "same body for " + ods
				if _, err := s.CreateReferral(t.Context(), in); err != nil {
					errs <- fmt.Errorf("%s #%d: %w", ods, i, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	refs, _, err := s.SearchReferrals(t.Context(), outbox.ReferralQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range refs {
		per[r.PracticeODS]++
	}
	for _, ods := range practices {
		if per[ods] != 1 {
			t.Errorf("practice %s has %d referrals, want exactly 1 (%v)", ods, per[ods], per)
		}
	}
}

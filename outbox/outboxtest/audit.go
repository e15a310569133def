package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// auditRec is audit record n of the fixtures: a GP read of ref-00n (practice A81001), or, for odd n from
// the second actor, a community read.
func auditRec(n int) outbox.AuditRecord {
	r := outbox.AuditRecord{At: at(time.Duration(n) * time.Second), RequestID: fmt.Sprintf("req-%03d", n),
		ActorID: "practice-a81001", ActorRole: "gp", Via: "fhir", Action: outbox.AuditRead,
		ResourceType: "ServiceRequest", ResourceID: fmt.Sprintf("sr-%03d", n), ReferralID: fmt.Sprintf("ref-%03d", n%3),
		PracticeODS: "A81001", ServiceID: walks.ID, Address: "127.0.0.1"}
	if n%2 == 1 {
		r.ActorID, r.ActorRole, r.Via, r.ClientRequestID = "frome-walks", "community", "community-api", "client-"+r.RequestID
		r.PracticeODS = "B82002"
	}
	return r
}

func newAuditLog(t *testing.T, s outbox.Store, instance string) *outbox.AuditLog {
	t.Helper()
	a := outbox.NewAuditLog(s, outbox.AuditLogOptions{Instance: instance})
	t.Cleanup(a.Close)
	return a
}

func verifyOK(t *testing.T, s outbox.Store) outbox.AuditReport {
	t.Helper()
	rep, err := outbox.VerifyAudit(t.Context(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("verify: not OK: %+v", rep)
	}
	return rep
}

// testAuditAppendAndList: records are appended to the process's chain, numbered and linked, and found by
// referral, actor, practice and time, a page at a time; the untouched trail verifies.
func testAuditAppendAndList(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	a := newAuditLog(t, s, "serve")
	for n := 1; n <= 12; n++ {
		if err := a.Record(ctx, auditRec(n)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ListAudit(ctx, outbox.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 12 {
		t.Fatalf("listed %d records, want 12", len(all))
	}
	for i, r := range all {
		want := auditRec(i + 1)
		if r.Chain != a.Chain() || r.ChainSeq != int64(i+1) || r.RequestID != want.RequestID || r.ActorID != want.ActorID ||
			r.ClientRequestID != want.ClientRequestID || !r.At.Equal(want.At) || r.Address != want.Address ||
			r.Action != outbox.AuditRead || r.Hash != outbox.AuditHash(r) {
			t.Errorf("record %d = %+v, want %+v in chain %s", i+1, r, want, a.Chain())
		}
		if i > 0 && (r.PrevHash != all[i-1].Hash || r.Seq <= all[i-1].Seq) {
			t.Errorf("record %d does not follow record %d", i+1, i)
		}
	}
	if all[0].PrevHash != outbox.AuditGenesis {
		t.Errorf("first record's previous hash = %s", all[0].PrevHash)
	}
	count := func(q outbox.AuditQuery) int {
		t.Helper()
		rs, err := s.ListAudit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	for name, c := range map[string]struct {
		q    outbox.AuditQuery
		want int
	}{
		"referral":       {outbox.AuditQuery{ReferralID: "ref-001"}, 4},
		"actor":          {outbox.AuditQuery{ActorID: "frome-walks"}, 6},
		"practice":       {outbox.AuditQuery{Practices: []string{"A81001"}}, 6},
		"no practices":   {outbox.AuditQuery{Practices: []string{}}, 0},
		"since":          {outbox.AuditQuery{Since: at(10 * time.Second)}, 3},
		"until":          {outbox.AuditQuery{Until: at(3 * time.Second)}, 2},
		"combined":       {outbox.AuditQuery{ReferralID: "ref-001", ActorID: "frome-walks"}, 2},
		"after":          {outbox.AuditQuery{AfterSeq: all[9].Seq}, 2},
		"limit":          {outbox.AuditQuery{Limit: 5}, 5},
		"other referral": {outbox.AuditQuery{ReferralID: "ref-999"}, 0},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("%s: %d records, want %d", name, got, c.want)
		}
	}
	rep := verifyOK(t, s)
	if rep.Records != 12 || len(rep.Chains) != 1 || rep.Chains[0].HeadSeq != 12 || rep.Chains[0].Instance != "serve" {
		t.Errorf("report = %+v", rep)
	}
	// A batch recorded at once stays in order.
	if err := a.Record(ctx, auditRec(13), auditRec(14)); err != nil {
		t.Fatal(err)
	}
	if got := count(outbox.AuditQuery{}); got != 14 {
		t.Errorf("%d records after a batch, want 14", got)
	}
	verifyOK(t, s)
}

// testAuditChainsConcurrent: several processes (AuditLogs) append at once, each to its own chain, from
// many goroutines; nothing is lost and every chain verifies.
func testAuditChainsConcurrent(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	const logs, writers, each = 3, 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, logs*writers*each)
	for l := range logs {
		a := newAuditLog(t, s, fmt.Sprintf("serve%d", l))
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if err := a.Record(ctx, auditRec(w*each+i+1)); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rep := verifyOK(t, s)
	if rep.Records != logs*writers*each || len(rep.Chains) != logs {
		t.Fatalf("report: %d records in %d chains, want %d in %d", rep.Records, len(rep.Chains), logs*writers*each, logs)
	}
	for _, c := range rep.Chains {
		if c.Records != writers*each || c.HeadSeq != writers*each {
			t.Errorf("chain %s: %d records, head %d", c.Chain, c.Records, c.HeadSeq)
		}
	}
}

// testAuditHeadConflict: an append that does not follow its chain's head is refused and writes nothing;
// a chain cannot be started twice.
func testAuditHeadConflict(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	chain := func(n int64, prev string) outbox.AuditRecord {
		r := auditRec(int(n))
		r.Chain, r.ChainSeq, r.PrevHash = "c1", n, prev
		r.Hash = outbox.AuditHash(r)
		return r
	}
	r1 := chain(1, outbox.AuditGenesis)
	if err := s.AppendAudit(ctx, "test", []outbox.AuditRecord{r1}); err != nil {
		t.Fatal(err)
	}
	for name, recs := range map[string][]outbox.AuditRecord{
		"restart":    {chain(1, outbox.AuditGenesis)},
		"gap":        {chain(3, r1.Hash)},
		"wrong hash": {chain(2, outbox.AuditGenesis)},
	} {
		if err := s.AppendAudit(ctx, "test", recs); !errors.Is(err, outbox.ErrAuditHead) {
			t.Errorf("%s: err = %v, want ErrAuditHead", name, err)
		}
	}
	if err := s.AppendAudit(ctx, "test", []outbox.AuditRecord{chain(2, r1.Hash)}); err != nil {
		t.Fatal(err)
	}
	h, err := s.AuditHead(ctx, "c1")
	if err != nil || h.HeadSeq != 2 || h.Instance != "test" {
		t.Fatalf("head = %+v, %v", h, err)
	}
	if _, err := s.AuditHead(ctx, "nope"); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("unknown chain: %v", err)
	}
	verifyOK(t, s)
}

// Exec runs one SQL statement directly on a store's database, beneath the Store API (the tamper tests).
type Exec func(ctx context.Context, query string, args ...any) error

// AuditOpener opens a new, empty store for one subtest and a way to run SQL on its database; placeholders
// are written "?" and the backend rebinds them.
type AuditOpener func(t *testing.T) (outbox.Store, Exec)

// RunAuditTamper proves on a backend that VerifyAudit passes on an untouched trail and finds, after SQL run
// directly on the database, a record changed, deleted (from the middle or the end), inserted (even with a
// correctly computed hash) or reordered.
func RunAuditTamper(t *testing.T, open AuditOpener) {
	cases := []struct {
		name string
		// tamper changes the trail of chain c (five records); want is in the report's problems.
		tamper func(ctx context.Context, exec Exec, c string, recs []outbox.AuditRecord) error
		want   string
	}{
		{"changed", func(ctx context.Context, exec Exec, c string, _ []outbox.AuditRecord) error {
			return exec(ctx, `UPDATE audit_records SET actor_id = 'someone-else' WHERE chain = ? AND chain_seq = 3`, c)
		}, "(changed)"},
		{"changed time", func(ctx context.Context, exec Exec, c string, recs []outbox.AuditRecord) error {
			return exec(ctx, `UPDATE audit_records SET at = at + 1 WHERE chain = ? AND chain_seq = 2`, c)
		}, "(changed)"},
		{"deleted", func(ctx context.Context, exec Exec, c string, _ []outbox.AuditRecord) error {
			return exec(ctx, `DELETE FROM audit_records WHERE chain = ? AND chain_seq = 3`, c)
		}, "missing (deleted)"},
		{"deleted last", func(ctx context.Context, exec Exec, c string, _ []outbox.AuditRecord) error {
			return exec(ctx, `DELETE FROM audit_records WHERE chain = ? AND chain_seq = 5`, c)
		}, "deleted from its end"},
		{"inserted", func(ctx context.Context, exec Exec, c string, recs []outbox.AuditRecord) error {
			// A forged record that links correctly to the last one: only the head gives it away.
			f := recs[4]
			f.ChainSeq, f.PrevHash, f.ActorID = 6, recs[4].Hash, "forger"
			f.Hash = outbox.AuditHash(f)
			return insertAudit(ctx, exec, f)
		}, "(inserted)"},
		{"inserted between", func(ctx context.Context, exec Exec, c string, recs []outbox.AuditRecord) error {
			// Records 3..5 moved up one place and a forged record 3 put between 2 and 4.
			for n := 5; n >= 3; n-- {
				if err := exec(ctx, `UPDATE audit_records SET chain_seq = chain_seq + 1 WHERE chain = ? AND chain_seq = ?`, c, n); err != nil {
					return err
				}
			}
			f := recs[2]
			f.PrevHash, f.ActorID = recs[1].Hash, "forger"
			f.Hash = outbox.AuditHash(f)
			return insertAudit(ctx, exec, f)
		}, "does not follow"},
		{"reordered", func(ctx context.Context, exec Exec, c string, _ []outbox.AuditRecord) error {
			for _, q := range []string{
				`UPDATE audit_records SET chain_seq = 100 WHERE chain = ? AND chain_seq = 2`,
				`UPDATE audit_records SET chain_seq = 2 WHERE chain = ? AND chain_seq = 3`,
				`UPDATE audit_records SET chain_seq = 3 WHERE chain = ? AND chain_seq = 100`,
			} {
				if err := exec(ctx, q, c); err != nil {
					return err
				}
			}
			return nil
		}, "does not follow"},
		{"head deleted", func(ctx context.Context, exec Exec, c string, _ []outbox.AuditRecord) error {
			return exec(ctx, `DELETE FROM audit_chains WHERE chain = ?`, c)
		}, "no head"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, exec := open(t)
			ctx := t.Context()
			a := newAuditLog(t, s, "serve")
			other := newAuditLog(t, s, "cli")
			for n := 1; n <= 5; n++ {
				if err := a.Record(ctx, auditRec(n)); err != nil {
					t.Fatal(err)
				}
				if err := other.Record(ctx, auditRec(n+10)); err != nil {
					t.Fatal(err)
				}
			}
			verifyOK(t, s)
			recs, err := s.ChainRecords(ctx, a.Chain(), 0, 0)
			if err != nil || len(recs) != 5 {
				t.Fatalf("chain records: %d, %v", len(recs), err)
			}
			if err := tc.tamper(ctx, exec, a.Chain(), recs); err != nil {
				t.Fatal(err)
			}
			rep, err := outbox.VerifyAudit(ctx, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK {
				t.Fatalf("verify passed a trail %s by SQL", tc.name)
			}
			var found []string
			for _, c := range rep.Chains {
				for _, p := range c.Problems {
					if p.Chain != a.Chain() {
						t.Errorf("a problem in the untouched chain: %+v", p)
					}
					found = append(found, p.Problem)
				}
			}
			if !strings.Contains(strings.Join(found, "\n"), tc.want) {
				t.Errorf("problems %q do not say %q", found, tc.want)
			}
		})
	}
	t.Run("creation on a chain whose next number is taken", func(t *testing.T) {
		t.Parallel()
		testCreationNumberTaken(t, open)
	})
}

// testCreationNumberTaken: a creation whose lane knows its chain's head, but finds the next number already
// used in the chain (a record put there behind the store's back), fails as unavailable and writes nothing,
// neither the referral nor the head's move; a create on another lane goes through.
func testCreationNumberTaken(t *testing.T, open AuditOpener) {
	s, exec := open(t)
	ctx := t.Context()
	a := newAuditLog(t, s, "serve")
	lane := a.Lend()
	res, err := s.CreateAuditedReferral(ctx, intake(1), lane.Disclosure(createRec(intake(1))))
	if err != nil || res.Audit == nil || res.Audit.ChainSeq != 1 {
		t.Fatalf("first create: %+v, %v", res.Audit, err)
	}
	first := *res.Audit
	lane.Release(res.Audit)
	lane = a.Lend()
	forged := createRec(intake(9))
	forged.Chain, forged.ChainSeq, forged.PrevHash = lane.Chain, 2, first.Hash
	forged.At = forged.At.UTC()
	forged.Hash = outbox.AuditHash(forged)
	if err := insertAudit(ctx, exec, forged); err != nil {
		t.Fatal(err)
	}
	d := lane.Disclosure(createRec(intake(2)))
	if d.Record.ChainSeq != 2 {
		t.Fatalf("the lane lent again numbers its record %d, want 2", d.Record.ChainSeq)
	}
	_, err = s.CreateAuditedReferral(ctx, intake(2), d)
	if err == nil || fault.KindOf(err) != fault.Unavailable || !errors.Is(err, outbox.ErrAuditHead) {
		t.Fatalf("a create whose record's number is taken: %v (kind %s); want unavailable, matching ErrAuditHead", err, fault.KindOf(err))
	}
	assertNoTrace(t, s, intake(2))
	if h, err := s.AuditHead(ctx, lane.Chain); err != nil || h.HeadSeq != 1 || h.HeadHash != first.Hash {
		t.Errorf("the chain's head after the refused create: %+v, %v; want where the first create left it", h, err)
	}
	other := a.Lend()
	if res, err := s.CreateAuditedReferral(ctx, intake(2), other.Disclosure(createRec(intake(2)))); err != nil ||
		!res.Created || other.Chain == lane.Chain {
		t.Errorf("the create on another lane (%s): %v", other.Chain, err)
	}
}

func insertAudit(ctx context.Context, exec Exec, r outbox.AuditRecord) error {
	return exec(ctx, `INSERT INTO audit_records (chain, chain_seq, at, request_id, client_request_id, actor_id,
		actor_role, via, action, resource_type, resource_id, referral_id, practice_ods, service_id, address,
		prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Chain, r.ChainSeq, r.At.UnixMicro(), r.RequestID, r.ClientRequestID, r.ActorID, r.ActorRole, r.Via,
		string(r.Action), r.ResourceType, r.ResourceID, r.ReferralID, r.PracticeODS, r.ServiceID, r.Address,
		r.PrevHash, r.Hash)
}

// testCompleteAttemptsDisclosures: a completion's disclosure (AttemptResult.Audit) is appended in the
// transaction that records its attempt, numbered on from its chain's head (a chain not yet written is
// started for the disclosure's instance), beside a process's AuditLog chain; a lost lease's too (its
// attempt is recorded), and nothing of a completion that is refused (its update, or a disclosure without
// a chain). The trail verifies.
func testCompleteAttemptsDisclosures(t *testing.T, open Opener) {
	s, now := claimedReferrals(t, open, 5)
	ctx := t.Context()
	if err := newAuditLog(t, s, "serve").Record(ctx, auditRec(1)); err != nil {
		t.Fatal(err)
	}
	const chain = "serve-deliveries"
	errBoom := errors.New("boom")
	refused := func(outbox.Referral) (mapping.Referral, []mapping.Event, error) {
		return mapping.Referral{}, nil, errBoom
	}
	done := func(n int, owner string, update outbox.ReferralUpdate) outbox.Completion {
		id, ref := fmt.Sprintf("msg-%03d-1", n), fmt.Sprintf("ref-%03d", n)
		return outbox.Completion{ID: id, Now: now, Result: outbox.AttemptResult{Owner: owner, State: outbox.StateDelivered,
			Attempt: outbox.Attempt{StatusCode: 200}, Update: update,
			Audit: &outbox.Disclosure{Instance: "serve", Record: outbox.AuditRecord{Chain: chain, At: now.Add(time.Duration(n) * time.Microsecond),
				RequestID: id, ActorID: "socialrx", ActorRole: "system", Via: "webhook", Action: outbox.AuditSend,
				ResourceType: "Message", ResourceID: id, ReferralID: ref, PracticeODS: "A81001", ServiceID: walks.ID}}}}
	}
	unchained := done(5, "a", delivered)
	unchained.Result.Audit.Record.Chain = ""
	errs := s.CompleteAttempts(ctx, []outbox.Completion{done(1, "a", delivered), done(2, "a", refused), done(3, "b", delivered), unchained})
	if errs[0] != nil || !errors.Is(errs[1], errBoom) || errs[3] == nil {
		t.Fatalf("the batch: %v; want the first recorded, the second and the fourth refused", errs)
	}
	wantErr(t, "another owner's completion", errs[2], outbox.ErrLeaseLost)
	for _, id := range []string{"msg-002-1", "msg-005-1"} {
		if d := message(t, s, id); d.Message.State != outbox.StateInflight || len(d.Attempts) != 0 {
			t.Errorf("a refused completion wrote: %+v", d)
		}
	}
	if errs := s.CompleteAttempts(ctx, []outbox.Completion{done(4, "a", delivered)}); errs[0] != nil {
		t.Fatalf("the second batch: %v", errs[0])
	}
	recs, err := s.ListAudit(ctx, outbox.AuditQuery{ActorID: "socialrx"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %d %s %s", r.Chain, r.ChainSeq, r.ResourceID, r.ReferralID))
	}
	diff(t, "the disclosures appended", got, []string{chain + " 1 msg-001-1 ref-001", chain + " 2 msg-003-1 ref-003",
		chain + " 3 msg-004-1 ref-004"})
	h, err := s.AuditHead(ctx, chain)
	if err != nil || h.Instance != "serve" || h.HeadSeq != 3 || len(recs) != 3 || h.HeadHash != recs[2].Hash {
		t.Errorf("the disclosures' chain: %+v, %v; want started for serve, its head at the third record", h, err)
	}
	// The head moves without this store's completions (another writer, against the rule): the next batch
	// appends after the new head, not after the head the store last left.
	foreign := []outbox.AuditRecord{auditRec(2)}
	foreign[0].Chain = chain
	outbox.ChainAudit(foreign, h.HeadSeq, h.HeadHash)
	if err := s.AppendAudit(ctx, "serve", foreign); err != nil {
		t.Fatal(err)
	}
	now = now.Add(lease + time.Minute)
	diff(t, "the claim after the leases expired", slices.Sorted(slices.Values(ids(claim(t, s, "c", now, lease, 10)))),
		[]string{"msg-002-1", "msg-003-1", "msg-005-1"})
	errs = s.CompleteAttempts(ctx, []outbox.Completion{done(2, "c", delivered), done(5, "c", delivered)})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("the batch after the head moved: %v", errs)
	}
	recs, err = s.ListAudit(ctx, outbox.AuditQuery{ActorID: "socialrx"})
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%s %d %s", r.Chain, r.ChainSeq, r.ResourceID))
	}
	diff(t, "the disclosures after the head moved", got, []string{chain + " 1 msg-001-1", chain + " 2 msg-003-1",
		chain + " 3 msg-004-1", chain + " 5 msg-002-1", chain + " 6 msg-005-1"})
	rep := verifyOK(t, s)
	if len(rep.Chains) != 2 || rep.Records != 7 {
		t.Errorf("verify: %d chains, %d records; want the AuditLog's and the disclosures', 7 records", len(rep.Chains), rep.Records)
	}
}

// createRec is the record of a GP client creating the fixtures' referral in (CreateAuditedReferral).
func createRec(in mapping.Intake) outbox.AuditRecord {
	r := in.Referral.Record
	return outbox.AuditRecord{At: r.CreatedAt, RequestID: "req-" + r.ID, ActorID: "practice-a81001", ActorRole: "gp",
		Via: "fhir", Action: outbox.AuditCreate, ResourceType: "ServiceRequest", ResourceID: r.ServiceRequestID,
		ReferralID: r.ID, PracticeODS: in.Referral.PracticeODS, ServiceID: r.Service.ID, Address: "127.0.0.1"}
}

// auditLines are recs as "chain seq action referral" lines, in their order.
func auditLines(recs []outbox.AuditRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s %d %s %s", r.Chain, r.ChainSeq, r.Action, r.ReferralID))
	}
	return out
}

// testCreateAuditedReferral: a creation's record (CreateAuditedReferral) is appended on its lane's chain in
// the creating transaction, beside the process's AuditLog chain: a create that fails at any step, its
// record's append included, leaves neither the referral nor the record, and the same intake then goes
// through with its record; a resend, a conflict and a record that names no chain append nothing. The trail
// verifies.
func testCreateAuditedReferral(t *testing.T, open Opener) {
	var failAt atomic.Value
	failAt.Store("")
	s := open(t, Options{FailAfter: func(st string, in mapping.Intake) error {
		if st == failAt.Load().(string) {
			return errInjected
		}
		return nil
	}})
	ctx := t.Context()
	a := newAuditLog(t, s, "serve")
	if err := a.Record(ctx, auditRec(1)); err != nil {
		t.Fatal(err)
	}
	lane := a.Lend()
	defer lane.Release(nil)
	if lane.Chain == a.Chain() || lane.Instance != "serve" {
		t.Fatalf("lane %+v: want a chain of its own, of the AuditLog's instance (its chain %s)", lane, a.Chain())
	}
	createAudited := func(in mapping.Intake) (outbox.CreateResult, error) {
		return s.CreateAuditedReferral(ctx, in, lane.Disclosure(createRec(in)))
	}
	for _, stage := range []string{StageEvents, StageAudit} {
		failAt.Store(stage)
		_, err := createAudited(intake(1))
		wantErr(t, "a create failing after "+stage, err, errInjected)
		assertNoTrace(t, s, intake(1))
	}
	failAt.Store("")
	if recs, err := s.ListAudit(ctx, outbox.AuditQuery{ActorID: "practice-a81001"}); err != nil || len(recs) != 0 {
		t.Fatalf("the creations' records after failed creates: %v, %v; want none", auditLines(recs), err)
	}
	res, err := createAudited(intake(1))
	if err != nil || !res.Created {
		t.Fatalf("create: %+v, %v", res.Created, err)
	}
	diff(t, "the created referral", res.Referral, stored(intake(1)))
	if res, err := createAudited(intake(1)); err != nil || res.Created {
		t.Fatalf("resend: created %v, %v; want the existing referral", res.Created, err)
	}
	other := renamed(intake(1), "-b")
	other.Fingerprint = "another body"
	_, err = createAudited(other)
	wantErr(t, "another body under the same identifier", err, outbox.ErrConflict)
	unchained := lane.Disclosure(createRec(intake(3)))
	unchained.Record.Chain = ""
	if _, err := s.CreateAuditedReferral(ctx, intake(3), unchained); err == nil {
		t.Error("a create whose record names no chain was accepted")
	}
	assertNoTrace(t, s, intake(3))
	if res, err := createAudited(intake(2)); err != nil || !res.Created {
		t.Fatalf("second create: %+v, %v", res.Created, err)
	}
	recs, err := s.ListAudit(ctx, outbox.AuditQuery{ActorID: "practice-a81001", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "the creations' records", auditLines(recs), []string{lane.Chain + " 1 create ref-001", lane.Chain + " 2 create ref-002"})
	want := createRec(intake(1))
	got := recs[0]
	if got.RequestID != want.RequestID || got.ResourceID != want.ResourceID || got.PracticeODS != want.PracticeODS ||
		got.ServiceID != want.ServiceID || got.ActorID != want.ActorID || !got.At.Equal(want.At) {
		t.Errorf("the first creation's record: %+v, want %+v", got, want)
	}
	h, err := s.AuditHead(ctx, lane.Chain)
	if err != nil || h.Instance != "serve" || h.HeadSeq != 2 || h.HeadHash != recs[1].Hash {
		t.Errorf("the lane's chain: %+v, %v; want started for serve, its head at the second record", h, err)
	}
	// A record numbered after a head the chain has left is appended after the head it is at; one numbered
	// after the head it is at, there.
	stale := lane.Disclosure(createRec(intake(4)))
	stale.Record.ChainSeq, stale.Record.PrevHash = 2, recs[0].Hash
	res, err = s.CreateAuditedReferral(ctx, intake(4), stale)
	if err != nil || res.Audit == nil || res.Audit.ChainSeq != 3 || res.Audit.PrevHash != recs[1].Hash ||
		res.Audit.Hash != outbox.AuditHash(*res.Audit) {
		t.Fatalf("a create numbered after an old head: %+v, %v; want its record third, after the second", res.Audit, err)
	}
	known := lane.Disclosure(createRec(intake(5)))
	known.Record.ChainSeq, known.Record.PrevHash = 4, res.Audit.Hash
	// A create that fails after appending its record there leaves neither.
	failAt.Store(StageAudit)
	_, err = s.CreateAuditedReferral(ctx, intake(5), known)
	wantErr(t, "a create failing after its record was appended after the head", err, errInjected)
	assertNoTrace(t, s, intake(5))
	if h, err := s.AuditHead(ctx, lane.Chain); err != nil || h.HeadSeq != 3 || h.HeadHash != res.Audit.Hash {
		t.Errorf("the lane's chain after the failed create: %+v, %v; want its head at the third record", h, err)
	}
	failAt.Store("")
	if res, err := s.CreateAuditedReferral(ctx, intake(5), known); err != nil || res.Audit == nil || res.Audit.ChainSeq != 4 {
		t.Fatalf("a create numbered after the head: %+v, %v; want its record fourth", res.Audit, err)
	}
	rep := verifyOK(t, s)
	if len(rep.Chains) != 2 || rep.Records != 5 {
		t.Errorf("verify: %d chains, %d records; want the AuditLog's and the lane's, 5 records", len(rep.Chains), rep.Records)
	}
}

// testCreateAuditedReferralConcurrent: writers creating at once, each on a lane of its own, all commit, each
// referral with its one record; a lane released is lent again, so the chains are no more than the writers
// ever held at once; the trail verifies.
func testCreateAuditedReferralConcurrent(t *testing.T, open Opener) {
	s := open(t, Options{})
	ctx := t.Context()
	a := newAuditLog(t, s, "serve")
	const writers, each = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				in := intake(1 + w*each + i)
				lane := a.Lend()
				res, err := s.CreateAuditedReferral(ctx, in, lane.Disclosure(createRec(in)))
				lane.Release(res.Audit)
				if err == nil && !res.Created {
					err = fmt.Errorf("%s: not created", in.Referral.Record.ID)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs, err := s.ListAudit(ctx, outbox.AuditQuery{ActorID: "practice-a81001", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.ReferralID]++
	}
	if len(recs) != writers*each || len(seen) != writers*each {
		t.Errorf("%d records of %d referrals, want one for each of the %d", len(recs), len(seen), writers*each)
	}
	rep := verifyOK(t, s)
	if rep.Records != writers*each || len(rep.Chains) > writers {
		t.Errorf("verify: %d records on %d chains, want %d on at most %d", rep.Records, len(rep.Chains), writers*each, writers)
	}
}

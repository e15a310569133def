//go:build unix

package crashtest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
)

// instances is how many socialrx processes the multi-instance kill test runs on one PostgreSQL schema.
const instances = 3

// TestKill9ThreeInstancesOnPostgres is the multi-instance kill test of issue 12: three `socialrx serve`
// processes share one PostgreSQL schema behind a round-robin load balancer (the GP clients send each request,
// and each resend, to the next instance). GP clients post referrals and revoke every third one as soon as it is
// accepted, so that its referral.created and referral.cancelled race through the outbox, while the test kills a
// random instance with SIGKILL at random points and restarts it. Afterwards: every accepted referral reached its
// service, every revoked one's cancellation too and never before the referral had been answered 2xx
// (per-referral order), no webhook-id was sent while an earlier request carrying it was still being answered
// (no message delivered twice at the same time) unless that earlier attempt had timed out, every duplicate is
// explained by a kill or a timeout, nothing is left pending, inflight or dead, and the GP sees each Task as
// delivered or cancelled.
func TestKill9ThreeInstancesOnPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and runs the binary")
	}
	t.Parallel()
	dbURL := pgtest.FreshSchema(t) // skips without a server, fails under CI
	run := newStormRun(t, 2, 90*time.Second)
	n, kills, clients, seed, rng, ctx, started, rc := run.referrals, run.kills, run.clients, run.seed, run.rng, run.ctx, run.started, run.rc
	directory := writeDirectory(t, run.url)
	procs := make([]*proc, instances)
	bases := make([]string, instances)
	for i := range procs {
		// Debug logs: each instance's delivery attempts are counted from them.
		procs[i] = newProc(t, directory, "SOCIALRX_DATABASE_URL="+dbURL, "SOCIALRX_LOG_LEVEL=debug")
		bases[i] = procs[i].base
	}
	// All three start at once, as a deployment does: the migrations run under a lock, once.
	var wg sync.WaitGroup
	startErrs := make([]error, instances)
	for i, p := range procs {
		wg.Go(func() { startErrs[i] = p.start(ctx) })
	}
	wg.Wait()
	for _, err := range startErrs {
		if err != nil {
			t.Fatal(err)
		}
	}

	type kill struct {
		after    int // accepted referrals
		instance int
	}
	plan := make([]kill, kills)
	for i := range plan {
		plan[i] = kill{1 + rng.IntN(n), rng.IntN(instances)}
	}
	slices.SortFunc(plan, func(a, b kill) int { return a.after - b.after })
	t.Logf("kill plan (after accepted referral number, instance): %v", plan)

	g := newGPClient(bases...)
	bodies := stormBodies(t, seed, n)
	accepted := make(chan int, n)
	revoke := func(i int) bool { return i%3 == 0 }
	type result struct {
		ids []string
		err error
	}
	done := make(chan result, 1)
	go func() {
		ids, err := storm(ctx, g, bodies, clients, accepted, func(i int, id string) error {
			if revoke(i) {
				return g.revoke(ctx, id)
			}
			return nil
		})
		done <- result{ids, err}
	}()

	got := 0
	var killTimes []time.Time
	for _, k := range plan {
		run.awaitAccepted(t, accepted, &got, k.after)
		p := procs[k.instance]
		if err := p.crash(ctx, time.Duration(rng.IntN(500))*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		killTimes = append(killTimes, p.kills[len(p.kills)-1])
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("GP clients: %v", res.err)
	}
	postedIn := time.Since(started)
	var created, revoked, kept []string
	for i, id := range res.ids {
		created = append(created, id)
		if revoke(i) {
			revoked = append(revoked, id)
		} else {
			kept = append(kept, id)
		}
	}

	// The referrals not revoked must all arrive; a revoked one arrives with its cancellation, or (revoked
	// before its referral.created was sent) not at all, which check tells apart once the outbox has settled.
	if err := rc.waitAll(ctx, kept); err != nil {
		t.Errorf("%v\n%s", err, procs[0].describeUnsettled())
	}
	if err := procs[0].waitSettled(ctx); err != nil {
		t.Errorf("%v\n%s", err, procs[0].describeUnsettled())
	}
	deliveredIn := time.Since(started)
	checkTasks(ctx, t, g, created, revoked)
	for i, p := range procs {
		if took, code, err := p.terminate(shutdownBound); err != nil || code != 0 {
			t.Errorf("instance %d: SIGTERM at the end: exit %d after %s: %v", i, code, took, err)
		}
	}
	withdrawn := rc.check(t, created, revoked)
	if left, err := procs[0].unsettled(context.Background()); err != nil || len(left) > 0 {
		t.Errorf("after SIGTERM, messages not delivered: %v %v", left, err)
	}
	procs[0].checkDeliveriesAudited(context.Background(), t)
	procs[0].checkCreationsAudited(context.Background(), t, created)

	// A webhook-id sent again while a request carrying it is still being answered is a message delivered twice
	// at the same time: two instances holding one claim. The one allowed cause is the dispatcher's own timeout
	// (the receiver still answering an attempt the sender gave up on).
	for _, id := range rc.overlapping() {
		if !timedOut(procs[0], id) {
			t.Errorf("webhook-id %s delivered twice at the same time, with no timed-out attempt: %s", id, procs[0].outboxAttempts(context.Background(), id))
		}
	}
	slices.SortFunc(killTimes, func(a, b time.Time) int { return a.Compare(b) })
	s := rc.stats(killTimes)
	for _, id := range s.otherDups {
		if !timedOut(procs[0], id) {
			t.Errorf("webhook-id %s delivered twice after the last kill, without a timed-out attempt: %s", id, procs[0].outboxAttempts(context.Background(), id))
		}
	}

	runs, attempts, panics := 0, make([]int, instances), 0
	for i, p := range procs {
		outcomes, errs, pn := p.logSummary()
		for _, c := range outcomes {
			attempts[i] += c
		}
		for msg, c := range errs {
			t.Logf("instance %d: ERROR logged %d×: %s", i, c, msg)
		}
		runs += p.runs
		panics += pn
	}
	t.Logf("referrals accepted: %d, revoked: %d, of which withdrawn before sending: %d (resends %d); kills: %d; starts: %d; delivery attempts logged per instance: %v",
		len(created), len(revoked), withdrawn, g.resends.Load(), len(killTimes), runs, attempts)
	t.Logf("receiver: %d requests, %d answered 500, %d slow; %d deliveries, %d unique webhook-ids, %d duplicates (max %d copies of one); %d sent while still being answered",
		s.requests, s.failed, s.slowed, s.deliveries, s.uniqueIDs, s.duplicates, s.maxCopies, len(rc.overlapping()))
	t.Logf("time: posted and revoked in %s, outbox settled at %s", postedIn.Round(time.Millisecond), deliveredIn.Round(time.Millisecond))
	if panics > 0 {
		t.Errorf("%d log lines mention a panic", panics)
	}
}

// timedOut reports whether message id has an attempt that got no answer in time (status 0).
func timedOut(p *proc, id string) bool {
	_, atts, err := p.outboxShow(context.Background(), id)
	return err == nil && slices.ContainsFunc(atts, func(a attempt) bool { return a.StatusCode == 0 })
}

// checkTasks asserts what the GP sees: the Task of each referral created and not revoked is delivered, and the
// Task of each revoked one is cancelled.
func checkTasks(ctx context.Context, t *testing.T, g *gpClient, created, revoked []string) {
	t.Helper()
	bad := 0
	for _, id := range created {
		status, business, err := g.task(ctx, id)
		want := "delivered"
		ok := err == nil && business == want
		if slices.Contains(revoked, id) {
			want = "status cancelled"
			ok = err == nil && status == "cancelled"
		}
		if ok {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("Task of ServiceRequest %s: status %q, businessStatus %q, %v (want %s)", id, status, business, err, want)
		}
	}
	if bad > 5 {
		t.Errorf("%d Tasks in all not as expected", bad)
	}
}

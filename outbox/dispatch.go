package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/socialrx/socialrx/mapping"
)

// Dispatcher defaults (DispatcherOptions zero values).
const (
	DefaultTimeout         = 10 * time.Second
	DefaultQuickRetries    = 2
	DefaultQuickRetryWait  = 2 * time.Second
	DefaultLease           = 60 * time.Second
	DefaultConcurrency     = 32
	DefaultPerDestination  = 8
	DefaultBackoffBase     = 10 * time.Second
	DefaultBackoffMax      = 4 * time.Hour
	DefaultRetryBudget     = 72 * time.Hour
	DefaultMaxRetryAfter   = time.Hour
	DefaultSafetyPoll      = 2 * time.Second
	DefaultClaimWait       = 5 * time.Millisecond
	DefaultShutdownTimeout = 10 * time.Second
)

// quickRetryWaitMin is the first in-attempt retry wait; it doubles up to QuickRetryWait.
const quickRetryWaitMin = 100 * time.Millisecond

// storeCallTimeout bounds a store call that must not be cancelled with the dispatcher (recording a finished
// attempt, releasing leases on shutdown).
const storeCallTimeout = 30 * time.Second

// DispatcherOptions configure a Dispatcher. Zero fields take the documented defaults; negative durations and
// counts are invalid (except QuickRetries), and Run reports invalid options before doing anything.
type DispatcherOptions struct {
	// Owner is the lease owner id, unique per process. Default: "dispatcher-" + a UUIDv7.
	Owner string
	// Clock is the time used for every state decision (claims, leases, schedules, budgets, signatures).
	// Default time.Now.
	Clock func() time.Time
	// Jitter adds a random delay to each backoff. Default DefaultJitter (up to a quarter of the backoff).
	Jitter JitterFunc
	// Backoff is the durable retry schedule. Default Exponential(10 s, 4 h).
	Backoff BackoffFunc
	// HTTPClient sends the webhooks. Default: a client built from Timeout, QuickRetries and QuickRetryWait
	// that does not follow redirects, retries quickly inside one attempt only on network errors (not
	// timeouts), 408 and 5xx, waits at most QuickRetryWait (so a longer Retry-After is left to the durable
	// schedule), and logs nothing. A client given here is used as is: it should not follow redirects and
	// should pass the last response through (ErrorHandler retryablehttp.PassthroughErrorHandler).
	HTTPClient *retryablehttp.Client
	// Timeout bounds one HTTP request. Default 10 s.
	Timeout time.Duration
	// Egress is the outbound policy of endpoints that came from a client (Endpoint.Guarded: FHIR
	// Subscriptions). The zero value is strict: public unicast addresses only.
	Egress EgressPolicy
	// GuardedHTTPClient sends to guarded endpoints. Default: the default client's behaviour (HTTPClient's
	// timeouts and retries) over Egress.Transport(). A client given here is used as is.
	GuardedHTTPClient *retryablehttp.Client
	// QuickRetries is the number of in-attempt retries. 0: default 2; negative: none.
	QuickRetries int
	// QuickRetryWait caps one in-attempt wait, including an honoured Retry-After. Default 2 s.
	QuickRetryWait time.Duration
	// Lease is how long a claimed message stays ours; it must exceed the longest attempt
	// (Timeout × (QuickRetries+1) + QuickRetries × QuickRetryWait). Default: twice the longest attempt, at least
	// DefaultLease (60 s).
	Lease time.Duration
	// Concurrency caps the requests in flight plus the messages claimed and waiting for room. An attempt that
	// has its answer and waits to be recorded (a batch of attempts is one transaction) does not count: the
	// dispatcher goes on claiming and sending while the store commits. All the messages it holds (requests,
	// waiting for room, answered and not yet recorded) are at most Concurrency plus one completion batch (64);
	// at that bound it claims nothing more until some are recorded. Default DefaultConcurrency (32), or the
	// largest cap (PerDestination, InFlight) if that is more.
	Concurrency int
	// PerDestination caps the requests in flight to one destination, so that a slow or dead service never
	// takes every worker and a small one is never sent more at once. A delivery whose request is answered
	// and whose attempt is being recorded no longer counts. For a destination that answered requests since
	// the last claim, a claim also takes up to as many more of its messages (at most another PerDestination),
	// held until one of its requests is answered: they are leased and count in Concurrency, but are never sent
	// beyond the cap. Default DefaultPerDestination (8).
	PerDestination int
	// InFlight overrides PerDestination for the destinations it names (each cap at least 1): a service's
	// own cap (mapping.Delivery.MaxInFlight; DirectoryInFlight reads them from the directory), lower for a
	// small group's endpoint, higher for one that takes parallel requests. The dispatcher keeps a copy.
	InFlight map[mapping.Destination]int
	// ClaimBatch is how many free places (Concurrency less the requests in flight and the messages held) the
	// dispatcher waits for before it claims again while deliveries are in flight: under a backlog it then claims
	// several messages at a time, not one or two after each completion (every claim is a database round
	// trip with a fixed cost). With nothing in flight it claims at once, and it never waits longer than
	// ClaimWait after its last claim. Default Concurrency/4, at least 1 (1: claim whenever a place is free);
	// at most Concurrency.
	ClaimBatch int
	// ClaimWait is how long after its last claim the dispatcher, with deliveries in flight, claims for fewer
	// than ClaimBatch free places. Default DefaultClaimWait (5 ms).
	ClaimWait time.Duration
	// RetryBudget is how long a message is retried, from Message.BudgetFrom (creation or last replay),
	// before it goes dead. Default 72 h.
	RetryBudget time.Duration
	// MaxRetryAfter caps an honoured Retry-After in the durable schedule. Default 1 h.
	MaxRetryAfter time.Duration
	// SafetyPoll is how often the dispatcher looks for work without being told: other instances' commits
	// and expired leases. Commits in this process wake it at once (Store.Changes). Default 2 s.
	SafetyPoll time.Duration
	// ShutdownTimeout is how long in-flight deliveries may finish after Run's context is cancelled before
	// they are cancelled and released. Default 10 s.
	ShutdownTimeout time.Duration
	// Version goes into the User-Agent header "socialrx/<Version>". Default "dev".
	Version string
	// Logger receives one line per attempt (message and referral ids, destination, outcome, status,
	// latency; never a payload nor the receiver's answer). Default slog.Default().
	Logger *slog.Logger
	// Observer, if not nil, is told about every attempt (for metrics). It must be safe for concurrent use.
	Observer Observer
	// Audit, if not nil, records every message about a referral that was delivered in the audit trail:
	// action send, actor socialrx, via webhook (a community service received the referral's data) or
	// subscription (a GP system's Subscription notification). Each record is appended in the transaction
	// that records its attempt (AttemptResult.Audit), on a chain of the dispatcher's own, of Audit's instance.
	Audit *AuditLog
}

// withDefaults fills zero fields and validates the rest.
func (o DispatcherOptions) withDefaults() (DispatcherOptions, error) {
	var errs []error
	dur := func(name string, v *time.Duration, def time.Duration) {
		switch {
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative (got %s)", name, *v))
		case *v == 0:
			*v = def
		}
	}
	count := func(name string, v *int, def int) {
		switch {
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative (got %d)", name, *v))
		case *v == 0:
			*v = def
		}
	}
	if o.Owner == "" {
		id, err := uuid.NewV7()
		if err != nil {
			errs = append(errs, fmt.Errorf("owner id: %w", err))
		}
		o.Owner = "dispatcher-" + id.String()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = DefaultJitter
	}
	if o.Backoff == nil {
		o.Backoff = Exponential(DefaultBackoffBase, DefaultBackoffMax)
	}
	dur("Timeout", &o.Timeout, DefaultTimeout)
	switch {
	case o.QuickRetries == 0:
		o.QuickRetries = DefaultQuickRetries
	case o.QuickRetries < 0:
		o.QuickRetries = 0
	}
	dur("QuickRetryWait", &o.QuickRetryWait, DefaultQuickRetryWait)
	// An unset lease follows the attempt limit, so a longer Timeout alone never makes the options invalid.
	dur("Lease", &o.Lease, max(DefaultLease, 2*attemptLimit(o)))
	count("PerDestination", &o.PerDestination, DefaultPerDestination)
	widest := o.PerDestination // the most requests one destination may have in flight
	inFlight := make(map[mapping.Destination]int, len(o.InFlight))
	for dest, n := range o.InFlight {
		if n < 1 {
			errs = append(errs, fmt.Errorf("InFlight[%s] must be at least 1 (got %d)", dest, n))
		}
		inFlight[dest], widest = n, max(widest, n)
	}
	o.InFlight = inFlight
	// An unset Concurrency leaves room for the widest destination's cap.
	count("Concurrency", &o.Concurrency, max(DefaultConcurrency, widest))
	count("ClaimBatch", &o.ClaimBatch, max(o.Concurrency/4, 1))
	o.ClaimBatch = min(o.ClaimBatch, max(o.Concurrency, 1))
	dur("ClaimWait", &o.ClaimWait, DefaultClaimWait)
	dur("RetryBudget", &o.RetryBudget, DefaultRetryBudget)
	dur("MaxRetryAfter", &o.MaxRetryAfter, DefaultMaxRetryAfter)
	dur("SafetyPoll", &o.SafetyPoll, DefaultSafetyPoll)
	dur("ShutdownTimeout", &o.ShutdownTimeout, DefaultShutdownTimeout)
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	// The default transports keep as many idle connections to a destination as it may have requests in
	// flight: with fewer (cleanhttp's default is GOMAXPROCS+1), every burst to one service closes and dials
	// (and, over TLS, handshakes) the connections beyond them again.
	if o.HTTPClient == nil {
		t := cleanhttp.DefaultPooledTransport()
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, widest)
		o.HTTPClient = newHTTPClient(o.Timeout, o.QuickRetries, o.QuickRetryWait, t)
	}
	if o.GuardedHTTPClient == nil {
		t := o.Egress.Transport()
		t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, widest)
		o.GuardedHTTPClient = newHTTPClient(o.Timeout, o.QuickRetries, o.QuickRetryWait, t)
	}
	if limit := attemptLimit(o); o.Lease <= limit {
		//lint:ignore ST1005 the message starts with the option's name, Lease, as the user sets it (and tests pin it)
		errs = append(errs, fmt.Errorf("Lease (%s) must exceed the longest attempt (%s = Timeout × (retries+1) + retries × retry wait)", o.Lease, limit))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("outbox: invalid dispatcher options: %w", err)
	}
	return o, nil
}

// Validate applies the defaults and reports what is wrong with the options, so a process can refuse bad
// settings before it starts serving (Run reports the same errors).
func (o DispatcherOptions) Validate() error {
	_, err := o.withDefaults()
	return err
}

// attemptLimit is the longest one attempt may take, in-attempt retries included; each attempt's context
// carries it as a deadline, so that a lease never expires under a running delivery.
func attemptLimit(o DispatcherOptions) time.Duration {
	c := o.HTTPClient
	retries, wait := o.QuickRetries, o.QuickRetryWait
	if c != nil {
		retries, wait = max(c.RetryMax, 0), c.RetryWaitMax
	}
	return o.Timeout*time.Duration(retries+1) + wait*time.Duration(retries)
}

// Outcome is what became of one delivery attempt (a metrics label). The zero value is invalid.
type Outcome string

// Attempt outcomes.
const (
	OutcomeDelivered  Outcome = "delivered"   // 2xx: the message is delivered
	OutcomeRetry      Outcome = "retry"       // retryable failure: pending until NextAttemptAt
	OutcomeDead       Outcome = "dead"        // permanent failure or retry budget spent: dead letter
	OutcomeLeaseLost  Outcome = "lease-lost"  // the attempt was recorded but another owner holds the message now
	OutcomeReleased   Outcome = "released"    // shutdown cancelled the attempt; the message goes back to pending
	OutcomeStoreError Outcome = "store-error" // the store could not record the attempt; the lease will expire
)

// AttemptReport describes one finished attempt to an Observer. It carries no payload and no patient data.
type AttemptReport struct {
	MessageID     string
	ReferralID    string
	Destination   mapping.Destination
	Type          mapping.EventType
	Attempt       int // 1-based, across replays
	Outcome       Outcome
	StatusCode    int // 0: no HTTP response
	Latency       time.Duration
	Error         string    // short; empty on success
	NextAttemptAt time.Time // when Outcome is OutcomeRetry
}

// Observer is told about every attempt, so that the server can export metrics without outbox importing a
// metrics library. Implementations must be safe for concurrent use and must not block.
type Observer interface {
	ObserveAttempt(r AttemptReport)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(r AttemptReport)

// ObserveAttempt calls f.
func (f ObserverFunc) ObserveAttempt(r AttemptReport) { f(r) }

// Dispatcher delivers outbox messages as signed webhooks: it claims due messages (leases), POSTs each to
// its destination's endpoint, and records the attempt, retrying with durable backoff until the message is
// delivered or dead. Messages of one referral go in order (the store hands out only the oldest undelivered
// one); different referrals and destinations go in parallel, at most PerDestination at a time per
// destination. Delivery is at least once: receivers dedupe on webhook-id.
type Dispatcher struct {
	store     Store
	endpoints EndpointResolver
	opts      DispatcherOptions
	optsErr   error
	sched     schedule
	limit     time.Duration // attemptLimit
	chain     string        // the audit chain of its disclosures ("" without Audit)
	wake      chan struct{}
	running   atomic.Bool
}

// NewDispatcher returns a dispatcher over store that looks destinations up in endpoints. Invalid options
// are reported by Run.
func NewDispatcher(store Store, endpoints EndpointResolver, opts DispatcherOptions) *Dispatcher {
	o, err := opts.withDefaults()
	if err == nil && store == nil {
		err = errors.New("outbox: NewDispatcher: nil store")
	}
	if err == nil && endpoints == nil {
		err = errors.New("outbox: NewDispatcher: nil endpoint resolver")
	}
	var chain string
	if o.Audit != nil {
		chain = o.Audit.disclosureChain()
	}
	return &Dispatcher{
		chain:     chain,
		store:     store,
		endpoints: endpoints,
		opts:      o,
		optsErr:   err,
		sched:     schedule{backoff: o.Backoff, jitter: o.Jitter, maxRetryAfter: o.MaxRetryAfter, budget: o.RetryBudget},
		limit:     attemptLimit(o),
		wake:      make(chan struct{}, 1),
	}
}

// Owner returns the dispatcher's lease owner id.
func (d *Dispatcher) Owner() string { return d.opts.Owner }

// Wake makes a running dispatcher look for due messages now (for example after an admin replay in another
// process, or after a test moved its clock). It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// finished is a worker's note to the loop: with answered, that the destination has answered (or no
// request was made), so that its slot is free while the attempt is recorded; without, that the message is no
// longer in flight. A worker sends at most one of each, answered first, on the one channel.
type finished struct {
	id       string
	dest     mapping.Destination
	answered bool
}

// loopState is the Run loop's bookkeeping; only the loop goroutine touches it.
type loopState struct {
	active  map[string]bool             // ids of the messages being delivered or held
	calling map[string]bool             // ids of the deliveries whose request is not answered yet
	again   map[string]Message          // claimed again while their previous attempt was finishing
	running int                         // deliveries in progress
	perDest map[mapping.Destination]int // requests in flight per destination (deliveries not yet answered)
	// answered counts, per destination, the requests answered since the last claim: as many as a claim may
	// take of it ahead of its room (held), up to another PerDestination (see claim).
	answered map[mapping.Destination]int
	held     map[mapping.Destination][]Message // claimed but waiting for room (claimed ahead, or again during its attempt)
	nHeld    int                               // len(held queues) + len(again)
	rec      *completer                        // records the deliveries' attempts
	dueAt    time.Time                         // the next due time NextDue read last (zero: none pending)
	dueRead  time.Time                         // when NextDue was read last (this process's clock)
	claimed  time.Time                         // when the loop claimed last (this process's clock)
	claimAt  time.Time                         // the time the last claim was made for (the Clock's now)
	// recheck: the due time read last may be stale (a claim came back with deliveries in flight and read
	// no due time after it, dueRecheck): it is read again by dueRead+dueRecheck.
	recheck bool
	// exhausted: the last claim took everything it could have taken (fewer than asked, and no destination's
	// room cut it short), and nothing has happened since that could make more claimable but a delivery
	// finishing. A freed place alone is then no reason to claim: the claim would come back empty (Run
	// clears it on a commit, Wake, the safety poll or the pause timer; on the due timer, fill decides).
	exhausted bool
}

// dueRecheck is how often, at most, a busy loop reads the next due time (NextDue). While deliveries are in
// flight, each of them brings the loop back when it finishes, and a claim then takes whatever has come due;
// the due time only matters for a pending message that comes due while the loop would otherwise sleep. So a
// busy loop reads it at most this often and meanwhile sleeps no later than the recheck. Reading it after
// every claim cost as much as the claim itself under a backlog (each walks the pending index).
const dueRecheck = 100 * time.Millisecond

// Run delivers messages until ctx is cancelled, then shuts down gracefully: it stops claiming, lets
// in-flight deliveries finish for up to ShutdownTimeout, cancels the rest and releases every message it
// still leases back to pending. It returns nil after a clean shutdown, or the options' validation error,
// or the release error. A dispatcher runs once at a time.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.optsErr != nil {
		return d.optsErr
	}
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("outbox: Dispatcher.Run is already running")
	}
	defer d.running.Store(false)

	log := d.opts.Logger.With("owner", d.opts.Owner)
	log.Info("outbox dispatcher started", "concurrency", d.opts.Concurrency, "per_destination", d.opts.PerDestination,
		"own_caps", len(d.opts.InFlight))

	// Deliveries outlive ctx by up to ShutdownTimeout; store writes of finished attempts are never cut short.
	dctx, cancelDeliveries := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDeliveries()
	// At most Concurrency+recordingAhead deliveries run at once (free); each sends answered, then finished.
	most := d.opts.Concurrency + recordingAhead
	done := make(chan finished, 2*most)
	rec, stopRecording := newCompleter(ctx, d.store, most)
	defer stopRecording() // after shutdown: no delivery is left to record an attempt
	st := &loopState{
		active: map[string]bool{}, calling: map[string]bool{}, again: map[string]Message{},
		perDest: map[mapping.Destination]int{}, answered: map[mapping.Destination]int{},
		held: map[mapping.Destination][]Message{}, rec: rec,
	}

	safety := time.NewTicker(d.opts.SafetyPoll)
	defer safety.Stop()
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	pause := newStorePause()
	defer pause.timer.Stop()

	for {
		if ctx.Err() == nil && !pause.paused {
			if err := d.fill(ctx, dctx, log, st, done, due); err != nil && ctx.Err() == nil {
				pause.failed(log, d.opts.SafetyPoll, err)
			} else if err == nil {
				pause.ok(log)
			}
		}
		select {
		case <-ctx.Done():
			return d.shutdown(ctx, log, st, done, cancelDeliveries)
		case f := <-done:
			st.finish(f)
			// Take every other completion too, so that one claim refills all the freed capacity.
			for drained := false; !drained; {
				select {
				case f := <-done:
					st.finish(f)
				default:
					drained = true
				}
			}
		case <-d.store.Changes():
			pause.resume() // a commit went through: the database is back
			st.exhausted = false
		case <-d.wake:
			st.exhausted = false
		case <-safety.C:
			st.exhausted = false
		case <-due.C:
			// A message came due, a recheck is due, or a claim waited for places (ClaimWait): fill sees
			// which.
		case <-pause.timer.C:
			pause.resume()
			st.exhausted = false
		}
	}
}

// finish takes a worker's note (finished). A destination's slot is freed once, when the request is
// answered or, for a delivery that never says so (cancelled by shutdown), when it is over.
func (st *loopState) finish(f finished) {
	if st.calling[f.id] {
		delete(st.calling, f.id)
		if st.perDest[f.dest]--; st.perDest[f.dest] <= 0 {
			delete(st.perDest, f.dest)
		}
	}
	if f.answered {
		st.answered[f.dest]++
		return
	}
	if m, ok := st.again[f.id]; ok {
		delete(st.again, f.id)
		st.held[m.Destination] = append(st.held[m.Destination], m) // still active; nHeld unchanged
	} else {
		delete(st.active, f.id)
	}
	st.running--
}

// replaceHeld puts m in the place of the held message with its id, if one waits for room, and reports whether
// one did.
func (st *loopState) replaceHeld(m Message) bool {
	q := st.held[m.Destination]
	for i := range q {
		if q[i].ID == m.ID {
			q[i] = m
			return true
		}
	}
	return false
}

// free is how many more messages the loop may claim: Concurrency less the requests in flight and the
// messages held, and never so many that the messages it holds in all (those, and the answered attempts
// waiting to be recorded) would exceed Concurrency+recordingAhead.
func (st *loopState) free(concurrency int) int {
	return min(concurrency-len(st.calling)-st.nHeld, concurrency+recordingAhead-st.running-st.nHeld)
}

// fill starts held messages that have room, then claims as many messages as there is capacity for, and
// arms the due timer for the next pending message when capacity is left. It returns the store's error when
// the store could not be asked (the loop then backs off: storePause).
func (d *Dispatcher) fill(ctx, dctx context.Context, log *slog.Logger, st *loopState, done chan<- finished, due *time.Timer) error {
	due.Stop()
	now := d.opts.Clock()
	d.startHeld(ctx, dctx, log, st, done, now)
	if st.exhausted {
		// Only deliveries have finished, or time has passed, since a claim that found nothing more: what is
		// pending is what the due time says (a completion that made work commits, and its Changes clears
		// exhausted). A stale due time is read again, rather than claiming on the chance, and only a message
		// come due since the last claim is claimed for. A head due before it that the claim did not take is
		// blocked, or was another instance's: a claim that held its row (SKIP LOCKED) either leased it or
		// came back full, and its instance claims again as its deliveries finish. (Claiming for such heads
		// on every recheck cost three instances draining one backlog 10–15 % of their rate.)
		if st.recheck && time.Since(st.dueRead) >= dueRecheck {
			if err := d.readDue(ctx, st); err != nil {
				return err
			}
		}
		if !st.dueAt.After(st.claimAt) || st.dueAt.After(now) {
			st.armDue(due, now)
			return nil
		}
		st.exhausted = false // a message has come due since the last claim
	}
	for {
		free := st.free(d.opts.Concurrency)
		if free <= 0 {
			return nil
		}
		// With deliveries in flight, every completion brings the loop back: a claim waits for ClaimBatch free
		// places, or until ClaimWait has passed since the last claim (ClaimBatch).
		if st.running > 0 && free < d.opts.ClaimBatch {
			if wait := d.opts.ClaimWait - time.Since(st.claimed); wait > 0 {
				due.Reset(wait)
				return nil
			}
		}
		// A commit signalled before this claim begins is seen by it, and its messages are due by the time
		// read after: its signal is no reason for another claim.
		select {
		case <-d.store.Changes():
		default:
		}
		now = d.opts.Clock()
		msgs, f, err := d.claim(ctx, now, free, st)
		st.claimed, st.claimAt = time.Now(), now
		if err != nil {
			return fmt.Errorf("claiming messages: %w", err)
		}
		st.exhausted = len(msgs) < free && !roomBound(f, msgs)
		for _, m := range msgs {
			if st.active[m.ID] {
				// Claimed again while held for room (its lease ran out: the clock jumped): the new claim,
				// with its lease, takes the held one's place.
				if st.replaceHeld(m) {
					continue
				}
				// Claimed again before the loop saw its previous attempt finish (the attempt was recorded,
				// and the message became due again), or under a running attempt whose lease ran out (the
				// clock jumped): start it once that attempt is over, never twice at once. Claimed yet again
				// meanwhile, it is still held once, with the latest claim's lease.
				if _, held := st.again[m.ID]; !held {
					st.nHeld++
				}
				st.again[m.ID] = m
				continue
			}
			st.active[m.ID] = true
			if st.perDest[m.Destination] < d.inFlight(m.Destination) {
				d.start(dctx, log, st, done, m)
				continue
			}
			st.held[m.Destination] = append(st.held[m.Destination], m)
			st.nHeld++
		}
		if len(msgs) < free {
			break
		}
	}
	// Capacity is left: sleep until the next pending message is due. A due time not after now whose message
	// the claim did not return is blocked (per-referral order, or no room for its destination): a completion,
	// a commit or the safety poll will bring the loop back. With deliveries in flight, the due time read less
	// than dueRecheck ago stands (dueRecheck).
	if st.running > 0 && time.Since(st.dueRead) < dueRecheck {
		st.recheck = true
	} else if err := d.readDue(ctx, st); err != nil {
		return err
	}
	st.armDue(due, now)
	return nil
}

// readDue reads when the next pending message is due (NextDue).
func (d *Dispatcher) readDue(ctx context.Context, st *loopState) error {
	next, err := d.store.NextDue(ctx)
	if err != nil {
		return fmt.Errorf("reading the next due time: %w", err)
	}
	st.dueAt, st.dueRead, st.recheck = next, time.Now(), false
	return nil
}

// armDue sets the due timer for the next pending message's due time, and no later than the recheck of a
// stale due time (dueRecheck). A due time not after now is blocked (see fill) and arms nothing.
func (st *loopState) armDue(due *time.Timer, now time.Time) {
	wait := time.Duration(-1)
	if st.dueAt.After(now) {
		wait = st.dueAt.Sub(now)
	}
	if st.recheck {
		if r := max(dueRecheck-time.Since(st.dueRead), 0); wait < 0 || r < wait {
			wait = r
		}
	}
	if wait >= 0 {
		due.Reset(wait)
	}
}

// claim leases up to limit messages, no more of a destination than it has room for: its cap (inFlight) less
// what is in flight or held, and, for a destination that answered requests since the last claim, as many
// more as it answered, up to another cap. Those are held, and start the moment a request to it is answered.
// A destination with a cap of its own is named in every claim, so that not even its first gives it
// PerDestination: with a cap above it, the loop would not claim again until a request was answered; with
// one below it, the messages beyond its cap would be held. A claim is a round trip to the store, during
// which the loop starts nothing: with nothing held, a service that answers quickly had its slots free and
// idle while each claim ran (a 20,000-message drain on SQLite spent most of its time so, on a machine half
// idle: issue 12). A destination that answers slowly, or not at all, answers nothing between claims, and so
// is never claimed ahead, and holds no more of Concurrency than its own requests.
func (d *Dispatcher) claim(ctx context.Context, now time.Time, limit int, st *loopState) ([]Message, ClaimFilter, error) {
	f := ClaimFilter{PerDestination: d.opts.PerDestination, Room: map[mapping.Destination]int{}}
	room := func(dest mapping.Destination) {
		if _, ok := f.Room[dest]; !ok {
			n := d.inFlight(dest)
			ahead := min(st.answered[dest], n)
			f.Room[dest] = max(n+ahead-st.perDest[dest]-len(st.held[dest]), 0)
		}
	}
	for dest := range d.opts.InFlight { // never given PerDestination, not even by its first claim
		room(dest)
	}
	for dest := range st.perDest {
		room(dest)
	}
	for dest := range st.held {
		room(dest)
	}
	for dest := range st.answered {
		room(dest)
	}
	clear(st.answered)
	msgs, err := d.store.ClaimMessages(ctx, d.opts.Owner, now, d.opts.Lease, limit, f)
	return msgs, f, err
}

// inFlight is the most requests dest may have in flight at once: its own cap (InFlight), else PerDestination.
func (d *Dispatcher) inFlight(dest mapping.Destination) int {
	if n, ok := d.opts.InFlight[dest]; ok {
		return n
	}
	return d.opts.PerDestination
}

// roomBound reports whether filter f may have kept a claim that returned msgs from messages it would
// otherwise have taken: a destination given no room, or one that got as many messages as it had room for.
func roomBound(f ClaimFilter, msgs []Message) bool {
	got := map[mapping.Destination]int{}
	for _, m := range msgs {
		got[m.Destination]++
	}
	for dest, room := range f.Room {
		if room <= 0 || got[dest] >= room {
			return true
		}
	}
	for dest, n := range got {
		if _, ok := f.Room[dest]; !ok && f.PerDestination > 0 && n >= f.PerDestination {
			return true
		}
	}
	return false
}

// heldRecheck is how long after its claim a held message (claimed ahead, or again during its attempt) is
// started only once the pauses in force have been read again: a destination paused since then gets no attempt
// (Pause), however long its held messages waited for room. Held ahead for a destination that answers quickly,
// a message starts within milliseconds of its claim, as one claimed with room would.
const heldRecheck = time.Second

// startHeld starts held messages whose destination has room. A held message whose lease would run out
// during an attempt is dropped: its lease expires and it is claimed again. So is one claimed heldRecheck or
// longer ago whose destination has been paused since: a claim does not take it while the pause holds.
func (d *Dispatcher) startHeld(ctx, dctx context.Context, log *slog.Logger, st *loopState, done chan<- finished, now time.Time) {
	var paused map[mapping.Destination]bool // read at most once, when a held message is that old
	for dest, q := range st.held {
		for len(q) > 0 && st.perDest[dest] < d.inFlight(dest) {
			m := q[0]
			q = q[1:]
			st.nHeld--
			if !m.LeaseUntil.IsZero() && now.Add(d.limit).After(m.LeaseUntil) {
				delete(st.active, m.ID)
				log.Warn("outbox: held message's lease too short to deliver; leaving it to expire", "message_id", m.ID,
					"referral_id", m.ReferralID, "destination", dest.String())
				continue
			}
			if !m.LeaseUntil.IsZero() && now.Sub(m.LeaseUntil.Add(-d.opts.Lease)) >= heldRecheck {
				if paused == nil {
					paused = d.pausedNow(ctx, log)
				}
				if paused[dest] {
					delete(st.active, m.ID)
					log.Info("outbox: held message's destination was paused; leaving its lease to expire", "message_id", m.ID,
						"referral_id", m.ReferralID, "destination", dest.String())
					continue
				}
			}
			d.start(dctx, log, st, done, m)
		}
		if len(q) == 0 {
			delete(st.held, dest)
		} else {
			st.held[dest] = q
		}
	}
}

// pausedNow reads the destinations paused now. When the store cannot say, it says none (and logs it): a held
// message is then delivered, as it would have been had it been started at its claim.
func (d *Dispatcher) pausedNow(ctx context.Context, log *slog.Logger) map[mapping.Destination]bool {
	out := map[mapping.Destination]bool{}
	ps, err := d.store.ListPauses(ctx)
	if err != nil {
		log.Warn("outbox: could not read the pauses before starting held messages", "err", err)
		return out
	}
	for _, p := range ps {
		out[p.Destination] = true
	}
	return out
}

// start delivers m in a goroutine of its own. Its destination's slot, and its place of Concurrency, are
// taken until the destination has answered: recording the attempt (which holds the lease, and so the
// message's chain) keeps neither a small service from its next request nor, until recordingAhead attempts
// wait, the dispatcher from its next claim (free).
func (d *Dispatcher) start(dctx context.Context, log *slog.Logger, st *loopState, done chan<- finished, m Message) {
	st.running++
	st.perDest[m.Destination]++
	st.calling[m.ID] = true
	rec, id, dest := st.rec, m.ID, m.Destination
	go func() {
		defer func() { done <- finished{id: id, dest: dest} }()
		d.deliver(dctx, log, rec, m, func() { done <- finished{id: id, dest: dest, answered: true} })
	}()
}

// shutdown waits up to ShutdownTimeout for running deliveries, cancels the rest, and releases every
// message this owner still leases.
func (d *Dispatcher) shutdown(ctx context.Context, log *slog.Logger, st *loopState, done <-chan finished, cancelDeliveries context.CancelFunc) error {
	log.Info("outbox dispatcher stopping", "in_flight", st.running, "held", st.nHeld) // held ones are released below
	grace := time.NewTimer(d.opts.ShutdownTimeout)
	defer grace.Stop()
	for st.running > 0 {
		select {
		case f := <-done:
			st.finish(f)
		case <-grace.C:
			log.Warn("outbox: shutdown timeout; cancelling in-flight deliveries", "in_flight", st.running)
			cancelDeliveries()
		}
	}
	cancelDeliveries()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeCallTimeout)
	defer cancel()
	n, err := d.store.ReleaseMessages(rctx, d.opts.Owner, d.opts.Clock())
	if err != nil {
		return fmt.Errorf("outbox: releasing leased messages on shutdown: %w", err)
	}
	log.Info("outbox dispatcher stopped", "released", n)
	return nil
}

// MarkDelivered is the ReferralUpdate a successful delivery to a community service applies:
// businessStatus delivered (ErrNoChange when it already is).
func MarkDelivered(cur Referral) (mapping.Referral, []mapping.Event, error) {
	return setBusinessStatus(cur, mapping.BusinessDelivered)
}

// MarkDeliveryFailed is the ReferralUpdate a dead-lettered delivery to a community service applies:
// businessStatus delivery-failed (ErrNoChange when it already is).
func MarkDeliveryFailed(cur Referral) (mapping.Referral, []mapping.Event, error) {
	return setBusinessStatus(cur, mapping.BusinessDeliveryFailed)
}

// QueuedAgain is the ReferralUpdate the admin path passes in ReplayRequest.Update when it replays messages
// to community services: businessStatus back to queued (ErrNoChange when it already is), so that the GP
// side no longer sees delivery-failed while the replay is pending.
func QueuedAgain(cur Referral) (mapping.Referral, []mapping.Event, error) {
	return setBusinessStatus(cur, mapping.BusinessQueued)
}

func setBusinessStatus(cur Referral, s mapping.BusinessStatus) (mapping.Referral, []mapping.Event, error) {
	if cur.BusinessStatus == s {
		return cur.Referral, nil, ErrNoChange
	}
	next := cur.Referral
	next.BusinessStatus = s
	return next, nil, nil
}

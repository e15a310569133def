package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/socialrx/socialrx/mapping"
)

func TestClassifyStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code int
		want class
	}{
		{200, classDelivered}, {201, classDelivered}, {202, classDelivered}, {204, classDelivered}, {299, classDelivered},
		{100, classPermanent}, {0, classPermanent},
		{301, classPermanent}, {302, classPermanent}, {304, classPermanent}, {307, classPermanent}, {308, classPermanent},
		{400, classPermanent}, {401, classPermanent}, {403, classPermanent}, {404, classPermanent}, {405, classPermanent},
		{409, classPermanent}, {410, classPermanent}, {413, classPermanent}, {415, classPermanent}, {422, classPermanent},
		{408, classRetry}, {429, classRetry},
		{500, classRetry}, {501, classRetry}, {502, classRetry}, {503, classRetry}, {504, classRetry}, {599, classRetry},
		{600, classPermanent}, {999, classPermanent},
	}
	for _, tt := range tests {
		if got := classifyStatus(tt.code); got != tt.want {
			t.Errorf("classifyStatus(%d) = %q, want %q", tt.code, got, tt.want)
		}
	}
}

// TestEnumsWalk walks every value of the package's delivery enums.
func TestEnumsWalk(t *testing.T) {
	t.Parallel()
	for _, c := range []class{classDelivered, classRetry, classPermanent} {
		switch c {
		case classDelivered, classRetry, classPermanent:
		}
		if c == "" {
			t.Error("empty class")
		}
	}
	seen := map[Outcome]bool{}
	for _, o := range []Outcome{OutcomeDelivered, OutcomeRetry, OutcomeDead, OutcomeLeaseLost, OutcomeReleased, OutcomeStoreError} {
		if o == "" || seen[o] {
			t.Errorf("outcome %q empty or duplicate", o)
		}
		seen[o] = true
		var buf strings.Builder
		d := NewDispatcher(nopStore{}, DirectoryEndpoints(mapping.Directory{}), DispatcherOptions{Logger: testLogger(&buf)})
		d.report(d.opts.Logger, AttemptReport{MessageID: "m", Outcome: o})
		if !strings.Contains(buf.String(), "outcome="+string(o)) {
			t.Errorf("report(%q) logged %q", o, buf.String())
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	t.Parallel()
	o, err := DispatcherOptions{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.Owner, "dispatcher-") || o.Clock == nil || o.Jitter == nil || o.Backoff == nil ||
		o.HTTPClient == nil || o.Logger == nil {
		t.Errorf("defaults not filled: %+v", o)
	}
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"Timeout", o.Timeout, 10 * time.Second},
		{"QuickRetryWait", o.QuickRetryWait, 2 * time.Second},
		{"Lease", o.Lease, 68 * time.Second}, // 2 × the attempt limit, at least DefaultLease
		{"RetryBudget", o.RetryBudget, 72 * time.Hour},
		{"MaxRetryAfter", o.MaxRetryAfter, time.Hour},
		{"SafetyPoll", o.SafetyPoll, 2 * time.Second},
		{"ShutdownTimeout", o.ShutdownTimeout, 10 * time.Second},
		{"backoff(1)", o.Backoff(1), 10 * time.Second},
		{"backoff(99)", o.Backoff(99), 4 * time.Hour},
		{"attempt limit", attemptLimit(o), 34 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	if o.QuickRetries != 2 || o.Concurrency != 32 || o.PerDestination != 8 || o.Version != "dev" {
		t.Errorf("counts: retries %d concurrency %d per destination %d version %q", o.QuickRetries, o.Concurrency, o.PerDestination, o.Version)
	}
	if c := o.HTTPClient; c.RetryMax != 2 || c.HTTPClient.Timeout != 10*time.Second || c.Logger != nil || c.HTTPClient.CheckRedirect == nil {
		t.Errorf("default HTTP client: %+v", c)
	}
	a, _ := DispatcherOptions{}.withDefaults()
	if a.Owner == o.Owner {
		t.Error("two dispatchers got the same default owner id")
	}
	n, err := DispatcherOptions{QuickRetries: -1}.withDefaults()
	if err != nil || n.QuickRetries != 0 || n.HTTPClient.RetryMax != 0 || attemptLimit(n) != 10*time.Second {
		t.Errorf("QuickRetries -1: %d, %v", n.QuickRetries, err)
	}
}

func TestOptionsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts DispatcherOptions
		want string
	}{
		{"negative timeout", DispatcherOptions{Timeout: -time.Second}, "Timeout must not be negative"},
		{"negative lease", DispatcherOptions{Lease: -time.Second}, "Lease must not be negative"},
		{"negative concurrency", DispatcherOptions{Concurrency: -1}, "Concurrency must not be negative"},
		{"negative per destination", DispatcherOptions{PerDestination: -1}, "PerDestination must not be negative"},
		{"negative budget", DispatcherOptions{RetryBudget: -1}, "RetryBudget must not be negative"},
		{"negative retry-after cap", DispatcherOptions{MaxRetryAfter: -1}, "MaxRetryAfter must not be negative"},
		{"negative poll", DispatcherOptions{SafetyPoll: -1}, "SafetyPoll must not be negative"},
		{"negative shutdown", DispatcherOptions{ShutdownTimeout: -1}, "ShutdownTimeout must not be negative"},
		{"negative retry wait", DispatcherOptions{QuickRetryWait: -1}, "QuickRetryWait must not be negative"},
		{"lease shorter than an attempt", DispatcherOptions{Lease: 30 * time.Second}, "Lease (30s) must exceed the longest attempt (34s"},
		{"lease equal to an attempt", DispatcherOptions{Lease: 5 * time.Second, Timeout: 5 * time.Second, QuickRetries: -1}, "must exceed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDispatcher(nopStore{}, DirectoryEndpoints(mapping.Directory{}), tt.opts)
			err := d.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if err := NewDispatcher(nil, DirectoryEndpoints(mapping.Directory{}), DispatcherOptions{}).Run(context.Background()); err == nil {
		t.Error("nil store accepted")
	}
	if err := NewDispatcher(nopStore{}, nil, DispatcherOptions{}).Run(context.Background()); err == nil {
		t.Error("nil resolver accepted")
	}
}

func TestBusinessStatusUpdates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fn   ReferralUpdate
		from mapping.BusinessStatus
		want mapping.BusinessStatus
		same bool
	}{
		{"delivered from queued", MarkDelivered, mapping.BusinessQueued, mapping.BusinessDelivered, false},
		{"delivered again", MarkDelivered, mapping.BusinessDelivered, mapping.BusinessDelivered, true},
		{"failed from queued", MarkDeliveryFailed, mapping.BusinessQueued, mapping.BusinessDeliveryFailed, false},
		{"failed again", MarkDeliveryFailed, mapping.BusinessDeliveryFailed, mapping.BusinessDeliveryFailed, true},
		{"failed from none", MarkDeliveryFailed, "", mapping.BusinessDeliveryFailed, false},
		{"queued after failure", QueuedAgain, mapping.BusinessDeliveryFailed, mapping.BusinessQueued, false},
		{"queued again", QueuedAgain, mapping.BusinessQueued, mapping.BusinessQueued, true},
	}
	for _, tt := range tests {
		cur := Referral{Referral: mapping.Referral{BusinessStatus: tt.from, Record: mapping.Record{ID: "r1", Version: 3, Status: mapping.StatusAccepted}}}
		next, events, err := tt.fn(cur)
		if tt.same != errors.Is(err, ErrNoChange) || (!tt.same && err != nil) {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if next.BusinessStatus != tt.want || next.Record.Status != mapping.StatusAccepted || next.Record.Version != 3 || len(events) != 0 {
			t.Errorf("%s: next = %+v, events %v", tt.name, next, events)
		}
	}
}

func TestShortError(t *testing.T) {
	t.Parallel()
	long := errors.New(strings.Repeat("x", 500))
	tests := []struct {
		err  error
		want string
	}{
		{&url.Error{Op: "Post", URL: "https://user:token@svc.example/hook?key=secret", Err: errors.New("connection refused")}, "connection refused"},
		{fmt.Errorf("giving up: %w", &url.Error{Op: "Post", URL: "https://svc.example/?k=s", Err: context.DeadlineExceeded}), "timeout"},
		{&net.OpError{Op: "dial", Err: timeoutErr{}}, "timeout"},
		{long, strings.Repeat("x", maxErrorLen)},
	}
	for _, tt := range tests {
		if got := shortError(tt.err); got != tt.want {
			t.Errorf("shortError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if s := statusError(302); s != "HTTP 302 Found (redirects are not followed)" {
		t.Errorf("statusError(302) = %q", s)
	}
	if s := statusError(599); s != "HTTP 599" {
		t.Errorf("statusError(599) = %q", s)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestQuickRetries exercises the default client's in-attempt policy against real loopback receivers.
func TestQuickRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		responses []func(w http.ResponseWriter)
		wantCode  int
		wantCalls int32
	}{
		{"500 then 200 inside one attempt", []func(http.ResponseWriter){status(500, ""), status(200, "")}, 200, 2},
		{"503 three times: last response passed through", []func(http.ResponseWriter){status(503, ""), status(503, ""), status(503, "")}, 503, 3},
		{"429 with a short Retry-After is retried", []func(http.ResponseWriter){status(429, "0"), status(204, "")}, 204, 2},
		{"429 without Retry-After is left to the durable schedule", []func(http.ResponseWriter){status(429, ""), status(200, "")}, 429, 1},
		{"long Retry-After is left to the durable schedule", []func(http.ResponseWriter){status(503, "120"), status(200, "")}, 503, 1},
		{"400 is not retried", []func(http.ResponseWriter){status(400, ""), status(200, "")}, 400, 1},
		{"redirect is not followed", []func(http.ResponseWriter){redirect("/elsewhere"), status(200, "")}, 302, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := calls.Add(1) - 1
				tt.responses[min(int(i), len(tt.responses)-1)](w)
			}))
			defer srv.Close()
			c := newHTTPClient(5*time.Second, 2, 5*time.Millisecond, cleanhttp.DefaultPooledTransport())
			req, err := newTestRequest(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.wantCode || calls.Load() != tt.wantCalls {
				t.Errorf("status %d after %d calls, want %d after %d", resp.StatusCode, calls.Load(), tt.wantCode, tt.wantCalls)
			}
		})
	}
}

func TestQuickRetryableError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New("connection reset by peer"), true},
		{&url.Error{Op: "Post", URL: "u", Err: errors.New("EOF")}, true},
		{&url.Error{Op: "Post", URL: "u", Err: context.DeadlineExceeded}, false},
		{&url.Error{Op: "Post", URL: "u", Err: timeoutErr{}}, false},
		{context.Canceled, false},
	}
	for _, tt := range tests {
		if got := quickRetryableError(tt.err); got != tt.want {
			t.Errorf("quickRetryableError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	policy := quickRetryPolicy(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if retry, err := policy(ctx, nil, errors.New("x")); retry || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: retry %v err %v", retry, err)
	}
}

// A longer Timeout alone must not make the options invalid: the unset lease follows the attempt limit. An
// explicit lease shorter than one attempt is refused.
func TestLeaseFollowsTimeout(t *testing.T) {
	t.Parallel()
	o, err := DispatcherOptions{Timeout: 20 * time.Second}.withDefaults()
	if err != nil {
		t.Fatalf("timeout 20s without a lease: %v", err)
	}
	if limit := attemptLimit(o); o.Lease != 2*limit || limit != 64*time.Second {
		t.Errorf("lease %s, attempt limit %s", o.Lease, limit)
	}
	if err := (DispatcherOptions{Timeout: 20 * time.Second, Lease: 30 * time.Second}).Validate(); err == nil {
		t.Error("a 30s lease with a 20s timeout must be refused")
	}
}

// TestRoomBound: a claim that returned fewer messages than asked took everything claimable only when no
// destination's room could have cut it short.
func TestRoomBound(t *testing.T) {
	walks := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	debt := mapping.Destination{Kind: mapping.DestinationService, ID: "debt"}
	msgs := func(ds ...mapping.Destination) []Message {
		var ms []Message
		for i, d := range ds {
			ms = append(ms, Message{ID: fmt.Sprint(i), Destination: d})
		}
		return ms
	}
	for _, c := range []struct {
		name string
		f    ClaimFilter
		got  []Message
		want bool
	}{
		{"nothing came back, every destination had room", ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{walks: 7}}, nil, false},
		{"a destination had no room", ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{walks: 0}}, nil, true},
		{"a destination filled its room", ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{walks: 2}}, msgs(walks, walks), true},
		{"a destination below its room", ClaimFilter{PerDestination: 8, Room: map[mapping.Destination]int{walks: 2}}, msgs(walks), false},
		{"a new destination filled PerDestination", ClaimFilter{PerDestination: 2}, msgs(debt, debt), true},
		{"a new destination below PerDestination", ClaimFilter{PerDestination: 2}, msgs(debt, walks), false},
		{"no limits", ClaimFilter{}, msgs(debt, debt, debt), false},
	} {
		if got := roomBound(c.f, c.got); got != c.want {
			t.Errorf("%s: roomBound = %v, want %v", c.name, got, c.want)
		}
	}
}

// scriptedClaims is a store whose claims return, one call each, the message lists queued on claims (nothing
// once they run out).
type scriptedClaims struct {
	nopStore
	claims chan []Message
}

func (s scriptedClaims) ClaimMessages(context.Context, string, time.Time, time.Duration, int, ClaimFilter) ([]Message, error) {
	select {
	case ms := <-s.claims:
		return ms, nil
	default:
		return nil, nil
	}
}

// TestHeldMessageClaimedAgainStartsWithItsNewLease: a message held for its destination's room (claimed ahead)
// whose lease ran out while it waited (the clock jumped) is claimed again by its own dispatcher: the
// destination answered twice since the last claim, so the claim gives it room. The new claim takes the held
// one's place, and the message is sent, with its new lease, once a request to the destination is answered.
// Before, the new claim waited for an attempt of the message that was not running, the held copy was dropped
// for its old lease, and the message was sent by no one until its new lease ran out too, with a place of
// Concurrency lost meanwhile.
func TestHeldMessageClaimedAgainStartsWithItsNewLease(t *testing.T) {
	t.Parallel()
	sent := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent <- r.Header.Get(HeaderWebhookID)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	walks := mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}
	now := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	store := scriptedClaims{claims: make(chan []Message, 1)}
	d := NewDispatcher(store, EndpointFunc(func(mapping.Destination) (Endpoint, bool) {
		return Endpoint{URL: srv.URL, Secret: "whsec_c29jaWFscngtdGVzdC1zaWduaW5nLWtleS0zMmJ5dGU="}, true
	}), DispatcherOptions{Concurrency: 8, PerDestination: 2, Clock: func() time.Time { return now },
		Jitter: func(time.Duration) time.Duration { return 0 }, QuickRetries: -1, Logger: testLogger(io.Discard)})
	if d.optsErr != nil {
		t.Fatal(d.optsErr)
	}
	held := Message{ID: "h", ReferralID: "r", Destination: walks, Type: "referral.created",
		Payload: []byte(`{}`), LeaseUntil: now.Add(-time.Minute)} // its lease ran out while it waited
	again := held
	again.LeaseUntil = now.Add(d.opts.Lease)
	store.claims <- []Message{again}

	ctx := context.Background()
	rec, stopRecording := newCompleter(ctx, store, 8)
	defer stopRecording()
	// Two requests in flight to walks (a and b, never answered here), the message held behind them, and two
	// requests answered since the last claim: the claim gives walks room for one more.
	st := &loopState{
		active: map[string]bool{"a": true, "b": true, "h": true}, calling: map[string]bool{"a": true, "b": true},
		again: map[string]Message{}, running: 2, perDest: map[mapping.Destination]int{walks: 2},
		answered: map[mapping.Destination]int{walks: 2}, held: map[mapping.Destination][]Message{walks: {held}},
		nHeld: 1, rec: rec,
	}
	done := make(chan finished, 16)
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	log := d.opts.Logger
	if err := d.fill(ctx, ctx, log, st, done, due); err != nil {
		t.Fatal(err)
	}
	if len(store.claims) != 0 {
		t.Fatal("the loop did not claim")
	}
	st.finish(finished{id: "a", dest: walks, answered: true}) // walks answers a: its place is free
	d.startHeld(ctx, ctx, log, st, done, now)
	if !st.calling["h"] {
		t.Fatalf("h not sent once walks had room (held %v, again %v, nHeld %d)", st.held, st.again, st.nHeld)
	}
	if st.nHeld != 0 || len(st.again) != 0 || len(st.held) != 0 {
		t.Errorf("h sent: nHeld %d, again %v, held %v; want nothing held", st.nHeld, st.again, st.held)
	}
	select {
	case id := <-sent:
		if id != "h" {
			t.Fatalf("sent %q, want h", id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("h's request never reached walks")
	}
	for over := false; !over; { // its attempt is recorded before the completer stops
		select {
		case f := <-done:
			over = f.id == "h" && !f.answered
		case <-time.After(20 * time.Second):
			t.Fatal("h's attempt never ended")
		}
	}
}

// TestOptionsInFlight: a destination's own cap must be at least 1; an unset Concurrency makes room for the
// widest cap, and the default transports keep that many idle connections; the dispatcher keeps its own copy.
func TestOptionsInFlight(t *testing.T) {
	t.Parallel()
	wide, narrow := mapping.Destination{Kind: mapping.DestinationService, ID: "wide"},
		mapping.Destination{Kind: mapping.DestinationService, ID: "narrow"}
	caps := map[mapping.Destination]int{wide: 48, narrow: 1}
	o, err := DispatcherOptions{InFlight: caps}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Concurrency != 48 || o.PerDestination != DefaultPerDestination {
		t.Errorf("concurrency %d, per destination %d; want 48 and %d", o.Concurrency, o.PerDestination, DefaultPerDestination)
	}
	if tr, ok := o.HTTPClient.HTTPClient.Transport.(*http.Transport); !ok || tr.MaxIdleConnsPerHost < 48 {
		t.Errorf("default transport keeps %d idle connections per host, want at least 48", tr.MaxIdleConnsPerHost)
	}
	caps[wide] = 2
	if o.InFlight[wide] != 48 {
		t.Errorf("the caller's map changed the dispatcher's cap: %d", o.InFlight[wide])
	}
	if o, err := (DispatcherOptions{Concurrency: 4, InFlight: caps}).withDefaults(); err != nil || o.Concurrency != 4 {
		t.Errorf("a Concurrency given is kept: %d, %v", o.Concurrency, err)
	}
	caps[narrow] = 0
	err = DispatcherOptions{InFlight: caps}.Validate()
	if err == nil || !strings.Contains(err.Error(), "InFlight[service:narrow] must be at least 1 (got 0)") {
		t.Errorf("a cap of 0: %v", err)
	}
}

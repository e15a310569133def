package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
)

// The dispatcher tests run against the real SQLite store in t.TempDir() and real loopback receivers. Time is
// an injected clock that only the test moves; jitter is zero; the safety poll is an hour, so every delivery
// below is driven by a commit, a completion, a due timer or an explicit Wake, never by polling.

// testSecret is a Standard Webhooks secret (base64 of "socialrx-test-signing-key-32byte").
const testSecret = "whsec_c29jaWFscngtdGVzdC1zaWduaW5nLWtleS0zMmJ5dGU="

// guard bounds every wait: a failing test fails instead of hanging. Passing tests never wait this long.
const guard = 20 * time.Second

// patientName appears in every payload; it must never reach a log line.
const patientName = "Ada Lovelace"

func base() time.Time { return time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC) }

// fakeClock is the injected clock: it moves only when the test says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// hit is one request a receiver got.
type hit struct {
	ID, Timestamp, Signature string
	Header                   http.Header
	Body                     []byte
	VerifyErr                error
}

// receiver is a real loopback webhook receiver that verifies signatures with outbox.Verify and answers as
// its respond function says (204 by default). Every request is reported on hits before it is answered.
type receiver struct {
	URL     string
	hits    chan hit
	release chan struct{} // closed at cleanup: unblocks handlers that wait
	mu      sync.Mutex
	n       int
}

type respondFunc func(n int, h hit, w http.ResponseWriter, r *http.Request, release <-chan struct{})

func newReceiver(t *testing.T, clock func() time.Time, respond respondFunc) *receiver {
	t.Helper()
	rc := &receiver{hits: make(chan hit, 256), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h := hit{
			ID: r.Header.Get(outbox.HeaderWebhookID), Timestamp: r.Header.Get(outbox.HeaderWebhookTimestamp),
			Signature: r.Header.Get(outbox.HeaderWebhookSignature), Header: r.Header.Clone(), Body: body,
			VerifyErr: outbox.Verify(testSecret, r.Header, body, clock(), time.Minute),
		}
		rc.mu.Lock()
		n := rc.n
		rc.n++
		rc.mu.Unlock()
		rc.hits <- h
		if respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		respond(n, h, w, r, rc.release)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(rc.release) }) // runs before srv.Close
	rc.URL = srv.URL
	return rc
}

// next returns the receiver's next request.
func (rc *receiver) next(t *testing.T) hit {
	t.Helper()
	select {
	case h := <-rc.hits:
		return h
	case <-time.After(guard):
		t.Fatal("timed out waiting for a webhook request")
		return hit{}
	}
}

// answer returns a respondFunc that writes codes[n] (the last one repeatedly) with an optional Retry-After.
func answer(retryAfter string, codes ...int) respondFunc {
	return func(n int, _ hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		code := codes[min(n, len(codes)-1)]
		if retryAfter != "" && code != http.StatusOK && code != http.StatusNoContent {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
	}
}

// blockFirst blocks the first request until the client gives up (or cleanup), then answers 204.
func blockFirst(n int, _ hit, w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	if n == 0 {
		select {
		case <-r.Context().Done():
			return
		case <-release:
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// holdFirst returns a respondFunc that holds the first request until the test closes release (or the client
// gives up), and answers every request code.
func holdFirst(release <-chan struct{}, code int) respondFunc {
	return func(n int, _ hit, w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		if n == 0 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(code)
	}
}

// blockAll blocks every request until the client gives up (or cleanup).
func blockAll(_ int, _ hit, w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	select {
	case <-r.Context().Done():
	case <-release:
		w.WriteHeader(http.StatusNoContent)
	}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one test's store, clock and endpoint directory.
type env struct {
	t     *testing.T
	path  string
	store *sqlite.Store
	clock *fakeClock
	logs  *syncBuffer

	mu        sync.Mutex
	endpoints map[mapping.Destination]outbox.Endpoint
	// wrap, if set, is what the dispatchers start uses see of the store (a store slowed down, say).
	wrap func(outbox.Store) outbox.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t: t, path: filepath.Join(t.TempDir(), "outbox.db"), clock: &fakeClock{now: base()}, logs: &syncBuffer{},
		endpoints: map[mapping.Destination]outbox.Endpoint{},
	}
	e.open()
	t.Cleanup(func() {
		s := e.logs.String()
		if strings.Contains(s, patientName) || strings.Contains(s, testSecret) {
			t.Errorf("patient data or a secret reached the logs:\n%s", s)
		} else if t.Failed() {
			t.Logf("dispatcher logs:\n%s", s)
		}
	})
	return e
}

// open opens (or reopens) the store file.
func (e *env) open() {
	e.t.Helper()
	s, err := sqlite.Open(context.Background(), e.path, sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	e.store = s
}

func service(id string) mapping.Destination {
	return mapping.Destination{Kind: mapping.DestinationService, ID: id}
}

// route points a destination at an endpoint (looked up at delivery time).
func (e *env) route(d mapping.Destination, ep outbox.Endpoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.endpoints[d] = ep
}

// serve routes service id to rc with the test secret.
func (e *env) serve(id string, rc *receiver) {
	e.route(service(id), outbox.Endpoint{URL: rc.URL, Secret: testSecret})
}

func (e *env) resolver() outbox.EndpointResolver {
	return outbox.EndpointFunc(func(d mapping.Destination) (outbox.Endpoint, bool) {
		e.mu.Lock()
		defer e.mu.Unlock()
		ep, ok := e.endpoints[d]
		return ep, ok
	})
}

// ev is one event of a test referral.
type ev struct {
	dest mapping.Destination
	typ  mapping.EventType
}

func created(service string) ev {
	return ev{dest: mapping.Destination{Kind: mapping.DestinationService, ID: service}, typ: mapping.EventReferralCreated}
}

// refer commits a referral created at the clock's now, with its events, and returns the message ids.
func (e *env) refer(id string, events ...ev) []string {
	e.t.Helper()
	return e.referAt(id, e.clock.Now(), events...)
}

func (e *env) referAt(id string, at time.Time, events ...ev) []string {
	e.t.Helper()
	in := mapping.Intake{
		Referral: mapping.Referral{
			Record: mapping.Record{
				ID: id, ServiceRequestID: "sr-" + id, TaskID: "task-" + id, Status: mapping.StatusRequested,
				Priority: "routine", CreatedAt: at, Patient: mapping.Person{Name: patientName, NHSNumber: "9434765919"},
			},
			PracticeODS: "A81001", BusinessStatus: mapping.BusinessQueued,
			Patient: mapping.Reference{Reference: "Patient/p-" + id},
		},
		ServiceRequest: json.RawMessage(`{"resourceType":"ServiceRequest","id":"sr-` + id + `"}`),
		Identifiers:    []mapping.Identifier{{System: "https://example.org/referrals", Value: id}},
		Fingerprint:    "fp-" + id,
	}
	var ids []string
	for i, x := range events {
		mid := fmt.Sprintf("msg-%s-%d", id, i+1)
		payload := fmt.Sprintf(`{"type":%q,"timestamp":%q,"data":{"id":%q,"patient":{"name":%q}}}`,
			x.typ, at.Format(time.RFC3339), id, patientName)
		in.Events = append(in.Events, mapping.Event{ID: mid, Type: x.typ, Destination: x.dest, Payload: json.RawMessage(payload)})
		ids = append(ids, mid)
	}
	res, err := e.store.CreateReferral(context.Background(), in)
	if err != nil {
		e.t.Fatalf("CreateReferral: %v", err)
	}
	if !res.Created {
		e.t.Fatalf("referral %s already existed", id)
	}
	return ids
}

func (e *env) message(id string) outbox.MessageDetail {
	e.t.Helper()
	d, err := e.store.GetMessage(context.Background(), id)
	if err != nil {
		e.t.Fatalf("GetMessage(%s): %v", id, err)
	}
	return d
}

func (e *env) referral(id string) outbox.Referral {
	e.t.Helper()
	r, err := e.store.GetReferral(context.Background(), id)
	if err != nil {
		e.t.Fatalf("GetReferral(%s): %v", id, err)
	}
	return r
}

// run is one running dispatcher.
type run struct {
	t       *testing.T
	d       *outbox.Dispatcher
	reports chan outbox.AttemptReport
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	err     error
	stash   map[string][]outbox.AttemptReport // reports read but not yet asked for; test goroutine only
}

// start runs a dispatcher over the env's current store with test options, changed by mod.
func (e *env) start(mod func(o *outbox.DispatcherOptions)) *run {
	e.t.Helper()
	r := &run{t: e.t, reports: make(chan outbox.AttemptReport, 1024), done: make(chan error, 1),
		stash: map[string][]outbox.AttemptReport{}}
	opts := outbox.DispatcherOptions{
		Owner:           "owner-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Clock:           e.clock.Now,
		Jitter:          func(time.Duration) time.Duration { return 0 },
		QuickRetries:    -1, // durable retries only: every retry below is scheduled and made due by the test
		Timeout:         5 * time.Second,
		SafetyPoll:      time.Hour,
		ShutdownTimeout: 200 * time.Millisecond,
		Version:         "test",
		Logger:          slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observer:        outbox.ObserverFunc(func(a outbox.AttemptReport) { r.reports <- a }),
	}
	if mod != nil {
		mod(&opts)
	}
	var st outbox.Store = e.store
	if e.wrap != nil {
		st = e.wrap(st)
	}
	r.d = outbox.NewDispatcher(st, e.resolver(), opts)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.d.Run(ctx) }()
	e.t.Cleanup(func() {
		if err := r.stop(); err != nil {
			e.t.Errorf("dispatcher Run: %v", err)
		}
	})
	return r
}

// stop cancels the dispatcher and returns what Run returned.
func (r *run) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(guard):
			r.err = errors.New("Run did not return after cancel")
		}
	})
	return r.err
}

// waitFor returns the next report about message id, in the order the dispatcher made them (reports about
// other messages are kept for later calls).
func (r *run) waitFor(id string) outbox.AttemptReport {
	r.t.Helper()
	if q := r.stash[id]; len(q) > 0 {
		r.stash[id] = q[1:]
		return q[0]
	}
	timeout := time.After(guard)
	for {
		select {
		case a := <-r.reports:
			if a.MessageID == id {
				return a
			}
			r.stash[a.MessageID] = append(r.stash[a.MessageID], a)
		case <-timeout:
			r.t.Fatalf("timed out waiting for an attempt on %s", id)
			return outbox.AttemptReport{}
		}
	}
}

// expect waits for the next report about id and checks its outcome and status code.
func (r *run) expect(id string, outcome outbox.Outcome, code int) outbox.AttemptReport {
	r.t.Helper()
	a := r.waitFor(id)
	if a.Outcome != outcome || a.StatusCode != code {
		r.t.Fatalf("attempt %d on %s: outcome %q status %d (error %q), want %q %d", a.Attempt, id, a.Outcome,
			a.StatusCode, a.Error, outcome, code)
	}
	return a
}

// codes lists the status codes of a message's recorded attempts.
func codes(d outbox.MessageDetail) []int {
	var out []int
	for _, a := range d.Attempts {
		out = append(out, a.StatusCode)
	}
	return out
}

func equalInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestDispatchSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, nil)
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	r := e.start(nil)

	h := rc.next(t)
	a := r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
	if h.VerifyErr != nil {
		t.Errorf("receiver could not verify the signature: %v", h.VerifyErr)
	}
	want := e.message(ids[0]).Message.Payload
	if h.ID != ids[0] || h.Timestamp != strconv.FormatInt(base().Unix(), 10) || !bytes.Equal(h.Body, want) {
		t.Errorf("request: id %q ts %q body %s; want %q %d %s", h.ID, h.Timestamp, h.Body, ids[0], base().Unix(), want)
	}
	if ct, ua := h.Header.Get("Content-Type"), h.Header.Get("User-Agent"); ct != "application/json" || ua != "socialrx/test" {
		t.Errorf("Content-Type %q User-Agent %q", ct, ua)
	}
	if a.Attempt != 1 || a.Destination != service("walks") || a.Type != mapping.EventReferralCreated || a.Latency <= 0 {
		t.Errorf("report %+v", a)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StateDelivered || !d.Message.DeliveredAt.Equal(base()) || d.Message.Attempts != 1 ||
		!equalInts(codes(d), []int{204}) || d.Attempts[0].Error != "" || !d.Attempts[0].StartedAt.Equal(base()) {
		t.Errorf("message after delivery: %+v attempts %+v", d.Message, d.Attempts)
	}
	ref := e.referral("r1")
	if ref.BusinessStatus != mapping.BusinessDelivered || ref.Record.Version != 2 || ref.Record.Status != mapping.StatusRequested {
		t.Errorf("referral: businessStatus %q version %d status %q; want delivered, 2, requested",
			ref.BusinessStatus, ref.Record.Version, ref.Record.Status)
	}
}

func TestDispatchRetryThenSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, answer("", 500, 200))
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	r := e.start(nil)

	first := rc.next(t)
	a := r.expect(ids[0], outbox.OutcomeRetry, 500)
	if !a.NextAttemptAt.Equal(base().Add(10*time.Second)) || a.Error != "HTTP 500 Internal Server Error" {
		t.Errorf("retry report %+v; want next attempt at +10s", a)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StatePending || !d.Message.NextAttemptAt.Equal(base().Add(10*time.Second)) ||
		d.Message.LastError != "HTTP 500 Internal Server Error" || e.referral("r1").BusinessStatus != mapping.BusinessQueued {
		t.Errorf("after the 500: %+v", d.Message)
	}

	e.clock.Advance(10 * time.Second)
	r.d.Wake()
	second := rc.next(t)
	r.expect(ids[0], outbox.OutcomeDelivered, 200)
	if first.ID != second.ID || second.ID != ids[0] {
		t.Errorf("webhook-id changed between attempts: %q, %q", first.ID, second.ID)
	}
	if second.Timestamp != strconv.FormatInt(base().Add(10*time.Second).Unix(), 10) || second.VerifyErr != nil {
		t.Errorf("second attempt: timestamp %s, verify %v", second.Timestamp, second.VerifyErr)
	}
	d = e.message(ids[0])
	if d.Message.State != outbox.StateDelivered || !equalInts(codes(d), []int{500, 200}) || d.Attempts[1].N != 2 {
		t.Errorf("message %+v attempts %+v", d.Message, d.Attempts)
	}
}

func TestDispatchRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       time.Duration
	}{
		{"429 seconds honoured", 429, "120", 120 * time.Second},
		{"429 capped at MaxRetryAfter", 429, "86400", 30 * time.Minute},
		{"429 HTTP-date", 429, base().Add(5 * time.Minute).UTC().Format(http.TimeFormat), 5 * time.Minute},
		{"429 shorter than the backoff", 429, "1", 10 * time.Second},
		{"503 honoured", 503, "600", 10 * time.Minute},
		{"408 without Retry-After", 408, "", 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, e.clock.Now, answer(tt.retryAfter, tt.status, 200))
			e.serve("walks", rc)
			ids := e.refer("r1", created("walks"))
			r := e.start(func(o *outbox.DispatcherOptions) { o.MaxRetryAfter = 30 * time.Minute })

			a := r.expect(ids[0], outbox.OutcomeRetry, tt.status)
			if !a.NextAttemptAt.Equal(base().Add(tt.want)) {
				t.Fatalf("next attempt at %s, want +%s", a.NextAttemptAt.Sub(base()), tt.want)
			}
			e.clock.Set(a.NextAttemptAt.Add(-time.Second))
			r.d.Wake()
			if d := e.message(ids[0]); d.Message.State != outbox.StatePending {
				t.Fatalf("state %s before the retry is due", d.Message.State)
			}
			e.clock.Set(a.NextAttemptAt)
			r.d.Wake()
			r.expect(ids[0], outbox.OutcomeDelivered, 200)
			if n := len(rc.hits); n != 2 {
				t.Errorf("receiver got %d requests, want 2", n)
			}
		})
	}
}

func TestDispatchPermanentFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		respond respondFunc
		code    int
		wantErr string
	}{
		{"400", answer("", 400), 400, "HTTP 400 Bad Request"},
		{"410", answer("", 410), 410, "HTTP 410 Gone"},
		{"redirect not followed", func(_ int, _ hit, w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, 302, "HTTP 302 Found (redirects are not followed)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, e.clock.Now, tt.respond)
			e.serve("walks", rc)
			ids := e.refer("r1", created("walks"))
			r := e.start(nil)

			a := r.expect(ids[0], outbox.OutcomeDead, tt.code)
			if a.Error != tt.wantErr {
				t.Errorf("error %q, want %q", a.Error, tt.wantErr)
			}
			d := e.message(ids[0])
			if d.Message.State != outbox.StateDead || d.Message.LastError != tt.wantErr || !equalInts(codes(d), []int{tt.code}) {
				t.Errorf("message %+v attempts %+v", d.Message, d.Attempts)
			}
			ref := e.referral("r1")
			if ref.BusinessStatus != mapping.BusinessDeliveryFailed || ref.Record.Version != 2 {
				t.Errorf("referral businessStatus %q version %d, want delivery-failed, 2", ref.BusinessStatus, ref.Record.Version)
			}
			if n := len(rc.hits); n != 1 {
				t.Errorf("receiver got %d requests, want 1 (no redirect followed, no retry)", n)
			}
		})
	}
}

func TestDispatchNoEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.route(service("inbox-only"), outbox.Endpoint{})
	e.route(service("bad-url"), outbox.Endpoint{URL: "ftp://example.org/hook", Secret: testSecret})
	e.route(service("bad-secret"), outbox.Endpoint{URL: "http://127.0.0.1:1/hook", Secret: "whsec_"})
	ghost := e.refer("r-ghost", created("ghost"))
	pull := e.refer("r-pull", created("inbox-only"))
	badURL := e.refer("r-url", created("bad-url"))
	badSecret := e.refer("r-secret", created("bad-secret"))
	r := e.start(nil)

	for _, c := range []struct{ id, ref, want string }{
		{ghost[0], "r-ghost", "no endpoint for destination service:ghost"},
		{pull[0], "r-pull", "destination service:inbox-only has no delivery URL (pull-only)"},
		{badURL[0], "r-url", "endpoint URL is not an absolute http(s) URL"},
		{badSecret[0], "r-secret", "endpoint secret: invalid webhook signing secret"},
	} {
		a := r.expect(c.id, outbox.OutcomeDead, 0)
		if a.Error != c.want {
			t.Errorf("%s: error %q, want %q", c.id, a.Error, c.want)
		}
		if d := e.message(c.id); d.Message.State != outbox.StateDead || d.Message.LastError != c.want {
			t.Errorf("%s: %+v", c.id, d.Message)
		}
		if ref := e.referral(c.ref); ref.BusinessStatus != mapping.BusinessDeliveryFailed {
			t.Errorf("%s: businessStatus %q", c.ref, ref.BusinessStatus)
		}
	}
}

func TestDispatchSlowReceiverTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, blockFirst)
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	const timeout = 150 * time.Millisecond
	r := e.start(func(o *outbox.DispatcherOptions) { o.Timeout = timeout })

	a := r.expect(ids[0], outbox.OutcomeRetry, 0)
	if a.Error != "timeout" || a.Latency < timeout || !a.NextAttemptAt.Equal(base().Add(10*time.Second)) {
		t.Errorf("report %+v; want a timeout after %s, retried at +10s", a, timeout)
	}
	if d := e.message(ids[0]); d.Message.State != outbox.StatePending || d.Attempts[0].Error != "timeout" || d.Attempts[0].StatusCode != 0 {
		t.Errorf("message %+v attempts %+v", d.Message, d.Attempts)
	}
	e.clock.Advance(10 * time.Second)
	r.d.Wake()
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
}

func TestDispatchReceiverVerifiesSignature(t *testing.T) {
	t.Parallel()
	verifying := func(_ int, h hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		if h.VerifyErr != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, verifying)
	e.serve("good", rc)
	// "stale" signs with a secret the receiver does not know (for example a rotation applied on one side only).
	e.route(service("stale"), outbox.Endpoint{URL: rc.URL, Secret: "whsec_b3RoZXIta2V5LXRoYXQtdGhlLXJlY2VpdmVyLWRvZXMtbm90LWtub3c="})
	good := e.refer("r-good", created("good"))
	stale := e.refer("r-stale", created("stale"))
	r := e.start(nil)

	r.expect(good[0], outbox.OutcomeDelivered, 200)
	a := r.expect(stale[0], outbox.OutcomeDead, 401)
	if a.Error != "HTTP 401 Unauthorized" {
		t.Errorf("error %q", a.Error)
	}
	// A signature checked against a clock far from the sender's is refused as stale.
	h := http.Header{}
	body := e.message(good[0]).Message.Payload
	sig, err := outbox.Sign(testSecret, good[0], base(), body)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(outbox.HeaderWebhookID, good[0])
	h.Set(outbox.HeaderWebhookTimestamp, strconv.FormatInt(base().Unix(), 10))
	h.Set(outbox.HeaderWebhookSignature, sig)
	if err := outbox.Verify(testSecret, h, body, base().Add(time.Hour), 0); !errors.Is(err, outbox.ErrTimestampOutOfTolerance) {
		t.Errorf("Verify an hour later: %v", err)
	}
}

func TestDispatchOrderPerReferral(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var order []string
	var mu sync.Mutex
	failedOnce := map[string]bool{}
	rc := newReceiver(t, e.clock.Now, func(_ int, h hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, h.ID)
		if h.ID == "msg-r1-1" && !failedOnce[h.ID] {
			failedOnce[h.ID] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.serve("walks", rc)
	r1 := e.refer("r1", created("walks"), ev{dest: service("walks"), typ: mapping.EventReferralCancelled})
	r2 := e.refer("r2", created("walks"))
	r := e.start(nil)

	r.expect(r1[0], outbox.OutcomeRetry, 503)
	// r2 is another referral: it is not held up by r1's retry.
	r.expect(r2[0], outbox.OutcomeDelivered, 200)
	if d := e.message(r1[1]); d.Message.State != outbox.StatePending || len(d.Attempts) != 0 {
		t.Fatalf("r1's second message was tried before its first was delivered: %+v", d)
	}
	e.clock.Advance(10 * time.Second)
	r.d.Wake()
	r.expect(r1[0], outbox.OutcomeDelivered, 200)
	r.expect(r1[1], outbox.OutcomeDelivered, 200)

	mu.Lock()
	all := fmt.Sprint(order)
	var ofR1 []string
	for _, id := range order {
		if strings.HasPrefix(id, "msg-r1-") {
			ofR1 = append(ofR1, id)
		}
	}
	mu.Unlock()
	// r1 and r2 go in parallel (either may arrive first); r1's own messages go strictly in order.
	if got, want := fmt.Sprint(ofR1), fmt.Sprint([]string{r1[0], r1[0], r1[1]}); got != want {
		t.Errorf("r1's requests %s, want %s (all requests: %s)", got, want, all)
	}
	// Two deliveries of one referral bump the Task version once (the second update is ErrNoChange).
	if ref := e.referral("r1"); ref.BusinessStatus != mapping.BusinessDelivered || ref.Record.Version != 2 {
		t.Errorf("r1 businessStatus %q version %d, want delivered, 2", ref.BusinessStatus, ref.Record.Version)
	}
}

func TestDispatchFailingServiceDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := newReceiver(t, e.clock.Now, blockAll)
	fast := newReceiver(t, e.clock.Now, nil)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connections to it are refused
	e.serve("slow", slow)
	e.serve("fast", fast)
	e.route(service("down"), outbox.Endpoint{URL: downURL, Secret: testSecret})
	// Committed first, so they are the oldest due messages.
	var slowIDs, downIDs []string
	for i := range 2 {
		slowIDs = append(slowIDs, e.refer(fmt.Sprintf("slow-%d", i), created("slow"))...)
		downIDs = append(downIDs, e.refer(fmt.Sprintf("down-%d", i), created("down"))...)
	}
	fastIDs := e.refer("fast-0", created("fast"))
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Concurrency = 4
		o.PerDestination = 2
		o.Timeout = time.Minute // the slow service never answers within the test
		o.Lease = 2 * time.Minute
	})

	for _, id := range downIDs {
		if a := r.expect(id, outbox.OutcomeRetry, 0); a.Error == "" {
			t.Errorf("%s: no error recorded", id)
		}
	}
	r.expect(fastIDs[0], outbox.OutcomeDelivered, http.StatusNoContent)
	for range slowIDs {
		slow.next(t) // both slow deliveries are still hanging
	}
	for _, id := range slowIDs {
		if d := e.message(id); d.Message.State != outbox.StateInflight {
			t.Errorf("%s: state %s, want inflight", id, d.Message.State)
		}
	}
}

// TestDispatchSlowBacklogDoesNotStarveOthers: a slow service with more due messages than the dispatcher's
// whole capacity still leaves room for another service, because claims respect PerDestination.
func TestDispatchSlowBacklogDoesNotStarveOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := newReceiver(t, e.clock.Now, blockAll)
	fast := newReceiver(t, e.clock.Now, nil)
	e.serve("slow", slow)
	e.serve("fast", fast)
	for i := range 10 {
		e.refer(fmt.Sprintf("slow-%d", i), created("slow"))
	}
	fastIDs := e.refer("fast-0", created("fast"))
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Concurrency = 4
		o.PerDestination = 2
		o.Timeout = time.Minute
		o.Lease = 2 * time.Minute
	})
	r.expect(fastIDs[0], outbox.OutcomeDelivered, http.StatusNoContent)
	counts, _, err := e.store.CountMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts[outbox.StateInflight] != 2 || counts[outbox.StatePending] != 8 {
		t.Errorf("counts %v: want 2 slow messages in flight and 8 left pending", counts)
	}
}

func TestDispatchLeaseExpiryAfterCrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, nil)
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	// A dispatcher claims the message and dies (kill -9) before recording anything.
	claimed, err := e.store.ClaimMessages(context.Background(), "crashed", base(), time.Minute, 10, outbox.ClaimFilter{})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %d messages", err, len(claimed))
	}
	// Its lease runs out; a new dispatcher (a restarted process) takes the message over.
	e.clock.Advance(time.Minute + time.Second)
	r := e.start(nil)
	h := rc.next(t)
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
	if h.ID != ids[0] {
		t.Errorf("webhook-id %q", h.ID)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StateDelivered || len(d.Attempts) != 1 {
		t.Errorf("message %+v attempts %+v", d.Message, d.Attempts)
	}
	// The crashed owner's late report is refused.
	err = e.store.CompleteAttempt(context.Background(), ids[0], e.clock.Now(), outbox.AttemptResult{
		Attempt: outbox.Attempt{MessageID: ids[0], StartedAt: base(), StatusCode: 200}, Owner: "crashed", State: outbox.StateDelivered,
	})
	if !errors.Is(err, outbox.ErrLeaseLost) {
		t.Errorf("late CompleteAttempt by the crashed owner: %v, want ErrLeaseLost", err)
	}
}

func TestDispatchRestartPicksUpPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, answer("", 503, 200))
	e.serve("walks", rc)
	first := e.refer("r1", created("walks"))
	r := e.start(nil)
	r.expect(first[0], outbox.OutcomeRetry, 503)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	// Accepted while no dispatcher runs.
	second := e.refer("r2", created("walks"))
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}

	e.open()
	e.clock.Advance(10 * time.Second)
	r2 := e.start(nil)
	r2.expect(first[0], outbox.OutcomeDelivered, 200)
	r2.expect(second[0], outbox.OutcomeDelivered, 200)
	if d := e.message(first[0]); !equalInts(codes(d), []int{503, 200}) {
		t.Errorf("attempts %v", codes(d))
	}
}

func TestDispatchRetryBudgetExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, answer("", 503))
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	r := e.start(func(o *outbox.DispatcherOptions) { o.RetryBudget = time.Minute })

	// Attempts at +0s, +10s, +30s, then the last one at the end of the budget (+60s, not +70s).
	var at []time.Duration
	for {
		at = append(at, e.clock.Now().Sub(base()))
		a := r.waitFor(ids[0])
		if a.Outcome == outbox.OutcomeDead {
			if !strings.HasSuffix(a.Error, "retry budget of 1m0s spent") || a.StatusCode != 503 {
				t.Errorf("dead report %+v", a)
			}
			break
		}
		if a.Outcome != outbox.OutcomeRetry || len(at) > 10 {
			t.Fatalf("report %+v", a)
		}
		e.clock.Set(a.NextAttemptAt)
		r.d.Wake()
	}
	if want := "[0s 10s 30s 1m0s]"; fmt.Sprint(at) != want {
		t.Errorf("attempts at %v, want %s", at, want)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StateDead || len(d.Attempts) != 4 || !strings.Contains(d.Message.LastError, "retry budget") {
		t.Errorf("message %+v attempts %d", d.Message, len(d.Attempts))
	}
	if ref := e.referral("r1"); ref.BusinessStatus != mapping.BusinessDeliveryFailed || ref.Record.Version != 2 {
		t.Errorf("businessStatus %q version %d", ref.BusinessStatus, ref.Record.Version)
	}

	// A replay (the admin path) gives it a new budget and shows it queued again; then it is delivered. The
	// fixed receiver answers only once the queued status has been read: the running dispatcher takes the
	// replayed message at once, and its delivery could otherwise be recorded before the read.
	gate := make(chan struct{})
	e.serve("walks", newReceiver(t, e.clock.Now, func(_ int, _ hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		<-gate
		w.WriteHeader(http.StatusNoContent)
	}))
	open := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(open) // before the receiver closes, whatever fails below
	replayed, err := e.store.ReplayMessages(context.Background(), e.clock.Now(), outbox.ReplayRequest{
		IDs: ids, Reason: "receiver fixed", Actor: "ops", Update: outbox.QueuedAgain,
	})
	if err != nil || len(replayed) != 1 {
		t.Fatalf("replay: %v, %d", err, len(replayed))
	}
	if ref := e.referral("r1"); ref.BusinessStatus != mapping.BusinessQueued {
		t.Errorf("after replay businessStatus %q", ref.BusinessStatus)
	}
	open()
	a := r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
	if a.Attempt != 5 {
		t.Errorf("attempt %d after replay, want 5", a.Attempt)
	}
	if ref := e.referral("r1"); ref.BusinessStatus != mapping.BusinessDelivered {
		t.Errorf("after delivery businessStatus %q", ref.BusinessStatus)
	}
}

func TestDispatchGracefulShutdownReleases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hang := newReceiver(t, e.clock.Now, blockAll)
	e.serve("walks", hang)
	ids := e.refer("r1", created("walks"))
	r := e.start(func(o *outbox.DispatcherOptions) { o.ShutdownTimeout = 100 * time.Millisecond })
	hang.next(t)

	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if a := r.waitFor(ids[0]); a.Outcome != outbox.OutcomeReleased {
		t.Errorf("report %+v, want released", a)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StatePending || d.Message.LeaseOwner != "" || !d.Message.NextAttemptAt.Equal(base()) ||
		len(d.Attempts) != 0 || d.Message.Attempts != 0 {
		t.Errorf("after shutdown: %+v attempts %+v; want pending, due now, no attempt recorded", d.Message, d.Attempts)
	}

	e.serve("walks", newReceiver(t, e.clock.Now, nil))
	r2 := e.start(nil)
	r2.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
}

func TestDispatchGracefulShutdownFinishes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	rc := newReceiver(t, e.clock.Now, func(_ int, _ hit, w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		select {
		case <-release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	})
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	r := e.start(func(o *outbox.DispatcherOptions) { o.ShutdownTimeout = guard })
	rc.next(t)

	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	close(release) // the delivery finishes within the shutdown timeout
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(guard):
		t.Fatal("Run did not return")
	}
	r.expect(ids[0], outbox.OutcomeDelivered, 200)
	if d := e.message(ids[0]); d.Message.State != outbox.StateDelivered {
		t.Errorf("state %s", d.Message.State)
	}
}

func TestDispatchWakesOnCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, nil)
	e.serve("walks", rc)
	r := e.start(func(o *outbox.DispatcherOptions) { o.SafetyPoll = time.Hour })

	for i := range 3 {
		committed := time.Now()
		ids := e.refer(fmt.Sprintf("r%d", i), created("walks"))
		rc.next(t)
		latency := time.Since(committed)
		r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
		t.Logf("commit → received: %s", latency)
	}
}

func TestDispatchWakesWhenDue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, time.Now, nil)
	e.serve("walks", rc)
	// A real clock here: the dispatcher must sleep until the message is due (NextDue), with no poll.
	r := e.start(func(o *outbox.DispatcherOptions) { o.Clock = time.Now })
	due := time.Now().Add(300 * time.Millisecond)
	ids := e.referAt("r1", due, created("walks"))
	rc.next(t)
	if got := time.Now(); got.Before(due) {
		t.Errorf("delivered %s before it was due", due.Sub(got))
	}
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
}

func TestDispatchSubscriptionDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, e.clock.Now, nil)
	sub := mapping.Destination{Kind: mapping.DestinationSubscription, ID: "sub-1"}
	e.route(sub, outbox.Endpoint{URL: rc.URL, Header: http.Header{
		"Authorization":        {"Bearer gp-system"},
		"Content-Type":         {"application/fhir+json"},
		outbox.HeaderWebhookID: {"spoofed"},
	}})
	ids := e.refer("r1", ev{dest: sub, typ: mapping.EventReferralUpdated})
	r := e.start(nil)

	h := rc.next(t)
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent)
	if h.Signature != "" || h.Header.Get("Authorization") != "Bearer gp-system" ||
		h.Header.Get("Content-Type") != "application/fhir+json" || h.ID != ids[0] {
		t.Errorf("headers %v", h.Header)
	}
	// Transport facts in businessStatus are about community services only.
	if ref := e.referral("r1"); ref.BusinessStatus != mapping.BusinessQueued || ref.Record.Version != 1 {
		t.Errorf("businessStatus %q version %d, want queued, 1", ref.BusinessStatus, ref.Record.Version)
	}
}

func TestDispatchRunTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("walks", newReceiver(t, e.clock.Now, nil))
	r := e.start(nil)
	ids := e.refer("r1", created("walks"))
	r.expect(ids[0], outbox.OutcomeDelivered, http.StatusNoContent) // Run is running
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.d.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
}

// TestDispatchPerDestinationCap: a destination never has more than PerDestination requests in flight, even
// when more of its messages are due and the dispatcher has room; another destination goes meanwhile.
func TestDispatchPerDestinationCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	capped := newGatedReceiver(t)
	other := newReceiver(t, e.clock.Now, nil)
	e.serve("capped", capped.receiver)
	e.serve("other", other)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.refer(fmt.Sprintf("c%d", i), created("capped"))...)
	}
	otherIDs := e.refer("o1", created("other"))
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Concurrency = 4
		o.PerDestination = 1
	})

	capped.next(t)
	r.expect(otherIDs[0], outbox.OutcomeDelivered, http.StatusNoContent)
	for range ids {
		capped.gate <- struct{}{} // answer the one request in flight; the next may start only now
		_ = r.waitFor(ids[0])
		ids = ids[1:]
		if len(ids) > 0 {
			capped.next(t)
		}
	}
	if _, maxInFlight := capped.counts(); maxInFlight != 1 {
		t.Errorf("%d requests to one destination in flight at once, want at most 1", maxInFlight)
	}
}

// TestDispatchReusesConnections: a burst to one service, PerDestination requests at a time, reuses the
// connections it opened instead of closing all but a few after each request and dialling again (the default
// transport kept GOMAXPROCS+1 idle connections per host).
func TestDispatchReusesConnections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var conns atomic.Int64
	var inFlight, most atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Millisecond) // the requests overlap
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	e.route(service("svc"), outbox.Endpoint{URL: srv.URL, Secret: testSecret})
	const perDest, messages = 8, 200
	var ids []string
	for i := range messages {
		ids = append(ids, e.refer(fmt.Sprintf("r%d", i), created("svc"))...)
	}
	r := e.start(func(o *outbox.DispatcherOptions) { o.PerDestination = perDest })
	for _, id := range ids {
		if a := r.waitFor(id); a.Outcome != outbox.OutcomeDelivered {
			t.Fatalf("%s: %q (%s)", id, a.Outcome, a.Error)
		}
	}
	if most.Load() < 2 {
		t.Fatalf("at most %d request(s) in flight at once: the test shows nothing about reuse", most.Load())
	}
	if n := conns.Load(); n > perDest {
		t.Errorf("%d messages, at most %d requests at once, over %d connections; want at most %d", messages, most.Load(), n, perDest)
	}
}

// heldRecording is a store whose CompleteAttempts waits, while gate is open, until the test releases it.
type heldRecording struct {
	outbox.Store
	gate    atomic.Bool
	waiting chan struct{} // one send per held call
	release chan struct{}
}

func (h *heldRecording) CompleteAttempts(ctx context.Context, cs []outbox.Completion) []error {
	if h.gate.Load() {
		h.waiting <- struct{}{}
		<-h.release
	}
	return h.Store.CompleteAttempts(ctx, cs)
}

// TestDispatchRecordingFreesTheDestination: with one request at a time to a destination, the next message
// is sent as soon as the destination has answered the first, while the first attempt is still being
// recorded (the store held up); the per-destination cap counts requests, not recordings. The first is
// recorded as delivered once the store goes on.
func TestDispatchRecordingFreesTheDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	held := &heldRecording{waiting: make(chan struct{}, 8), release: make(chan struct{})}
	held.gate.Store(true)
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { held.gate.Store(false); close(held.release) }) }
	defer release() // before the dispatcher stops (cleanup), whatever happened
	e.wrap = func(s outbox.Store) outbox.Store { held.Store = s; return held }
	rc := newReceiver(t, e.clock.Now, nil)
	e.serve("svc", rc)
	first := e.refer("r1", created("svc"))
	second := e.refer("r2", created("svc"))
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Concurrency = 4
		o.PerDestination = 1
	})
	rc.next(t)
	select {
	case <-held.waiting:
	case <-time.After(guard):
		t.Fatal("the first attempt was never recorded")
	}
	rc.next(t) // formerly never, until the first attempt's recording returned
	release()
	got := map[string]outbox.Outcome{}
	for _, id := range []string{first[0], second[0]} {
		got[id] = r.waitFor(id).Outcome
	}
	for id, o := range got {
		if o != outbox.OutcomeDelivered {
			t.Errorf("%s: outcome %q, want delivered", id, o)
		}
	}
}

// TestDispatchLeaseLost: a dispatcher that stalls past its lease (a paused VM, say) loses the message to
// another; both deliveries happen (at least once), both attempts are recorded, and the late one is told
// ErrLeaseLost and changes nothing.
func TestDispatchLeaseLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	rc := newReceiver(t, e.clock.Now, holdFirst(release, http.StatusOK))
	e.serve("walks", rc)
	ids := e.refer("r1", created("walks"))
	stalled := &fakeClock{now: base()}
	a := e.start(func(o *outbox.DispatcherOptions) { o.Clock = stalled.Now })
	first := rc.next(t)

	e.clock.Advance(2 * time.Minute) // A's lease (1 minute) has run out for everyone else
	b := e.start(nil)
	second := rc.next(t)
	b.expect(ids[0], outbox.OutcomeDelivered, http.StatusOK)
	close(release)
	a.expect(ids[0], outbox.OutcomeLeaseLost, http.StatusOK)

	if first.ID != second.ID {
		t.Errorf("webhook-id %q then %q: a receiver could not dedupe", first.ID, second.ID)
	}
	d := e.message(ids[0])
	if d.Message.State != outbox.StateDelivered || !equalInts(codes(d), []int{200, 200}) {
		t.Errorf("message %+v attempts %v", d.Message, codes(d))
	}
	if ref := e.referral("r1"); ref.Record.Version != 2 {
		t.Errorf("version %d, want 2", ref.Record.Version)
	}
}

// claimWatch is a store that reports every time a claim returns message id.
type claimWatch struct {
	outbox.Store
	id      string
	claimed chan struct{} // one send per claim that returned id, while it has room
}

func (c *claimWatch) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int,
	f outbox.ClaimFilter) ([]outbox.Message, error) {
	ms, err := c.Store.ClaimMessages(ctx, owner, now, lease, limit, f)
	for _, m := range ms {
		if m.ID == c.id {
			select {
			case c.claimed <- struct{}{}:
			default: // more claims than the test waits for: never hold the dispatcher up
			}
		}
	}
	return ms, err
}

// TestDispatchClaimedThreeTimesDuringOneAttemptKeepsConcurrency: a message whose lease runs out twice while
// its first request hangs (the clock jumped) is claimed a second and a third time by its own dispatcher. It is
// held once, to start when that attempt is over, and holds one place of Concurrency, not two: afterwards the
// dispatcher still sends Concurrency requests at once. Before, the third claim counted the message as held a
// second time, and that place was lost until the process restarted.
func TestDispatchClaimedThreeTimesDuringOneAttemptKeepsConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	walks := newReceiver(t, e.clock.Now, holdFirst(release, http.StatusNoContent))
	e.serve("walks", walks)
	debt := newReceiver(t, time.Now, blockAll)
	e.serve("debt", debt)
	x := e.refer("r1", created("walks"))[0]
	watch := &claimWatch{id: x, claimed: make(chan struct{}, 8)}
	e.wrap = func(s outbox.Store) outbox.Store { watch.Store = s; return watch }
	const concurrency = 3
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Concurrency = concurrency
		o.SafetyPoll = 20 * time.Millisecond // nothing commits while the clock jumps: the poll claims
		o.Timeout = 2 * guard                // the hanging requests outlast the test
	})
	claims := 0
	claimed := func() {
		t.Helper()
		select {
		case <-watch.claimed:
			claims++
		case <-time.After(guard):
			t.Fatalf("message claimed %d times, waited for claim %d", claims, claims+1)
		}
	}
	claimed()
	walks.next(t)
	e.clock.Advance(10 * time.Minute) // the first lease has run out (Lease: 2 × Timeout)
	claimed()
	e.clock.Advance(10 * time.Minute) // and the second
	claimed()

	close(release)
	r.waitFor(x) // the first attempt, over
	r.waitFor(x) // the second, from the claim held meanwhile
	if d := e.message(x); d.Message.State != outbox.StateDelivered {
		t.Fatalf("message %s is %s, want delivered", x, d.Message.State)
	}
	for i := range concurrency {
		e.refer(fmt.Sprintf("d%d", i), created("debt"))
	}
	for i := range concurrency {
		select {
		case <-debt.hits:
		case <-time.After(guard):
			t.Fatalf("%d requests in flight, want Concurrency (%d): a place was lost to the claims made during the attempt", i, concurrency)
		}
	}
}

// countingDue is a store that counts the dispatcher's reads of the next due time.
type countingDue struct {
	outbox.Store
	n atomic.Int64
}

func (c *countingDue) NextDue(ctx context.Context) (time.Time, error) {
	c.n.Add(1)
	return c.Store.NextDue(ctx)
}

// TestDispatchBusyReadsDueTimeSparingly: while deliveries are in flight, each completion brings the loop
// back to claim, and it no longer reads the next due time after every claim (formerly one NextDue per
// completion: 60 deliveries, about 60 reads, each walking the pending index). A message that comes due
// meanwhile, with no poll to fall back on, is still delivered once it is due: the busy loop sleeps no later
// than its next recheck.
func TestDispatchBusyReadsDueTimeSparingly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	counted := &countingDue{}
	e.wrap = func(s outbox.Store) outbox.Store { counted.Store = s; return counted }
	slow := newReceiver(t, time.Now, func(_ int, _ hit, w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusNoContent)
	})
	e.serve("walks", slow)
	later := newReceiver(t, time.Now, nil)
	e.serve("debt", later)
	const n = 60
	var ids []string
	for i := range n {
		ids = append(ids, e.refer(fmt.Sprintf("r%d", i), created("walks"))...)
	}
	due := time.Now().Add(250 * time.Millisecond)
	dueID := e.referAt("later", due, created("debt"))[0]
	started := time.Now()
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.SafetyPoll = time.Hour
		o.PerDestination = 2 // 60 deliveries of 20 ms, 2 at a time: the loop is busy for 0.6 s
	})
	for _, id := range ids {
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
	}
	later.next(t)
	if got := time.Now(); got.Before(due) {
		t.Errorf("delivered %s before it was due", due.Sub(got))
	}
	r.expect(dueID, outbox.OutcomeDelivered, http.StatusNoContent)
	// At most one read per recheck (100 ms) while busy, and a few when the loop goes idle; a slow machine
	// stretches the run and the bound with it.
	elapsed := time.Since(started)
	reads, bound := counted.n.Load(), int64(elapsed/(100*time.Millisecond))+5
	if reads > bound {
		t.Errorf("the next due time was read %d times in %s for %d deliveries; want at most %d (once per recheck while busy)",
			reads, elapsed.Round(time.Millisecond), n, bound)
	} else {
		t.Logf("the next due time was read %d times in %s for %d deliveries", reads, elapsed.Round(time.Millisecond), n)
	}
}

// claimLog is a store that notes the limit of every claim the dispatcher makes.
type claimLog struct {
	outbox.Store
	mu     sync.Mutex
	limits []int // each claim's limit, in order
	empty  int   // the claims that came back with nothing
	dues   int   // the reads of the due time (NextDue)
}

func (c *claimLog) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int,
	f outbox.ClaimFilter) ([]outbox.Message, error) {
	ms, err := c.Store.ClaimMessages(ctx, owner, now, lease, limit, f)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limits = append(c.limits, limit)
	if err == nil && len(ms) == 0 {
		c.empty++
	}
	return ms, err
}

// NextDue counts the due-time reads.
func (c *claimLog) NextDue(ctx context.Context) (time.Time, error) {
	c.mu.Lock()
	c.dues++
	c.mu.Unlock()
	return c.Store.NextDue(ctx)
}

func (c *claimLog) claims() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.limits)
}

// counts returns how many claims there were, how many came back empty, and how many due-time reads.
func (c *claimLog) counts() (all, empty, dues int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.limits), c.empty, c.dues
}

// delivered waits for n reports of delivered attempts, whichever messages they are about.
func (r *run) delivered(n int) {
	r.t.Helper()
	timeout := time.After(guard)
	for n > 0 {
		select {
		case a := <-r.reports:
			if a.Outcome != outbox.OutcomeDelivered {
				r.t.Fatalf("attempt %d on %s: outcome %q status %d, want delivered", a.Attempt, a.MessageID, a.Outcome, a.StatusCode)
			}
			n--
		case <-timeout:
			r.t.Fatalf("timed out waiting for %d more deliveries", n)
		}
	}
}

// TestDispatchClaimsInBatchesUnderBacklog: with a backlog and deliveries in flight, the dispatcher does not
// claim after every completion for the one place it freed; it waits until ClaimBatch places are free (here
// with ClaimWait so long that only the count decides). Deliveries finish one at a time below: formerly each
// was followed by a claim for one message. Every message is still delivered.
func TestDispatchClaimsInBatchesUnderBacklog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := &claimLog{}
	e.wrap = func(s outbox.Store) outbox.Store { log.Store = s; return log }
	rc := newGatedReceiver(t) // each request waits for a token from the test
	gate := rc.gate
	e.serve("walks", rc.receiver)
	const n, concurrency, batch = 24, 8, 4
	for i := range n {
		e.refer(fmt.Sprintf("r%d", i), created("walks"))
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.PerDestination = concurrency, concurrency
		o.ClaimBatch, o.ClaimWait = batch, time.Hour
	})
	for range concurrency {
		rc.next(t) // the first claim filled every place
	}
	// One delivery finishes at a time, each recorded before the next is let go.
	for range n - concurrency {
		gate <- struct{}{}
		r.delivered(1)
	}
	for range concurrency {
		gate <- struct{}{}
	}
	r.delivered(concurrency)
	claims := log.claims()
	for _, limit := range claims {
		if limit < batch {
			t.Fatalf("claims asked for %v messages; want each for at least ClaimBatch (%d) while deliveries were in flight", claims, batch)
		}
	}
	t.Logf("%d deliveries, claims for %v messages", n, claims)
}

// slowRecords holds every CompleteAttempts call until the test closes open: a store slow to commit.
type slowRecords struct {
	outbox.Store
	open chan struct{}
}

func (s *slowRecords) CompleteAttempts(ctx context.Context, cs []outbox.Completion) []error {
	select {
	case <-s.open:
	case <-ctx.Done():
	}
	return s.Store.CompleteAttempts(ctx, cs)
}

// TestDispatchSendsWhileAttemptsWaitToBeRecorded: an attempt that has its answer and waits to be recorded
// holds no place of Concurrency. With the store holding every record back, the dispatcher goes on sending
// until Concurrency plus one batch (64) of answered attempts wait, then sends nothing more until they are
// recorded; each message is then delivered once. Before, it sent Concurrency requests and waited: a
// PostgreSQL drain ran at half River's rate, its commits of 15 attempts each (issue 12).
func TestDispatchSendsWhileAttemptsWaitToBeRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, time.Now, nil)
	e.serve("walks", rc)
	slow := &slowRecords{open: make(chan struct{})}
	e.wrap = func(s outbox.Store) outbox.Store { slow.Store = s; return slow }
	const concurrency, batch = 2, 64
	const n = concurrency + batch + 6
	for i := range n {
		e.refer(fmt.Sprintf("r%d", i), created("walks"))
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.PerDestination = concurrency, concurrency
	})
	seen := map[string]int{}
	for range concurrency + batch {
		seen[rc.next(t).ID]++
	}
	select {
	case h := <-rc.hits:
		t.Fatalf("request %s sent with %d answered attempts waiting to be recorded; want at most Concurrency + %d", h.ID,
			concurrency+batch, batch)
	case <-time.After(300 * time.Millisecond):
	}
	close(slow.open)
	r.delivered(n)
	for range n - concurrency - batch {
		seen[rc.next(t).ID]++
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages sent, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("message %s sent %d times, want once", id, k)
		}
	}
}

// TestDispatchRequestsInFlightStayWithinConcurrency: however many places answered attempts free, the
// requests in flight never exceed Concurrency. Three services that never answer, each with room for
// PerDestination requests (6 in all), get Concurrency (4) between them, and no fifth while theirs hang.
func TestDispatchRequestsInFlightStayWithinConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const concurrency, perDest = 4, 2
	var hits []chan hit
	for _, id := range []string{"walks", "debt", "museum"} {
		rc := newReceiver(t, time.Now, blockAll)
		e.serve(id, rc)
		hits = append(hits, rc.hits)
		for i := range 3 {
			e.refer(fmt.Sprintf("%s%d", id, i), created(id))
		}
	}
	e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.PerDestination = concurrency, perDest
		o.Timeout = 2 * guard // the hanging requests outlast the test
	})
	next := func(wait time.Duration) (hit, bool) {
		select {
		case h := <-hits[0]:
			return h, true
		case h := <-hits[1]:
			return h, true
		case h := <-hits[2]:
			return h, true
		case <-time.After(wait):
			return hit{}, false
		}
	}
	for i := range concurrency {
		if _, ok := next(guard); !ok {
			t.Fatalf("%d requests sent, want Concurrency (%d)", i, concurrency)
		}
	}
	if h, ok := next(300 * time.Millisecond); ok {
		t.Fatalf("request %s sent with %d in flight; want at most Concurrency (%d)", h.ID, concurrency, concurrency)
	}
}

// roomLog records, for every claim, the room it gave one destination (ClaimFilter.Room; -1: none named) and
// what seen reported as the claim began (the receiver's requests in flight).
type roomLog struct {
	outbox.Store
	dest  mapping.Destination
	seen  func() int
	mu    sync.Mutex
	rooms [][2]int // {room, seen}
}

func (c *roomLog) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int,
	f outbox.ClaimFilter) ([]outbox.Message, error) {
	room, ok := f.Room[c.dest]
	if !ok {
		room = -1
	}
	c.mu.Lock()
	c.rooms = append(c.rooms, [2]int{room, c.seen()})
	c.mu.Unlock()
	return c.Store.ClaimMessages(ctx, owner, now, lease, limit, f)
}

func (c *roomLog) log() [][2]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rooms)
}

// serveLoggingRoom serves the service id with a gated receiver, and logs the room every claim gives it.
func (e *env) serveLoggingRoom(id string) (*gatedReceiver, *roomLog) {
	rc := newGatedReceiver(e.t)
	e.serve(id, rc.receiver)
	log := &roomLog{dest: created(id).dest, seen: func() int { n, _ := rc.counts(); return n }}
	e.wrap = func(s outbox.Store) outbox.Store { log.Store = s; return log }
	return rc, log
}

// gatedReceiver answers each request once the test sends on gate, and counts the requests in flight and their
// peak.
type gatedReceiver struct {
	*receiver
	gate              chan struct{}
	mu                sync.Mutex
	inFlight, maxSeen int
}

func newGatedReceiver(t *testing.T) *gatedReceiver {
	g := &gatedReceiver{gate: make(chan struct{})}
	g.receiver = newReceiver(t, time.Now, func(_ int, _ hit, w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		g.mu.Lock()
		g.inFlight++
		g.maxSeen = max(g.maxSeen, g.inFlight)
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.inFlight--
			g.mu.Unlock()
		}()
		select {
		case <-g.gate:
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return g
}

func (g *gatedReceiver) counts() (inFlight, maxSeen int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight, g.maxSeen
}

// TestDispatchClaimsAheadForAServiceThatAnswers: a claim is a round trip to the store during which the loop
// starts nothing, so for a service that answered requests since the last claim the dispatcher claims as many
// more, up to another PerDestination, and holds them until a request is answered; the requests in flight
// still never exceed PerDestination. Before, every claim gave the service only its free slots (PerDestination
// less what was in flight or held), and while the claim ran the slots it freed stayed idle (issue 12: a drain
// on SQLite was bound by that, the machine half idle).
func TestDispatchClaimsAheadForAServiceThatAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc, log := e.serveLoggingRoom("walks")
	const n, perDest = 12, 2
	for i := range n {
		e.refer(fmt.Sprintf("r%d", i), created("walks"))
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.PerDestination = 8, perDest
	})
	for range perDest {
		rc.next(t)
	}
	for i := range n - perDest {
		rc.gate <- struct{}{} // one answer; the next request starts from what is held, or a claim
		r.delivered(1)
		rc.next(t)
		if _, peak := rc.counts(); peak > perDest {
			t.Fatalf("after %d answers: %d requests in flight at once, want at most PerDestination (%d)", i+1, peak, perDest)
		}
	}
	for range perDest {
		rc.gate <- struct{}{}
	}
	r.delivered(perDest)
	ahead := 0
	for _, c := range log.log() {
		if c[0] > perDest-c[1] {
			ahead++
		}
	}
	if ahead == 0 {
		t.Fatalf("no claim gave the service more room than its free slots (room, requests in flight): %v", log.log())
	}
	if _, peak := rc.counts(); peak != perDest {
		t.Errorf("%d requests in flight at most, want PerDestination (%d)", peak, perDest)
	}
}

// TestDispatchNeverClaimsAheadForASilentService: a service that answers nothing between claims is given only
// its free slots: with its PerDestination requests hanging, no claim takes another of its messages (none is
// held, keeping a place of Concurrency from the services that answer), however often other deliveries bring
// the loop back to claim.
func TestDispatchNeverClaimsAheadForASilentService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := newGatedReceiver(t)
	quick := newReceiver(t, time.Now, nil)
	e.serve("walks", slow.receiver)
	e.serve("debt", quick)
	log := &roomLog{dest: created("walks").dest, seen: func() int { n, _ := slow.counts(); return n }}
	e.wrap = func(s outbox.Store) outbox.Store { log.Store = s; return log }
	const perDest = 2
	for i := range 5 {
		e.refer(fmt.Sprintf("slow%d", i), created("walks"))
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.PerDestination = 8, perDest
		o.Timeout = 2 * guard // the hanging requests outlast the test
	})
	for range perDest {
		slow.next(t)
	}
	for i := range 6 { // each delivery to the quick service brings the loop back to claim
		id := e.refer(fmt.Sprintf("quick%d", i), created("debt"))[0]
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
		quick.next(t)
	}
	claims := 0
	for _, c := range log.log() {
		if c[1] == perDest {
			claims++
			if c[0] > 0 {
				t.Fatalf("a claim gave the silent service room %d with its %d requests hanging: %v", c[0], perDest, log.log())
			}
		}
	}
	if claims < 6 {
		t.Fatalf("%d claims while the service's requests hung, want one per quick delivery at least: %v", claims, log.log())
	}
	leased, err := e.store.ListMessages(context.Background(), outbox.MessageQuery{States: []outbox.MessageState{outbox.StateInflight}, ServiceID: "walks"})
	if err != nil {
		t.Fatal(err)
	}
	if len(leased) != perDest {
		t.Errorf("%d messages leased, want the %d whose requests hang (none held ahead)", len(leased), perDest)
	}
}

// TestDispatchClaimWaitUsesALoneFreePlace: when deliveries hold places for long (a destination that does not
// answer) and fewer than ClaimBatch are free, a message that comes in is still claimed and delivered once
// ClaimWait has passed; it does not wait for the slow deliveries to finish.
func TestDispatchClaimWaitUsesALoneFreePlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow := newReceiver(t, time.Now, blockAll)
	quick := newReceiver(t, time.Now, nil)
	e.serve("walks", slow)
	e.serve("debt", quick)
	var held []string
	for i := range 3 {
		held = append(held, e.refer(fmt.Sprintf("slow%d", i), created("walks"))...)
	}
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.Concurrency, o.ClaimBatch, o.ClaimWait = 4, 4, 20*time.Millisecond
		o.Timeout = 2 * guard // the slow deliveries outlast the test
	})
	for range held {
		slow.next(t) // three places held; one free, under ClaimBatch
	}
	for i := range 3 {
		id := e.refer(fmt.Sprintf("quick%d", i), created("debt"))[0]
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
		quick.next(t)
	}
}

// TestDispatchTrickleClaimsOnlyWhenWorkMayHaveCome: referrals arriving one at a time, each delivered before
// the next, cost one claim each, the one that finds the message. A delivery's request being answered, or
// its attempt finishing, frees a place but brings no new work when the last claim took everything it could,
// and a completion that releases no later message does not signal Changes: formerly each of the three was
// followed by a claim that came back empty (three to four claims per message on PostgreSQL, each a round
// trip and a plan).
func TestDispatchTrickleClaimsOnlyWhenWorkMayHaveCome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tally := &claimLog{}
	e.wrap = func(s outbox.Store) outbox.Store { tally.Store = s; return tally }
	rc := newReceiver(t, time.Now, nil)
	e.serve("walks", rc)
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.SafetyPoll = time.Hour // only commits, deliveries and due times wake the loop
	})
	const n = 20
	for i := range n {
		id := e.refer(fmt.Sprintf("r%d", i), created("walks"))[0]
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
		rc.next(t)
	}
	all, empty, _ := tally.counts()
	t.Logf("%d messages delivered one at a time: %d claims, %d of them empty", n, all, empty)
	if empty > 1 {
		t.Errorf("%d empty claims for %d messages delivered one at a time; want at most 1 (the first, made before any referral)", empty, n)
	}
	// Work that does come is still claimed at once: a successor in the referral's chain (released by the
	// completion's commit) and a message committed while the loop has nothing in flight.
	ids := e.refer("chain", created("walks"), ev{dest: mapping.Destination{Kind: mapping.DestinationService, ID: "walks"}, typ: mapping.EventReferralCancelled})
	for _, id := range ids {
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
		rc.next(t)
	}
}

// TestDispatchRecheckReadsTheDueTime: with deliveries in flight, a claim made soon after the due time was
// read leaves it to be read again a little later (a retry scheduled meanwhile may come due before any
// delivery finishes). That recheck reads the due time; it does not claim on the chance: formerly it claimed,
// and with nothing pending the claim came back empty (a round trip and a plan, through SQLite's one writer).
func TestDispatchRecheckReadsTheDueTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tally := &claimLog{}
	e.wrap = func(s outbox.Store) outbox.Store { tally.Store = s; return tally }
	gate := make(chan struct{})
	rc := newReceiver(t, time.Now, func(_ int, _ hit, w http.ResponseWriter, _ *http.Request, release <-chan struct{}) {
		select {
		case <-gate:
		case <-release:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	e.serve("walks", rc)
	r := e.start(func(o *outbox.DispatcherOptions) {
		o.Clock = time.Now
		o.SafetyPoll = time.Hour
	})
	// The second referral is claimed while the first is in flight, just after the due time was read.
	a := e.refer("a", created("walks"))[0]
	rc.next(t)
	b := e.refer("b", created("walks"))[0]
	rc.next(t)
	_, _, reads := tally.counts()
	time.Sleep(300 * time.Millisecond) // the recheck (100 ms after the read) comes while both are in flight
	close(gate)
	r.expect(a, outbox.OutcomeDelivered, http.StatusNoContent)
	r.expect(b, outbox.OutcomeDelivered, http.StatusNoContent)
	all, empty, dues := tally.counts()
	t.Logf("2 messages, deliveries held 300 ms: %d claims, %d of them empty; %d due-time reads during the hold",
		all, empty, dues-reads)
	if empty > 1 {
		t.Errorf("%d empty claims; want at most 1 (the first, made before any referral)", empty)
	}
}

// practiceStore is a store whose claims name the referring practice (Message.PracticeODS, as the stores'
// claims do) or, without fill, leave it out, and that counts the dispatcher's reads of it (ReferralPractice).
type practiceStore struct {
	outbox.Store
	fill  bool
	reads atomic.Int64
}

func (p *practiceStore) ClaimMessages(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int,
	f outbox.ClaimFilter) ([]outbox.Message, error) {
	ms, err := p.Store.ClaimMessages(ctx, owner, now, lease, limit, f)
	for i := range ms {
		if !p.fill {
			ms[i].PracticeODS = "" // a store whose claim does not read it
		}
	}
	return ms, err
}

func (p *practiceStore) ReferralPractice(ctx context.Context, id string) (string, error) {
	p.reads.Add(1)
	return p.Store.ReferralPractice(ctx, id)
}

// failingAppends is a store on which an AuditLog cannot append (AppendAudit fails).
type failingAppends struct{ outbox.Store }

func (failingAppends) AppendAudit(context.Context, string, []outbox.AuditRecord) error {
	return errors.New("audit appends fail")
}

// TestDispatchAuditIsRecordedWithItsAttempt: a delivery's audit record is written in the transaction that
// records its attempt (AttemptResult.Audit), numbered on a chain of the dispatcher's own (of its AuditLog's
// instance), not through the AuditLog: it is there when the attempt is, even when the AuditLog cannot
// append, and the trail verifies.
func TestDispatchAuditIsRecordedWithItsAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wrap = func(s outbox.Store) outbox.Store { return failingAppends{s} }
	rc := newReceiver(t, time.Now, nil)
	e.serve("walks", rc)
	audit := outbox.NewAuditLog(failingAppends{e.store}, outbox.AuditLogOptions{Instance: "test"})
	t.Cleanup(audit.Close)
	r := e.start(func(o *outbox.DispatcherOptions) { o.Audit = audit })
	for _, ref := range []string{"r1", "r2"} {
		id := e.refer(ref, created("walks"))[0]
		r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
	}
	recs, err := e.store.ListAudit(context.Background(), outbox.AuditQuery{ActorID: "socialrx"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("audit records %+v, want the two deliveries'", recs)
	}
	for i, rec := range recs {
		if rec.Chain != recs[0].Chain || rec.ChainSeq != int64(i+1) || rec.Chain == audit.Chain() ||
			!strings.HasPrefix(rec.Chain, "test-") || rec.Action != outbox.AuditSend || rec.ReferralID != []string{"r1", "r2"}[i] {
			t.Errorf("audit record %d: %+v; want send %d of r%d on one chain of the dispatcher's (test-…, not the AuditLog's %s)",
				i, rec, i+1, i+1, audit.Chain())
		}
	}
	rep, err := outbox.VerifyAudit(context.Background(), e.store, nil)
	if err != nil || !rep.OK {
		t.Errorf("verify: %+v, %v", rep, err)
	}
}

// TestDispatchAuditNamesThePractice: a delivery's audit record names the referral's practice, taken from
// the claimed message when the claim read it (no round trip per delivery), else read.
func TestDispatchAuditNamesThePractice(t *testing.T) {
	t.Parallel()
	for _, fill := range []bool{true, false} {
		t.Run(fmt.Sprintf("claim names it %v", fill), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ps := &practiceStore{fill: fill}
			e.wrap = func(s outbox.Store) outbox.Store { ps.Store = s; return ps }
			rc := newReceiver(t, time.Now, nil)
			e.serve("walks", rc)
			audit := outbox.NewAuditLog(e.store, outbox.AuditLogOptions{Instance: "test"})
			t.Cleanup(audit.Close)
			r := e.start(func(o *outbox.DispatcherOptions) { o.Audit = audit })
			id := e.refer("r1", created("walks"))[0]
			r.expect(id, outbox.OutcomeDelivered, http.StatusNoContent)
			recs, err := e.store.ListAudit(context.Background(), outbox.AuditQuery{ReferralID: "r1"})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Action != outbox.AuditSend || recs[0].PracticeODS != "A81001" {
				t.Fatalf("audit records %+v, want one send naming practice A81001", recs)
			}
			want := int64(1)
			if fill {
				want = 0
			}
			if n := ps.reads.Load(); n != want {
				t.Errorf("the dispatcher read the practice %d times, want %d", n, want)
			}
		})
	}
}

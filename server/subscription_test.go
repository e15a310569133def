package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

const gpCriteria = "Task?requester:identifier=" + odsSystemURL + "|A81001"

const odsSystemURL = "https://fhir.nhs.uk/Id/ods-organization-code"

// subscriptionBody is an R4 Subscription as a GP system would post it; content "" leaves the payload-content
// extension out (full-resource by default).
func subscriptionBody(criteria, endpoint, content string, headers ...string) []byte {
	ch := map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
	if content != "" {
		ch["_payload"] = map[string]any{"extension": []any{map[string]any{
			"url": mapping.BackportPayloadContentURL, "valueCode": content}}}
	}
	if len(headers) > 0 {
		ch["header"] = headers
	}
	b, err := json.Marshal(map[string]any{
		"resourceType": "Subscription", "status": "requested", "reason": "Keep the GP record in step",
		"criteria": criteria, "channel": ch,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// delivery is one notification request the receiver accepted.
type delivery struct {
	path   string
	header http.Header
	body   []byte
}

// receiver is a GP system's rest-hook endpoint on loopback: while down it answers 503 (and reports each
// refused attempt on refused); otherwise it accepts and reports the request on got.
type receiver struct {
	url     string
	down    atomic.Bool
	got     chan delivery
	refused chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{got: make(chan delivery, 256), refused: make(chan struct{}, 256)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if rc.down.Load() {
			select {
			case rc.refused <- struct{}{}:
			default:
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		rc.got <- delivery{path: r.URL.Path, header: r.Header.Clone(), body: body}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	rc.url = ts.URL
	return rc
}

// startDispatcher runs a real dispatcher over the harness's store with the production endpoint resolver,
// on the harness's fake clock (each reading advances it 1 ms) and a 5 ms backoff, so retries come at once.
func startDispatcher(t *testing.T, h *harness) {
	t.Helper()
	startDispatcherWith(t, h, nil)
}

// startObservedDispatcher is startDispatcher whose every recorded attempt is reported on the channel it
// returns (after the store committed it), so that a test waits for an outcome instead of polling.
func startObservedDispatcher(t *testing.T, h *harness) <-chan outbox.AttemptReport {
	t.Helper()
	ch := make(chan outbox.AttemptReport, 256)
	startDispatcherWith(t, h, outbox.ObserverFunc(func(r outbox.AttemptReport) { ch <- r }))
	return ch
}

// startDispatcherWith is startDispatcher with an attempt observer (nil: none) and further options.
func startDispatcherWith(t *testing.T, h *harness, obs outbox.Observer, more ...func(*outbox.DispatcherOptions)) {
	t.Helper()
	opts := outbox.DispatcherOptions{
		Egress:       outbox.EgressPolicy{AllowLoopback: h.cfg.Outbound.AllowLoopback},
		Clock:        func() time.Time { return time.UnixMicro(h.clock.Add(1000)).UTC() },
		Backoff:      func(int) time.Duration { return 5 * time.Millisecond },
		Jitter:       func(time.Duration) time.Duration { return 0 },
		QuickRetries: -1,
		SafetyPoll:   10 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
		Observer:     obs,
	}
	for _, f := range more {
		f(&opts)
	}
	d := outbox.NewDispatcher(h.store, outbox.WithSubscriptions(h.store, outbox.DirectoryEndpoints(h.cfg.Directory), h.keys), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	})
}

// waitFor returns the next value of ch or fails after a generous bound (nothing here sleeps to wait).
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// notification is the part of a notification Bundle the tests check.
type notification struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

// statusParams reads a SubscriptionStatus Parameters resource into name → value (notification-event parts
// prefixed "event.").
func statusParams(t *testing.T, raw json.RawMessage) map[string]string {
	t.Helper()
	type param struct {
		Name           string `json:"name"`
		ValueString    string `json:"valueString"`
		ValueCode      string `json:"valueCode"`
		ValueInstant   string `json:"valueInstant"`
		ValueCanonical string `json:"valueCanonical"`
		ValueReference *struct {
			Reference string `json:"reference"`
		} `json:"valueReference"`
		ValueCodeableConcept *struct {
			Text string `json:"text"`
		} `json:"valueCodeableConcept"`
		Part []json.RawMessage `json:"part"`
	}
	var p struct {
		ResourceType string            `json:"resourceType"`
		Parameter    []json.RawMessage `json:"parameter"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.ResourceType != "Parameters" {
		t.Fatalf("want a Parameters resource, got %s", raw)
	}
	out := map[string]string{}
	var walk func(prefix string, ps []json.RawMessage)
	walk = func(prefix string, ps []json.RawMessage) {
		for _, b := range ps {
			var x param
			if err := json.Unmarshal(b, &x); err != nil {
				t.Fatal(err)
			}
			v := x.ValueString + x.ValueCode + x.ValueInstant + x.ValueCanonical
			if x.ValueReference != nil {
				v = x.ValueReference.Reference
			}
			if x.ValueCodeableConcept != nil {
				v = x.ValueCodeableConcept.Text
			}
			if x.Name == "notification-event" {
				walk("event.", x.Part)
				continue
			}
			out[prefix+x.Name] = v
		}
	}
	walk("", p.Parameter)
	return out
}

func createSubscription(t *testing.T, h *harness, token string, body []byte) map[string]any {
	t.Helper()
	r := h.do(http.MethodPost, "/fhir/Subscription", token, body)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /fhir/Subscription: %d %s", r.status, r.body)
	}
	sub := r.json(t)
	if sub["status"] != "active" || sub["id"] == "" || !strings.HasSuffix(r.header.Get("Location"), "/Subscription/"+sub["id"].(string)) {
		t.Fatalf("created Subscription: %s (Location %s)", r.body, r.header.Get("Location"))
	}
	if strings.Contains(string(r.body), "header") {
		t.Errorf("channel.header is write-only but was returned: %s", r.body)
	}
	return sub
}

// TestSubscriptionNotificationsInOrderThroughOutage: a GP system subscribes (full-resource, with an
// Authorization header, and a second id-only subscription), its receiver is down while a community service
// walks the referral through its states, then recovers: every notification arrives, numbered 1..N in order,
// each a valid R4 history Bundle carrying the Task version it announces.
func TestSubscriptionNotificationsInOrderThroughOutage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	rc := newReceiver(t)
	rc.down.Store(true)
	full := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, rc.url+"/full", "full-resource", "Authorization: Bearer gp-endpoint-secret"))
	idOnly := createSubscription(t, h, tokGP, subscriptionBody(gpCriteria, rc.url+"/id-only", "id-only"))
	if got := h.do(http.MethodGet, "/fhir/Subscription/"+full["id"].(string), tokGP, nil); got.status != http.StatusOK || got.json(t)["status"] != "active" {
		t.Fatalf("read back: %d %s", got.status, got.body)
	}
	startDispatcher(t, h)

	// Version 1 (the referral), then five community moves: six Task versions while the receiver is down.
	r := postFixture(h, tokGP, "link-worker-befriending-default.json")
	if r.status != http.StatusCreated {
		t.Fatalf("referral: %d %s", r.status, r.body)
	}
	ref, err := h.store.GetReferral(context.Background(), srFromResponse(t, r)["id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{
		`{"status": "received"}`, `{"status": "accepted"}`, `{"status": "in-progress"}`,
		`{"status": "on-hold", "reason": "Away for two weeks"}`, `{"status": "in-progress"}`,
	} {
		r := h.do(http.MethodPost, "/community/v1/referrals/"+ref.Record.ID+"/status", tokLinkWorkersSub, []byte(step), "Content-Type: application/json")
		if r.status != http.StatusOK {
			t.Fatalf("community %s: %d %s", step, r.status, r.body)
		}
	}
	// The outage is real: the dispatcher has been refused (and retried) before the receiver recovers.
	for range 3 {
		waitFor(t, rc.refused, "a refused attempt")
	}
	rc.down.Store(false)

	final, err := h.store.GetReferral(context.Background(), ref.Record.ID)
	if err != nil {
		t.Fatal(err)
	}
	n := final.Record.Version
	if n != 6 {
		t.Fatalf("the referral is at version %d, want 6", n)
	}
	seen := map[string][]delivery{}
	ids := map[string]bool{}
	handshakes := map[string]int{} // issue 8: each subscription's handshake comes first, before its notifications
	for len(seen["/full"])+len(seen["/id-only"]) < 2*n {
		d := waitFor(t, rc.got, "a notification")
		if id := d.header.Get("webhook-id"); id == "" || ids[id] {
			t.Fatalf("notification without a webhook-id or delivered twice: %q", id)
		} else {
			ids[id] = true
		}
		if isHandshake(t, d.body) {
			if len(seen[d.path]) > 0 || handshakes[d.path] > 0 {
				t.Errorf("%s: a handshake after %d notifications (it must come first, once)", d.path, len(seen[d.path]))
			}
			handshakes[d.path]++
			continue
		}
		seen[d.path] = append(seen[d.path], d)
	}
	for path, ds := range seen {
		for i, d := range ds {
			want := i + 1
			if err := h.v.Validate(t, d.body); err != nil {
				t.Errorf("%s notification %d is not valid FHIR R4: %v\n%s", path, want, err, d.body)
			}
			if ct := d.header.Get("Content-Type"); ct != "application/fhir+json" {
				t.Errorf("%s: Content-Type %q", path, ct)
			}
			if d.header.Get("webhook-signature") != "" || d.header.Get("webhook-timestamp") == "" {
				t.Errorf("%s: notifications are unsigned but carry webhook-id and webhook-timestamp: %v", path, d.header)
			}
			wantAuth := map[string]string{"/full": "Bearer gp-endpoint-secret", "/id-only": ""}[path]
			if got := d.header.Get("Authorization"); got != wantAuth {
				t.Errorf("%s: Authorization %q, want %q (channel.header)", path, got, wantAuth)
			}
			var b notification
			if err := json.Unmarshal(d.body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "history" || len(b.Entry) == 0 {
				t.Fatalf("%s notification %d: %s", path, want, d.body)
			}
			p := statusParams(t, b.Entry[0].Resource)
			if p["type"] != "event-notification" || p["status"] != "active" ||
				p["events-since-subscription-start"] != strconv.Itoa(want) || p["event.event-number"] != strconv.Itoa(want) ||
				!strings.HasSuffix(p["event.focus"], "/fhir/Task/"+ref.Record.TaskID) ||
				!strings.HasSuffix(p["subscription"], "/fhir/Subscription/"+map[string]map[string]any{"/full": full, "/id-only": idOnly}[path]["id"].(string)) {
				t.Errorf("%s notification %d: SubscriptionStatus %v", path, want, p)
			}
			switch path {
			case "/full":
				if len(b.Entry) != 2 {
					t.Fatalf("full-resource notification %d has %d entries, want 2", want, len(b.Entry))
				}
				var task struct {
					ResourceType string `json:"resourceType"`
					ID           string `json:"id"`
					Status       string `json:"status"`
					Meta         struct {
						VersionID string `json:"versionId"`
					} `json:"meta"`
				}
				if err := json.Unmarshal(b.Entry[1].Resource, &task); err != nil || task.ResourceType != "Task" ||
					task.ID != ref.Record.TaskID || task.Meta.VersionID != strconv.Itoa(want) {
					t.Errorf("full-resource notification %d carries %s, want Task/%s version %d", want, b.Entry[1].Resource, ref.Record.TaskID, want)
				}
				if want == n && task.Status != "in-progress" {
					t.Errorf("the last notification shows status %s, want in-progress", task.Status)
				}
			case "/id-only":
				if len(b.Entry) != 1 {
					t.Errorf("id-only notification %d has %d entries, want only the SubscriptionStatus", want, len(b.Entry))
				}
			}
		}
	}

	// $status tells a GP system how many notifications exist (gap detection).
	st := h.do(http.MethodGet, "/fhir/Subscription/"+full["id"].(string)+"/$status", tokGP, nil)
	var bundle notification
	if err := json.Unmarshal(st.body, &bundle); st.status != http.StatusOK || err != nil || len(bundle.Entry) != 1 {
		t.Fatalf("$status: %d %s", st.status, st.body)
	}
	if p := statusParams(t, bundle.Entry[0].Resource); p["events-since-subscription-start"] != strconv.Itoa(n) || p["type"] != "query-status" {
		t.Errorf("$status: %v, want %d events", p, n)
	}

	// DELETE turns the subscription off: later changes are not numbered for it any more.
	del := h.do(http.MethodDelete, "/fhir/Subscription/"+full["id"].(string), tokGP, nil)
	if del.status != http.StatusOK || del.json(t)["status"] != "off" {
		t.Fatalf("DELETE: %d %s", del.status, del.body)
	}
	r = h.do(http.MethodPost, "/community/v1/referrals/"+ref.Record.ID+"/status", tokLinkWorkersSub,
		[]byte(`{"status": "completed", "outcome": "Attends weekly"}`), "Content-Type: application/json")
	if r.status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.status, r.body)
	}
	if s, err := h.store.GetSubscription(context.Background(), full["id"].(string)); err != nil || s.EventsSinceStart != int64(n) || s.Status != outbox.SubscriptionOff {
		t.Errorf("off subscription after a change: %+v, %v; want %d events, off", s, err, n)
	}
	if d := waitFor(t, rc.got, "the id-only notification of the completion"); d.path != "/id-only" {
		t.Errorf("after DELETE a notification went to %s", d.path)
	}
}

const tokLinkWorkersSub = "demo-linkworkers-token" // community link-workers (pull-only)

// isHandshake reports whether a delivered Bundle is a Subscription's handshake (SubscriptionStatus type
// handshake), as opposed to a numbered event notification.
func isHandshake(t *testing.T, body []byte) bool {
	t.Helper()
	var b notification
	if err := json.Unmarshal(body, &b); err != nil || len(b.Entry) == 0 {
		t.Fatalf("not a notification Bundle: %s", body)
	}
	return statusParams(t, b.Entry[0].Resource)["type"] == "handshake"
}

// TestSubscriptionRules: who may subscribe to what, and how a bad Subscription is refused.
func TestSubscriptionRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t, fhirtest.NewValidator(t))
	const hook = "https://gp.example.org/fhir-hooks"
	cases := []struct {
		name   string
		token  string
		body   []byte
		status int
		expr   string
	}{
		{"another practice's criteria", tokGP, subscriptionBody("Task?requester:identifier="+odsSystemURL+"|B82002", hook, ""), 422, "Subscription.criteria"},
		{"criteria without a practice", tokGP, subscriptionBody("Task?status=completed", hook, ""), 422, "Subscription.criteria"},
		{"criteria on another resource", tokGP, subscriptionBody("ServiceRequest?requester:identifier="+odsSystemURL+"|A81001", hook, ""), 422, "Subscription.criteria"},
		{"plain http to a remote host", tokGP, subscriptionBody(gpCriteria, "http://gp.example.org/hooks", ""), 422, "Subscription.channel.endpoint"},
		{"relative endpoint", tokGP, subscriptionBody(gpCriteria, "/hooks", ""), 422, "Subscription.channel.endpoint"},
		{"credentials in the endpoint", tokGP, subscriptionBody(gpCriteria, "https://u:p@gp.example.org/hooks", ""), 422, "Subscription.channel.endpoint"},
		{"empty payload content", tokGP, subscriptionBody(gpCriteria, hook, "empty"), 422, "Subscription.channel.payload"},
		{"reserved header", tokGP, subscriptionBody(gpCriteria, hook, "", "webhook-id: x"), 422, "Subscription.channel.header"},
		{"malformed header", tokGP, subscriptionBody(gpCriteria, hook, "", "no colon"), 422, "Subscription.channel.header"},
		{"websocket channel", tokGP, []byte(strings.Replace(string(subscriptionBody(gpCriteria, hook, "")), `"rest-hook"`, `"websocket"`, 1)), 422, "Subscription.channel.type"},
		{"status active", tokGP, []byte(strings.Replace(string(subscriptionBody(gpCriteria, hook, "")), `"requested"`, `"active"`, 1)), 422, "Subscription.status"},
		{"unknown element", tokGP, []byte(strings.Replace(string(subscriptionBody(gpCriteria, hook, "")), `"reason"`, `"colour":"red","reason"`, 1)), 400, "Subscription.colour"},
		{"missing reason", tokGP, []byte(strings.Replace(string(subscriptionBody(gpCriteria, hook, "")), `"reason":"Keep the GP record in step",`, ``, 1)), 400, "Subscription.reason"},
		{"community client", tokWalks, subscriptionBody(gpCriteria, hook, ""), 403, ""},
		{"admin client", tokAdmin, subscriptionBody(gpCriteria, hook, ""), 403, ""},
		{"no token", "", subscriptionBody(gpCriteria, hook, ""), 401, ""},
	}
	for _, tc := range cases {
		r := h.do(http.MethodPost, "/fhir/Subscription", tc.token, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if is := issues(t, r); tc.expr != "" && !hasExpression(is, tc.expr) {
			t.Errorf("%s: issues %+v do not name %s", tc.name, is, tc.expr)
		}
	}

	// A PCN client may subscribe to any of its practices; loopback http is allowed.
	sub := createSubscription(t, h, tokPCN, subscriptionBody("Task?requester:identifier="+odsSystemURL+"|A81003", "http://127.0.0.1:9/hook", "id-only"))
	id := sub["id"].(string)
	for _, tc := range []struct {
		method, path, token string
		status              int
	}{
		{http.MethodGet, "/fhir/Subscription/" + id, tokGP, 404},               // another GP client
		{http.MethodGet, "/fhir/Subscription/" + id + "/$status", tokGP2, 404}, // another GP client
		{http.MethodDelete, "/fhir/Subscription/" + id, tokGP, 404},            // only the owner turns it off
		{http.MethodGet, "/fhir/Subscription/" + id, tokWalks, 403},            // community
		{http.MethodGet, "/fhir/Subscription/" + id, tokAdmin, 200},            // admin may read
		{http.MethodDelete, "/fhir/Subscription/" + id, tokAdmin, 404},         // but not turn off
		{http.MethodGet, "/fhir/Subscription/nope", tokPCN, 404},               // unknown
		{http.MethodPut, "/fhir/Subscription/" + id, tokPCN, 415},              // update (re-activation, issue 8) needs a body
		{http.MethodGet, "/fhir/Subscription/" + id + "/$status", tokPCN, 200}, // owner
		{http.MethodDelete, "/fhir/Subscription/" + id, tokPCN, 200},           // owner
		{http.MethodDelete, "/fhir/Subscription/" + id, tokPCN, 200},           // again: harmless
	} {
		if r := h.do(tc.method, tc.path, tc.token, nil); r.status != tc.status {
			t.Errorf("%s %s as %s: %d %s, want %d", tc.method, tc.path, tc.token, r.status, r.body, tc.status)
		}
	}
}

package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/server"
)

// testDNS answers fixed addresses for the names of these tests (and nothing else).
type testDNS map[string]string

func (d testDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := d[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// runDispatcher runs the production dispatcher (resolver and keyring as Main wires them) with the given
// outbound policy and observer, for the test's lifetime.
func runDispatcher(t *testing.T, h *hostile, keys *outbox.Keyring, egress outbox.EgressPolicy, obs outbox.Observer) {
	t.Helper()
	d := outbox.NewDispatcher(h.store, outbox.WithSubscriptions(h.store, outbox.DirectoryEndpoints(h.cfg.Directory), keys),
		outbox.DispatcherOptions{Egress: egress, Observer: obs, QuickRetries: -1, SafetyPoll: 20 * time.Millisecond,
			Backoff: func(int) time.Duration { return time.Hour }, Logger: slog.New(slog.DiscardHandler)})
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

// TestSubscriptionSSRF: a GP client cannot make socialrx send where the operator did not mean it to. Where
// the directory does not allow loopback, a Subscription to this machine, a private or metadata address, in
// plain http, or with a Cookie header is a 422 naming the element; one to a name (accepted: names are judged
// when connecting) that resolves to this machine never gets a connection: its notification goes dead with
// the policy's reason and the receiver listening there sees nothing.
func TestSubscriptionSSRF(t *testing.T) {
	t.Parallel()
	keys, err := outbox.RandomKeyring()
	if err != nil {
		t.Fatal(err)
	}
	h := newHostile(t, backends()[0].open(t), nil, func(o *server.Options) {
		o.Config.Outbound.AllowLoopback = false // as a real directory: the demo allows loopback
		o.Secrets = keys
	})
	rc := newReceiver(t)
	port := strings.TrimPrefix(rc.url, "http://127.0.0.1:")
	for _, c := range []struct {
		endpoint string
		headers  []string
		expr     string
	}{
		{rc.url + "/hook", nil, "Subscription.channel.endpoint"},
		{"http://127.0.0.1:" + port + "/admin/v1/replay", nil, "Subscription.channel.endpoint"},
		{"https://127.0.0.1:" + port + "/hook", nil, "Subscription.channel.endpoint"},
		{"https://localhost:" + port + "/hook", nil, "Subscription.channel.endpoint"},
		{"https://169.254.169.254/latest/meta-data/iam/", nil, "Subscription.channel.endpoint"},
		{"https://[fd00:ec2::254]/latest/meta-data/", nil, "Subscription.channel.endpoint"},
		{"https://10.20.30.40/hook", nil, "Subscription.channel.endpoint"},
		{"https://[::ffff:192.168.0.1]/hook", nil, "Subscription.channel.endpoint"},
		{"http://gp.example.org/hook", nil, "Subscription.channel.endpoint"},
		{"https://gp.example.org/hook", []string{"Cookie: admin_session=1"}, "Subscription.channel.header[0]"},
		{"https://gp.example.org/hook", []string{"Authorization: Bearer x", "Host: internal"}, "Subscription.channel.header[1]"},
		{"https://gp.example.org/hook", []string{"Proxy-Authorization: Basic eA=="}, "Subscription.channel.header[0]"},
	} {
		r := h.do(http.MethodPost, "/fhir/Subscription", tokGP, subscriptionBody(gpCriteria, c.endpoint, "", c.headers...))
		if r.status != http.StatusUnprocessableEntity || !hasExpression(issues(t, r), c.expr) {
			t.Errorf("%s %v: %d %s, want 422 naming %s", c.endpoint, c.headers, r.status, r.body, c.expr)
		}
	}

	sub := createSubscription(t, h.harness, tokGP, subscriptionBody(gpCriteria, "https://gp-hook.example:"+port+"/hook", "",
		"Authorization: Bearer endpoint-secret-51"))
	reports := make(chan outbox.AttemptReport, 16)
	runDispatcher(t, h, keys, outbox.EgressPolicy{Resolver: testDNS{"gp-hook.example": "127.0.0.1"}},
		outbox.ObserverFunc(func(r outbox.AttemptReport) { reports <- r }))
	refer(h.harness, tokGP, "link-worker-befriending-default.json")
	rep := waitFor(t, reports, "the notification's attempt")
	if rep.Destination.ID != sub["id"] || rep.Outcome != outbox.OutcomeDead || !strings.Contains(rep.Error, "refused by socialrx's outbound policy") {
		t.Errorf("the notification to a name resolving to this machine: %+v", rep)
	}
	select {
	case d := <-rc.got:
		t.Errorf("the loopback receiver got a request: %s %v", d.path, d.header)
	default:
	}
	if strings.Contains(h.log.String(), "endpoint-secret-51") {
		t.Error("a channel.header value reached the log")
	}
}

// TestSubscriptionCapOverHTTP: beyond SOCIALRX_SUBSCRIPTIONS_PER_CLIENT active Subscriptions a GP client gets
// a 422 saying so; deleting one makes room.
func TestSubscriptionCapOverHTTP(t *testing.T) {
	t.Parallel()
	lim := config.Unlimited()
	lim.SubscriptionsPerClient = 2
	h := newHostile(t, backends()[0].open(t), &lim, nil)
	var ids []string
	for range 2 {
		ids = append(ids, createSubscription(t, h.harness, tokGP, subscriptionBody(gpCriteria, "https://gp.example.org/hook", ""))["id"].(string))
	}
	r := h.do(http.MethodPost, "/fhir/Subscription", tokGP, subscriptionBody(gpCriteria, "https://gp.example.org/hook", ""))
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "already has 2 active Subscriptions") {
		t.Fatalf("a third Subscription: %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodDelete, "/fhir/Subscription/"+ids[0], tokGP, nil); r.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	createSubscription(t, h.harness, tokGP, subscriptionBody(gpCriteria, "https://gp.example.org/hook", ""))
}

// scrape returns the /metrics text of srv.
func scrape(t *testing.T, srv *server.Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestDeliveryMetricsSubscriptions: by default /metrics names no Subscription (its notifications count under
// destination "subscription"); with per-subscription labels on, a Subscription's series are there while it
// lives and gone once its owner deletes it.
func TestDeliveryMetricsSubscriptions(t *testing.T) {
	t.Parallel()
	for _, per := range []bool{false, true} {
		t.Run(fmt.Sprintf("per-subscription=%v", per), func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			dm, err := server.NewDeliveryMetrics(reg, per)
			if err != nil {
				t.Fatal(err)
			}
			keys, _ := outbox.RandomKeyring()
			h := newHostile(t, backends()[0].open(t), nil, func(o *server.Options) {
				o.Registry, o.Secrets, o.SubscriptionOff = reg, keys, dm.Forget
			})
			rc := newReceiver(t)
			sub := createSubscription(t, h.harness, tokGP, subscriptionBody(gpCriteria, rc.url+"/hook", ""))
			id := sub["id"].(string)
			delivered := make(chan outbox.AttemptReport, 16)
			runDispatcher(t, h, keys, outbox.EgressPolicy{AllowLoopback: true}, outbox.ObserverFunc(func(r outbox.AttemptReport) {
				dm.ObserveAttempt(r)
				delivered <- r
			}))
			refer(h.harness, tokGP, "link-worker-befriending-default.json")
			// Two deliveries: the Subscription's handshake (issue 8: it comes first), then the notification.
			// Scraping after the first only would count 1 or 2, as the second happened to be done or not.
			for _, what := range []string{"the handshake", "the notification"} {
				if rep := waitFor(t, delivered, what); rep.Outcome != outbox.OutcomeDelivered {
					t.Fatalf("%s: %+v", what, rep)
				}
				waitFor(t, rc.got, what+" at the receiver")
			}
			text := scrape(t, h.srv)
			byID := `destination="subscription:` + id + `"`
			if per != strings.Contains(text, byID) {
				t.Errorf("per-subscription=%v: /metrics names the subscription: %v\n%s", per, !per, text)
			}
			if !per && !strings.Contains(text, `socialrx_delivery_attempts_total{code="200",destination="subscription",outcome="delivered"} 2`) {
				t.Errorf("the handshake and the notification must count under destination=\"subscription\":\n%s", text)
			}
			if r := h.do(http.MethodDelete, "/fhir/Subscription/"+id, tokGP, nil); r.status != http.StatusOK {
				t.Fatalf("DELETE: %d", r.status)
			}
			if strings.Contains(scrape(t, h.srv), byID) {
				t.Errorf("the deleted subscription's series are still in /metrics")
			}
		})
	}
}

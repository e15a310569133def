package referral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/referral"
)

// subscription is a GP's Subscription to A81001 with the given endpoint and headers.
func subscription(t *testing.T, endpoint string, headers ...string) []byte {
	t.Helper()
	ch := map[string]any{"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
	if len(headers) > 0 {
		ch["header"] = headers
	}
	b, err := json.Marshal(map[string]any{"resourceType": "Subscription", "status": "requested", "reason": "Keep in step",
		"criteria": "Task?requester:identifier=" + mapping.ODSOrganizationSystem + "|A81001", "channel": ch})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantRule checks a 422 naming expr.
func wantRule(t *testing.T, what string, err error, expr string) {
	t.Helper()
	var fe *fhir.Error
	if !errors.As(err, &fe) || fe.Kind != fault.Rule {
		t.Errorf("%s: %v, want a rule error (422) on %s", what, err, expr)
		return
	}
	for _, is := range fe.Issues {
		for _, e := range is.Expression {
			if strings.HasPrefix(e, expr) {
				return
			}
		}
	}
	t.Errorf("%s: %v does not name %s", what, err, expr)
}

// TestSubscriptionOutboundRules: where a Subscription may send. https to a name or a public address always;
// never to a private, link-local (cloud metadata), CGNAT or mapped internal literal; plain http and this
// machine only where the directory allows loopback (the demo), plain http then only to a loopback host.
func TestSubscriptionOutboundRules(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		gp := e.caller("practice-a81001")
		for _, tc := range []struct {
			endpoint        string
			strict, loopbck bool // allowed without, and with, outbound.allow_loopback
		}{
			{"https://gp.example.org/socialrx-hook", true, true},
			{"https://93.184.216.34/hook", true, true},
			{"http://gp.example.org/hook", false, false},
			{"http://93.184.216.34/hook", false, false},
			{"http://127.0.0.1:8080/admin/v1/replay", false, true},
			{"http://localhost:9000/hook", false, true},
			{"https://localhost/hook", false, true},
			{"https://[::1]/hook", false, true},
			{"https://169.254.169.254/latest/meta-data/", false, false},
			{"https://[fd00:ec2::254]/", false, false},
			{"https://10.0.0.8/hook", false, false},
			{"https://[::ffff:10.0.0.1]/hook", false, false},
			{"https://100.64.0.9/hook", false, false},
			{"https://0.0.0.0/hook", false, false},
			{"ftp://gp.example.org/hook", false, false},
		} {
			for _, allow := range []bool{false, true} {
				e.cfg.Outbound.AllowLoopback = allow
				_, err := e.svc.Subscribe(ctx, gp, subscription(t, tc.endpoint), "https://socialrx.example/fhir")
				want := tc.strict
				if allow {
					want = tc.loopbck
				}
				if want && err != nil {
					t.Errorf("%s (allow_loopback %v): %v, want accepted", tc.endpoint, allow, err)
				}
				if !want {
					wantRule(t, tc.endpoint, err, "Subscription.channel.endpoint")
				}
				// Keep under the cap: turn every accepted one off again.
				if err == nil {
					subs, _ := e.store.ListSubscriptions(ctx, outbox.SubscriptionQuery{OwnerClientID: gp.Client.ID,
						Statuses: []outbox.SubscriptionStatus{outbox.SubscriptionActive}})
					for _, s := range subs {
						if _, err := e.svc.Unsubscribe(ctx, gp, s.ID); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
	})
}

// TestSubscriptionHeaders: channel.header may set only the documented headers (outbox.ChannelHeaders), a
// bounded number of them; their values are stored sealed (never in clear), open only with the keyring, and
// without a keyring channel.header is refused.
func TestSubscriptionHeaders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		gp := e.caller("practice-a81001")
		const hook = "https://gp.example.org/hook"
		for _, h := range []string{"Cookie: session=abc", "Host: admin.internal", "Connection: close", "Transfer-Encoding: chunked",
			"Proxy-Authorization: Basic eA==", "X-Forwarded-For: 10.0.0.1", "Content-Type: text/plain", "webhook-signature: v1,x",
			"Te: trailers", "Upgrade: h2c", "Authorization", "Authorization: \r\nX: y"} {
			_, err := e.svc.Subscribe(ctx, gp, subscription(t, hook, h), "https://socialrx.example/fhir")
			wantRule(t, h, err, "Subscription.channel.header[0]")
		}
		many := make([]string, 9)
		for i := range many {
			many[i] = "X-API-Key: k"
		}
		_, err := e.svc.Subscribe(ctx, gp, subscription(t, hook, many...), "https://socialrx.example/fhir")
		wantRule(t, "nine headers", err, "Subscription.channel.header")

		sub, err := e.svc.Subscribe(ctx, gp, subscription(t, hook, "Authorization: Bearer topsecret-7f3a", "x-api-key: k-42"),
			"https://socialrx.example/fhir")
		if err != nil {
			t.Fatal(err)
		}
		stored, err := e.store.GetSubscription(ctx, sub.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range stored.Header {
			if !outbox.IsSealed(h) || strings.Contains(h, "topsecret") || strings.Contains(h, "k-42") {
				t.Errorf("a channel.header value is stored in clear: %q", h)
			}
		}
		dest := mapping.Destination{Kind: mapping.DestinationSubscription, ID: sub.ID}
		none := outbox.EndpointFunc(func(mapping.Destination) (outbox.Endpoint, bool) { return outbox.Endpoint{}, false })
		ep, err := outbox.WithSubscriptions(e.store, none, e.keys).Endpoint(ctx, dest)
		if err != nil || ep.Header.Get("Authorization") != "Bearer topsecret-7f3a" || ep.Header.Get("X-Api-Key") != "k-42" || !ep.Guarded {
			t.Errorf("opened with the keyring: %+v, %v", ep, err)
		}
		other, err := outbox.NewKeyring(bytes.Repeat([]byte{9}, 32))
		if err != nil {
			t.Fatal(err)
		}
		for name, k := range map[string]*outbox.Keyring{"another key": other, "no key": nil} {
			if _, err := outbox.WithSubscriptions(e.store, none, k).Endpoint(ctx, dest); !errors.Is(err, outbox.ErrNoSecretKey) {
				t.Errorf("%s: %v, want ErrNoSecretKey", name, err)
			}
		}
		rotated, err := outbox.NewKeyring(bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		if ep, err := outbox.WithSubscriptions(e.store, none, rotated).Endpoint(ctx, dest); err != nil || ep.Header.Get("Authorization") != "Bearer topsecret-7f3a" {
			t.Errorf("after a rotation (old key in SOCIALRX_SECRET_KEY_PREVIOUS): %+v, %v", ep.Header, err)
		}

		keyless, err := referral.New(referral.Options{Store: e.store, Config: e.cfg, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		_, err = keyless.Subscribe(ctx, gp, subscription(t, hook, "Authorization: Bearer x"), "https://socialrx.example/fhir")
		wantRule(t, "channel.header without SOCIALRX_SECRET_KEY", err, "Subscription.channel.header")
		if _, err := keyless.Subscribe(ctx, gp, subscription(t, hook), "https://socialrx.example/fhir"); err != nil {
			t.Errorf("a Subscription without headers needs no key: %v", err)
		}
	})
}

// TestSubscriptionCap: a GP client may have MaxSubscriptionsPerClient active Subscriptions; one more is a 422
// that says so, nothing is stored, and deleting one makes room. Each deletion is told (metrics forget it).
func TestSubscriptionCap(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var off []string
		svc, err := referral.New(referral.Options{Store: e.store, Config: e.cfg, Logger: quiet, Secrets: e.keys,
			MaxSubscriptionsPerClient: 3, SubscriptionOff: func(id string) { off = append(off, id) }})
		if err != nil {
			t.Fatal(err)
		}
		gp := e.caller("practice-a81001")
		var ids []string
		for range 3 {
			sub, err := svc.Subscribe(ctx, gp, subscription(t, "https://gp.example.org/hook"), "https://socialrx.example/fhir")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sub.ID)
		}
		_, err = svc.Subscribe(ctx, gp, subscription(t, "https://gp.example.org/hook"), "https://socialrx.example/fhir")
		wantRule(t, "a fourth Subscription", err, "Subscription")
		if err == nil || !strings.Contains(err.Error(), "already has 3 active Subscriptions") {
			t.Errorf("the refusal must say the cap: %v", err)
		}
		all, _ := e.store.ListSubscriptions(ctx, outbox.SubscriptionQuery{OwnerClientID: gp.Client.ID})
		if len(all) != 3 {
			t.Errorf("%d subscriptions stored, want 3", len(all))
		}
		// Another client has its own count.
		if _, err := svc.Subscribe(ctx, e.caller("frome-valley-pcn"), subscription(t, "https://pcn.example.org/hook"), "https://socialrx.example/fhir"); err != nil {
			t.Errorf("another client: %v", err)
		}
		if _, err := svc.Unsubscribe(ctx, gp, ids[0]); err != nil {
			t.Fatal(err)
		}
		if len(off) != 1 || off[0] != ids[0] {
			t.Errorf("SubscriptionOff told %v, want [%s]", off, ids[0])
		}
		if _, err := svc.Subscribe(ctx, gp, subscription(t, "https://gp.example.org/hook"), "https://socialrx.example/fhir"); err != nil {
			t.Errorf("after deleting one: %v", err)
		}
	})
}

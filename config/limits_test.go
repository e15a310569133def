package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Rate{
		"50,200": {50, 200}, "0.5,10": {0.5, 10}, "20": {20, 40}, "0.2": {0.2, 1}, "off": {}, " OFF ": {},
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "fast", "-1,5", "0,5", "5,0", "5,x", "1e9"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) must fail", bad)
		}
	}
}

func TestLimitsAndSecurityFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"SOCIALRX_RATE_GP": "5,10", "SOCIALRX_RATE_ADMIN": "off", "SOCIALRX_RATE_TOKEN": "1,3",
		"SOCIALRX_MAX_CONCURRENT_BODIES": "8", "SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT": "2",
		"SOCIALRX_SUBSCRIPTIONS_PER_CLIENT": "4", "SOCIALRX_REFUSAL_DELAY": "250ms",
		"SOCIALRX_SECRET_KEY":          "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"SOCIALRX_SECRET_KEY_PREVIOUS": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
		"SOCIALRX_TRUSTED_PROXIES":     "10.0.0.0/8, 192.0.2.7",
		"SOCIALRX_METRICS_TOKEN":       "scrape", "SOCIALRX_METRICS_SUBSCRIPTION_IDS": "true", "SOCIALRX_DEMO_PUBLIC": "1",
	}
	s, err := FromEnv(Defaults(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	l := s.Limits
	if l.Role[RoleGP] != (Rate{5, 10}) || !l.Role[RoleAdmin].Off() || l.Role[RoleCommunity] != DefaultLimits().Role[RoleCommunity] ||
		l.Token != (Rate{1, 3}) || l.AuthFailures != DefaultLimits().AuthFailures || l.Bodies != 8 || l.BodiesPerClient != 2 ||
		l.SubscriptionsPerClient != 4 || l.RefusalDelay != 250*time.Millisecond {
		t.Errorf("limits: %+v", l)
	}
	sec := s.Security
	if len(sec.SecretKey) != 32 || len(sec.PreviousSecretKeys) != 1 || len(sec.TrustedProxies) != 2 ||
		sec.TrustedProxies[1].String() != "192.0.2.7/32" || sec.MetricsToken != "scrape" || !sec.MetricsSubscriptionIDs || !sec.DemoPublic {
		t.Errorf("security: %+v", sec)
	}
	if DefaultLimits().Role[RoleGP].Off() {
		t.Error("a GP client must be rate limited by default")
	}
	bad := map[string]string{
		"SOCIALRX_RATE_GP": "lots", "SOCIALRX_MAX_CONCURRENT_BODIES": "2", "SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT": "4",
		"SOCIALRX_SECRET_KEY": "c2hvcnQ=", "SOCIALRX_TRUSTED_PROXIES": "proxy.local", "SOCIALRX_DEMO_PUBLIC": "perhaps",
		"SOCIALRX_REFUSAL_DELAY": "2h",
	}
	_, err = FromEnv(Defaults(), func(k string) string { return bad[k] })
	for _, name := range []string{"SOCIALRX_RATE_GP", "SOCIALRX_MAX_CONCURRENT_BODIES_PER_CLIENT", "SOCIALRX_SECRET_KEY",
		"SOCIALRX_TRUSTED_PROXIES", "SOCIALRX_DEMO_PUBLIC", "SOCIALRX_REFUSAL_DELAY"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("the error must name %s: %v", name, err)
		}
	}
}

// TestDirectoryRefusesPublishedDemoTokens: a directory file that gives any client one of the demo's published
// token hashes is refused at start, naming the client; the demo itself still loads.
func TestDirectoryRefusesPublishedDemoTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "directory.yaml")
	y := `clients:
  - {id: my-gp, role: gp, practices: [A81001], token_sha256: "` + HashToken("a-real-secret-token") + `"}
  - {id: copied, role: admin, token_sha256: "` + HashToken("demo-admin-token") + `"}
services:
  - {id: walks, name: Walks}
`
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), `client "copied" uses the published demo token of "ops"`) || !strings.Contains(err.Error(), "clients[1]") {
		t.Fatalf("Load: %v", err)
	}
	if _, err := LoadDemo(); err != nil {
		t.Errorf("the demo itself: %v", err)
	}
}

// TestWebhookURLsAreHTTPS: a community service's webhook URL must be https; plain http only to a receiver on
// this machine. Refused at start, with a message that says why.
func TestWebhookURLsAreHTTPS(t *testing.T) {
	t.Parallel()
	svc := func(url string) string {
		return `clients: []
services:
  - {id: walks, name: Walks, delivery: {url: "` + url + `", secret: "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="}}
`
	}
	for url, ok := range map[string]bool{
		"https://walks.example.org/hooks": true, "http://127.0.0.1:8081/hooks": true, "http://localhost:8081/hooks": true,
		"http://[::1]:8081/hooks": true, "http://walks.example.org/hooks": false, "http://10.0.0.5/hooks": false,
		"https://user:pass@walks.example.org/hooks": false,
	} {
		_, err := Parse([]byte(svc(url)), "")
		if ok && err != nil {
			t.Errorf("%s: %v", url, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "services[0].delivery.url")) {
			t.Errorf("%s: %v, want refused naming services[0].delivery.url", url, err)
		}
	}
	_, err := Parse([]byte(svc("http://walks.example.org/hooks")), "")
	if err == nil || !strings.Contains(err.Error(), "must use https") {
		t.Errorf("the message must say why: %v", err)
	}
	c, err := Parse([]byte("outbound: {allow_loopback: true}\n"+svc("https://w.example/h")), "")
	if err != nil || !c.Outbound.AllowLoopback {
		t.Errorf("outbound.allow_loopback: %+v, %v", c, err)
	}
	if d, _ := LoadDemo(); !d.Outbound.AllowLoopback {
		t.Error("the demo allows loopback Subscriptions (its receiver runs on this machine)")
	}
}

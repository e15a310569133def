package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/mapping"
)

func TestDemoConfigurationLoadsAndAuthenticates(t *testing.T) {
	t.Parallel()
	c, err := LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	if !c.Demo || c.Source != "embedded demo" {
		t.Errorf("demo flags: %v %q", c.Demo, c.Source)
	}
	for token, want := range map[string]Role{
		"demo-gp-token": RoleGP, "demo-pcn-token": RoleGP, "demo-walks-token": RoleCommunity, "demo-admin-token": RoleAdmin,
	} {
		cl, ok := c.Authenticate(token)
		if !ok || cl.Role != want {
			t.Errorf("%s: got %+v %v, want role %s", token, cl, ok, want)
		}
	}
	for _, bad := range []string{"", "demo-gp-token ", "DEMO-GP-TOKEN", "nope"} {
		if _, ok := c.Authenticate(bad); ok {
			t.Errorf("token %q must not authenticate", bad)
		}
	}
	if walks, ok := c.Directory.Service("frome-walks"); !ok || walks.Contact != "01373 465000, walks@frome-walks.example.org" {
		t.Errorf("frome-walks' contact (printed on the GP letter): %q", walks.Contact)
	}
	gp, _ := c.Authenticate("demo-gp-token")
	if !gp.MayReferFrom("a81001") || gp.MayReferFrom("B82002") {
		t.Errorf("practice scope of demo-gp-token: %v", gp.Practices)
	}
	defaults := 0
	for _, s := range c.Directory.Services {
		if s.Default {
			defaults++
		}
	}
	if defaults != 1 {
		t.Errorf("demo directory has %d default services", defaults)
	}
	// The demo shows different sharing profiles (README "Patient data").
	profiles := map[string][]string{}
	for _, s := range c.Directory.Services {
		profiles[s.ID] = s.Sharing.Names()
	}
	for id, want := range map[string][]string{
		"frome-walks": {"first_name", "contact", "needs", "referrer"},
		"debt-advice": {"first_name", "name", "birth_date", "contact", "address", "language", "service_requested",
			"needs", "referrer", "consent"},
		"lunch-club": {"first_name", "contact", "language", "service_requested", "needs", "referrer", "consent"},
	} {
		if !slices.Equal(profiles[id], want) {
			t.Errorf("%s shares %v, want %v", id, profiles[id], want)
		}
	}
	if len(profiles["link-workers"]) != len(mapping.AllSharingFields()) {
		t.Errorf("link-workers shares %v, want all", profiles["link-workers"])
	}
}

func TestParseReportsEveryProblemWithItsPlace(t *testing.T) {
	t.Parallel()
	y := `clients:
  - {id: a, role: gp, token_sha256: "` + HashToken("x") + `"}
  - {id: a, role: boss, token_sha256: "abc"}
  - {id: c, role: community, service: nowhere, token_sha256: "` + HashToken("x") + `"}
services:
  - {id: s1, name: "", codes: ["no-bar"], default: true}
  - {id: s2, name: Two, default: true, delivery: {url: "ftp://x", secret: "nope"}}
  - {id: s3, name: Three, delivery: {secret: "whsec_AAAA"}}
  - {id: s4, name: Four, sharing: [nhs, name]}
  - {id: s5, name: Five, sharing: []}
  - {id: s6, name: Six, contact: "` + strings.Repeat("x", 201) + `"}
`
	_, err := Parse([]byte(y), "")
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"clients[0].practices", "clients[1].id", "clients[1].role", "clients[1].token_sha256",
		"clients[2].token_sha256: same token", "clients[2].service", "services[0].name", "services[0].codes[0]",
		"services: 2 services have default", "services[1].delivery.url", "services[1].delivery.secret",
		"services[2].delivery: a secret without a url", `services[3].sharing: unknown field "nhs"`,
		"services[4].sharing: list the fields", "services[5].contact: at most 200 characters",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("clients: []\nsurprise: 1\n"), ""); err == nil || !strings.Contains(err.Error(), "surprise") {
		t.Errorf("unknown keys must be refused: %v", err)
	}
}

func TestLoadReadsSecretFileRelativeToTheDirectoryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="
	if err := os.WriteFile(filepath.Join(dir, "walks.secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	y := `services:
  - {id: walks, name: Walks, delivery: {url: "https://walks.example/hook", secret_file: walks.secret}}
`
	p := filepath.Join(dir, "directory.yaml")
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Directory.Service("walks"); s.Delivery.Secret != secret {
		t.Errorf("secret_file not read: %q", s.Delivery.Secret)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file must fail")
	}
}

func TestSettingsFromEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SOCIALRX_ADDR": "0.0.0.0:9000", "SOCIALRX_RETRY_BUDGET": "24h", "SOCIALRX_DATABASE_URL": "sqlite:/tmp/x.db"}
	s, err := FromEnv(Defaults(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr != "0.0.0.0:9000" || s.RetryBudget != 24*time.Hour || s.DeliveryTimeout != 10*time.Second || s.LogLevel != "info" {
		t.Errorf("settings: %+v", s)
	}
	bad := map[string]string{"SOCIALRX_RETRY_BUDGET": "soon", "SOCIALRX_LOG_FORMAT": "xml", "SOCIALRX_MAX_BODY_BYTES": "12",
		"SOCIALRX_DATABASE_URL": "postgres://user:hunter2@db/x"}
	_, err = FromEnv(Defaults(), func(k string) string { return bad[k] })
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"SOCIALRX_RETRY_BUDGET", "SOCIALRX_LOG_FORMAT", "SOCIALRX_MAX_BODY_BYTES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
	if b, target, err := ParseDatabaseURL("postgres://user:hunter2@db/x"); err != nil || b != "postgres" || target == "" {
		t.Errorf("postgres URL: %s %v", b, err)
	}
	if _, _, err := ParseDatabaseURL("mysql://user:hunter2@db/x"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad URL error must not leak the password: %v", err)
	}
}

func TestValidateSecret(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{
		"whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI=": true,
		"c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI=":       false,
		"whsec_!!!":  false,
		"whsec_AAAA": false, // 3 bytes: too short
	} {
		if err := ValidateSecret(s); (err == nil) != ok {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// TestInboxSessionSettings: SOCIALRX_INBOX_IDLE_TIMEOUT and SOCIALRX_INBOX_SESSION_MAX are durations; the idle
// timeout may not exceed the absolute one; unset, both are zero (the inbox's defaults, 30m and 8h, apply).
func TestInboxSessionSettings(t *testing.T) {
	t.Parallel()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	s, err := FromEnv(Defaults(), env(map[string]string{"SOCIALRX_INBOX_IDLE_TIMEOUT": "15m", "SOCIALRX_INBOX_SESSION_MAX": "4h"}))
	if err != nil || s.InboxIdleTimeout != 15*time.Minute || s.InboxSessionMax != 4*time.Hour {
		t.Errorf("FromEnv: %v, %v, %v", s.InboxIdleTimeout, s.InboxSessionMax, err)
	}
	if s, err := FromEnv(Defaults(), env(nil)); err != nil || s.InboxIdleTimeout != 0 || s.InboxSessionMax != 0 {
		t.Errorf("unset: %v, %v, %v", s.InboxIdleTimeout, s.InboxSessionMax, err)
	}
	for _, kv := range []map[string]string{
		{"SOCIALRX_INBOX_IDLE_TIMEOUT": "2h", "SOCIALRX_INBOX_SESSION_MAX": "1h"},
		{"SOCIALRX_INBOX_IDLE_TIMEOUT": "soon"},
		{"SOCIALRX_INBOX_SESSION_MAX": "-1h"},
	} {
		if _, err := FromEnv(Defaults(), env(kv)); err == nil || !strings.Contains(err.Error(), "SOCIALRX_INBOX_") {
			t.Errorf("%v: %v, want an error naming the setting", kv, err)
		}
	}
}

// TestBaseURLAndCORSOrigins: SOCIALRX_BASE_URL and SOCIALRX_CORS_ORIGINS are read, normalised and refused with a
// message naming the setting; without a base URL the listen address is the (unconfigured) public base.
func TestBaseURLAndCORSOrigins(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SOCIALRX_BASE_URL": "https://SocialRx.Example.org/", "SOCIALRX_CORS_ORIGINS": "https://app.example.org, http://127.0.0.1:5173,https://app.example.org"}
	s, err := FromEnv(Defaults(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if s.BaseURL != "https://socialrx.example.org" {
		t.Errorf("BaseURL %q", s.BaseURL)
	}
	if got := strings.Join(s.CORSOrigins, " "); got != "https://app.example.org http://127.0.0.1:5173" {
		t.Errorf("CORSOrigins %q", got)
	}
	if b, ok := s.PublicBase("127.0.0.1:9999"); b != "https://socialrx.example.org" || !ok {
		t.Errorf("PublicBase with a base URL: %q %v", b, ok)
	}
	for addr, want := range map[string]string{"127.0.0.1:8080": "http://127.0.0.1:8080", "0.0.0.0:9000": "http://127.0.0.1:9000",
		"[::]:9000": "http://127.0.0.1:9000", ":7000": "http://127.0.0.1:7000", "[::1]:80": "http://[::1]:80"} {
		if b, ok := Defaults().PublicBase(addr); b != want || ok {
			t.Errorf("PublicBase(%q) = %q %v, want %q (not configured)", addr, b, ok, want)
		}
	}
	if b, err := ParseBaseURL("http://proxy.example.org/socialrx/"); err != nil || b != "http://proxy.example.org/socialrx" {
		t.Errorf("path prefix: %q %v", b, err)
	}
	for _, bad := range []map[string]string{
		{"SOCIALRX_BASE_URL": "socialrx.example.org"},
		{"SOCIALRX_BASE_URL": "ftp://socialrx.example.org"},
		{"SOCIALRX_BASE_URL": "https://user:secret@socialrx.example.org"},
		{"SOCIALRX_BASE_URL": "https://socialrx.example.org/?x=1"},
		{"SOCIALRX_CORS_ORIGINS": "*"},
		{"SOCIALRX_CORS_ORIGINS": "https://app.example.org/path"},
		{"SOCIALRX_CORS_ORIGINS": "app.example.org"},
		{"SOCIALRX_CORS_ORIGINS": " , "},
	} {
		_, err := FromEnv(Defaults(), func(k string) string { return bad[k] })
		var name string
		for k := range bad {
			name = k
		}
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: want an error naming %s, got %v", bad, name, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error leaks a credential: %v", err)
		}
	}
}

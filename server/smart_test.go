package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/server"
)

// smartKeys are the private keys of the two SMART test clients: a GP system (RS384) and a community platform
// (ES384).
type smartKeys struct {
	gp        *rsa.PrivateKey
	community *ecdsa.PrivateKey
	stranger  *rsa.PrivateKey // registered nowhere
}

func newSmartKeys(t testing.TB) smartKeys {
	t.Helper()
	gp, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return smartKeys{gp: gp, community: ec, stranger: stranger}
}

// newSmartHarness is the demo configuration plus two clients that authenticate with signed JWTs.
func newSmartHarness(t *testing.T, v *fhirtest.Validator, k smartKeys) *harness {
	t.Helper()
	return newHarnessWith(t, v, func(c *config.Config) {
		c.Clients = append(c.Clients,
			config.Client{ID: "emis-a81001", Role: config.RoleGP, Practices: []string{"A81001", "A81002"},
				JWKS: []jose.JSONWebKey{{Key: k.gp.Public(), KeyID: "gp-2026", Algorithm: config.AlgRS384}}},
			config.Client{ID: "museum-platform", Role: config.RoleCommunity, Service: "museum-volunteers",
				JWKS: []jose.JSONWebKey{{Key: k.community.Public(), KeyID: "ec-1", Algorithm: config.AlgES384}}})
	})
}

// now is the harness server's clock.
func (h *harness) now() time.Time { return time.UnixMicro(h.clock.Load()).UTC() }

// assertion signs a client assertion; mod may change the claims before signing.
func assertion(t testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, c jwt.Claims) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claims are valid claims for client id at the harness's token endpoint.
func (h *harness) claims(id, jti string) jwt.Claims {
	return jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{h.url + "/oauth/token"},
		Expiry: jwt.NewNumericDate(h.now().Add(4 * time.Minute)), ID: jti}
}

// tokenRequest posts a token request form.
func (h *harness) tokenRequest(form url.Values) response {
	h.t.Helper()
	return h.do(http.MethodPost, "/oauth/token", "", []byte(form.Encode()), "Content-Type: application/x-www-form-urlencoded")
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion}}
}

// accessToken gets a token and checks the answer's shape.
func (h *harness) accessToken(form url.Values, wantScope string) string {
	h.t.Helper()
	r := h.tokenRequest(form)
	if r.status != http.StatusOK {
		h.t.Fatalf("token: %d %s", r.status, r.body)
	}
	m := r.json(h.t)
	if m["token_type"] != "bearer" || m["expires_in"] != float64(300) || m["scope"] != wantScope {
		h.t.Errorf("token answer %v; want bearer, 300 s, scope %q", m, wantScope)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		h.t.Errorf("token answer Cache-Control %q", r.header.Get("Cache-Control"))
	}
	tok, _ := m["access_token"].(string)
	if !strings.HasPrefix(tok, "srx1.") {
		h.t.Fatalf("access_token %q", tok)
	}
	return tok
}

func TestSMARTDiscovery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.do(http.MethodGet, "/fhir/.well-known/smart-configuration", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	m := r.json(t)
	if m["token_endpoint"] != h.url+"/oauth/token" {
		t.Errorf("token_endpoint %v", m["token_endpoint"])
	}
	for field, want := range map[string]string{
		"grant_types_supported":                            "client_credentials",
		"token_endpoint_auth_methods_supported":            "private_key_jwt",
		"token_endpoint_auth_signing_alg_values_supported": "ES384",
		"capabilities":     "client-confidential-asymmetric",
		"scopes_supported": "system/Task.cruds",
	} {
		if !strings.Contains(string(mustMarshal(t, m[field])), `"`+want+`"`) {
			t.Errorf("%s = %v, want it to list %s", field, m[field], want)
		}
	}
}

// TestSMARTTokenAndUse: a GP system and a community platform get tokens with signed assertions and use them
// within their scopes and their roles.
func TestSMARTTokenAndUse(t *testing.T) {
	t.Parallel()
	k := newSmartKeys(t)
	h := newSmartHarness(t, fhirtest.NewValidator(t), k)

	gpTok := h.accessToken(tokenForm(assertion(t, k.gp, jose.RS384, "gp-2026", h.claims("emis-a81001", "j1")),
		"system/ServiceRequest.c system/Task.rs"),
		"system/ServiceRequest.c system/Task.rs")

	// The token works like the GP's directory token, within its scopes.
	museum := refer(h, gpTok, "museum-volunteering-bundle.json")
	if r := h.do(http.MethodGet, "/fhir/Task?focus=ServiceRequest/"+museum.sr, gpTok, nil); r.status != http.StatusOK ||
		!strings.Contains(string(r.body), museum.task) {
		t.Errorf("search with the token: %d %s", r.status, r.body)
	}
	for _, c := range []struct{ method, path, want string }{
		{http.MethodPatch, "/fhir/Task/" + museum.task, "system/Task.u"},
		{http.MethodGet, "/fhir/ServiceRequest/" + museum.sr, "system/ServiceRequest.r"},
		{http.MethodPost, "/fhir/Subscription", "system/Subscription.c"},
	} {
		r := h.do(c.method, c.path, gpTok, []byte(`{}`), "If-Match: W/\"1\"")
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s %s beyond the scopes: %d %s; want 403 naming %s", c.method, c.path, r.status, r.body, c.want)
		}
	}
	// Not a token for the JSON APIs, and public routes need none.
	if r := h.do(http.MethodGet, "/admin/v1/messages", gpTok, nil); r.status != http.StatusUnauthorized {
		t.Errorf("access token on the admin API: %d", r.status)
	}

	// v1 and wildcard scopes are narrowed to what a community client may have.
	ecTok := h.accessToken(tokenForm(assertion(t, k.community, jose.ES384, "ec-1", h.claims("museum-platform", "j1")),
		"system/*.read system/Task.write system/Subscription.*"), "system/Observation.r system/ServiceRequest.rs system/Task.rus")
	if r := h.do(http.MethodGet, "/fhir/Task/"+museum.task, ecTok, nil); r.status != http.StatusOK {
		t.Errorf("community platform reads its Task: %d %s", r.status, r.body)
	}
	// The role still scopes what it sees: another service's referral is not found.
	walks := refer(h, "", "walking-group-performer.json")
	if r := h.do(http.MethodGet, "/fhir/Task/"+walks.task, ecTok, nil); r.status != http.StatusNotFound {
		t.Errorf("another service's Task with the community token: %d", r.status)
	}
	if r := h.do(http.MethodGet, "/community/v1/referrals", ecTok, nil); r.status != http.StatusUnauthorized {
		t.Errorf("access token on the community API: %d", r.status)
	}

	// A token changed by hand, or expired, is refused.
	payload, sig, _ := strings.Cut(strings.TrimPrefix(gpTok, "srx1."), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	forged := strings.Replace(string(raw), `"ServiceRequest":"c"`, `"ServiceRequest":"cruds"`, 1)
	if forged == string(raw) {
		t.Fatalf("token payload %s", raw)
	}
	forgedTok := "srx1." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + sig
	if r := h.do(http.MethodGet, "/fhir/ServiceRequest/"+museum.sr, forgedTok, nil); r.status != http.StatusUnauthorized {
		t.Errorf("forged token: %d %s", r.status, r.body)
	}
	h.clock.Add((6 * time.Minute).Microseconds())
	if r := h.do(http.MethodGet, "/fhir/Task?focus=ServiceRequest/"+museum.sr, gpTok, nil); r.status != http.StatusUnauthorized ||
		!strings.Contains(string(r.body), "expired") {
		t.Errorf("expired token: %d %s", r.status, r.body)
	}
}

// TestSMARTRefusals: every broken assertion or request is refused with the RFC 6749 error naming the rule,
// and no token is issued.
func TestSMARTRefusals(t *testing.T) {
	t.Parallel()
	k := newSmartKeys(t)
	h := newSmartHarness(t, nil, k)
	const scope = "system/Task.rs"
	good := func(jti string) jwt.Claims { return h.claims("emis-a81001", jti) }
	with := func(jti string, mod func(*jwt.Claims)) jwt.Claims {
		c := good(jti)
		mod(&c)
		return c
	}
	rs := func(c jwt.Claims) string { return assertion(t, k.gp, jose.RS384, "gp-2026", c) }
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"gp-2026"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(mustMarshal(t, good("none"))) + "."
	hs := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256,
			Key: jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "gp-2026"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := jwt.Signed(signer).Claims(good("hs")).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()

	replayed := rs(good("once"))
	h.accessToken(tokenForm(replayed, scope), scope)

	for _, c := range []struct {
		name   string
		form   url.Values
		status int
		code   string
		says   string
	}{
		{"replayed jti", tokenForm(replayed, scope), 401, "invalid_client", "jti was used before"},
		{"wrong audience", tokenForm(rs(with("a", func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://elsewhere.example/token"} })), scope), 401, "invalid_client", "aud must be the token endpoint"},
		{"expired", tokenForm(rs(with("b", func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(h.now().Add(-time.Minute)) })), scope), 401, "invalid_client", "has expired"},
		{"exp too far ahead", tokenForm(rs(with("c", func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(h.now().Add(time.Hour)) })), scope), 401, "invalid_client", "more than five minutes ahead"},
		{"no exp", tokenForm(rs(with("d", func(c *jwt.Claims) { c.Expiry = nil })), scope), 401, "invalid_client", "needs exp"},
		{"no jti", tokenForm(rs(with("", func(*jwt.Claims) {})), scope), 401, "invalid_client", "needs a jti"},
		{"iss is not sub", tokenForm(rs(with("e", func(c *jwt.Claims) { c.Subject = "someone-else" })), scope), 401, "invalid_client", "iss and sub"},
		{"unknown client", tokenForm(assertion(t, k.stranger, jose.RS384, "gp-2026", h.claims("nobody", "f")), scope), 401, "invalid_client", `"nobody" is not registered`},
		{"client with a static token only", tokenForm(assertion(t, k.stranger, jose.RS384, "x", h.claims("practice-a81001", "g")), scope), 401, "invalid_client", "no jwks"},
		{"unknown kid", tokenForm(assertion(t, k.gp, jose.RS384, "old-key", good("h")), scope), 401, "invalid_client", `no key with kid "old-key"`},
		{"another key under the kid", tokenForm(assertion(t, k.stranger, jose.RS384, "gp-2026", good("i")), scope), 401, "invalid_client", "signature does not verify"},
		{"algorithm not the key's", tokenForm(assertion(t, k.community, jose.ES384, "gp-2026", good("j")), scope), 401, "invalid_client", "signs with RS384, not ES384"},
		{"alg none", tokenForm(unsigned, scope), 401, "invalid_client", "not a JWS signed with RS384 or ES384"},
		{"HMAC (algorithm confusion)", tokenForm(hs, scope), 401, "invalid_client", "not a JWS signed with RS384 or ES384"},
		{"not a JWT", tokenForm("hello", scope), 401, "invalid_client", "not a JWS"},
		{"no assertion", tokenForm("", scope), 400, "invalid_request", "client_assertion is required"},
		{"wrong grant type", func() url.Values { f := tokenForm(rs(good("k")), scope); f.Set("grant_type", "password"); return f }(), 400, "unsupported_grant_type", "use client_credentials"},
		{"no grant type", func() url.Values { f := tokenForm(rs(good("l")), scope); f.Del("grant_type"); return f }(), 400, "invalid_request", "grant_type is required"},
		{"wrong assertion type", func() url.Values {
			f := tokenForm(rs(good("m")), scope)
			f.Set("client_assertion_type", "urn:other")
			return f
		}(), 400, "invalid_request", "client_assertion_type must be"},
		{"no scope", tokenForm(rs(good("n")), ""), 400, "invalid_scope", "scope is required"},
		{"patient scope", tokenForm(rs(good("o")), "patient/Task.rs"), 400, "invalid_scope", "not a system scope"},
		{"scope out of the role", tokenForm(assertion(t, k.community, jose.ES384, "ec-1", h.claims("museum-platform", "p")), "system/Subscription.c"), 400, "invalid_scope", "community client"},
		{"permissions out of order", tokenForm(rs(good("q")), "system/Task.sr"), 400, "invalid_scope", "c, r, u, d, s in that order"},
	} {
		r := h.tokenRequest(c.form)
		m := r.json(t)
		if r.status != c.status || m["error"] != c.code || !strings.Contains(m["error_description"].(string), c.says) || m["access_token"] != nil {
			t.Errorf("%s: %d %s; want %d %s saying %q", c.name, r.status, r.body, c.status, c.code, c.says)
		}
		if r.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
	// Another instance on the same database refuses the used assertion too (the jti is in the store).
	// Behind one load balancer both instances know the public base URL, so the assertion's aud fits both.
	other, err := server.New(server.Options{Config: h.cfg, Store: h.store, Clock: h.now, BaseURL: h.url + "/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(other.Handler())
	defer ts.Close()
	form := tokenForm(replayed, scope)
	resp, err := http.Post(ts.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var answer map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if desc, _ := answer["error_description"].(string); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(desc, "jti was used before") {
		t.Errorf("replay at a second instance: %d %v, want 401 naming the jti", resp.StatusCode, answer)
	}
	fresh := tokenForm(rs(good("second-instance")), scope)
	resp, err = http.Post(ts.URL+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(fresh.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a fresh assertion at the second instance: %d", resp.StatusCode)
	}
	// A form that is not a form.
	r := h.do(http.MethodPost, "/oauth/token", "", mustMarshal(t, map[string]string{"grant_type": "client_credentials"}), "Content-Type: application/json")
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_request" {
		t.Errorf("JSON token request: %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodGet, "/oauth/token", "", nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Errorf("GET /oauth/token: %d Allow %q", r.status, r.header.Get("Allow"))
	}
}

// FuzzTokenRequest: whatever a client posts to the token endpoint (assertion, scope, grant type), the answer
// is a 400 or 401 OAuth error or a token; never a 5xx, never a panic, and a token only for a real signature.
func FuzzTokenRequest(f *testing.F) {
	k := newSmartKeys(f)
	cfg, err := config.LoadDemo()
	if err != nil {
		f.Fatal(err)
	}
	cfg.Clients = append(cfg.Clients, config.Client{ID: "emis-a81001", Role: config.RoleGP, Practices: []string{"A81001"},
		JWKS: []jose.JSONWebKey{{Key: k.gp.Public(), KeyID: "gp-2026", Algorithm: config.AlgRS384}}})
	st := fuzzStore(f) // SQLite, or PostgreSQL with SOCIALRX_FUZZ_BACKEND=postgres
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	srv, err := server.New(server.Options{Config: cfg, Store: st, Clock: func() time.Time { return now }, BaseURL: "http://socialrx.test/fhir"})
	if err != nil {
		f.Fatal(err)
	}
	claims := jwt.Claims{Issuer: "emis-a81001", Subject: "emis-a81001", Audience: jwt.Audience{"http://socialrx.test/oauth/token"},
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)), ID: "seed"}
	f.Add(assertion(f, k.gp, jose.RS384, "gp-2026", claims), "system/Task.rs", "client_credentials")
	f.Add("eyJhbGciOiJub25lIn0.e30.", "system/*.*", "client_credentials")
	f.Add("a.b.c", "patient/Task.read", "password")
	f.Fuzz(func(t *testing.T, assertionText, scope, grantType string) {
		form := url.Values{"grant_type": {grantType}, "scope": {scope},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertionText}}
		req := httptest.NewRequest(http.MethodPost, "http://socialrx.test/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if !strings.Contains(rec.Body.String(), `"access_token":"srx1.`) {
				t.Fatalf("200 without a token: %s", rec.Body)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["error"] == nil || m["error_description"] == nil {
				t.Fatalf("%d without an OAuth error: %s", rec.Code, rec.Body)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}

// TestSMARTAudienceKeyHeadersAndClientID: the token endpoint checks aud against the configured public URL, not
// the request's Host (an assertion minted for another server is refused even when sent with that server's
// Host); an assertion whose header points at a key by URL (jku, x5u) or embeds one (jwk) is refused; a
// client_id field that names another client than the assertion is refused, and one that names it is fine.
func TestSMARTAudienceKeyHeadersAndClientID(t *testing.T) {
	t.Parallel()
	k := newSmartKeys(t)
	h := newSmartHarness(t, nil, k)
	const scope = "system/Task.rs"
	other := jwt.Claims{Issuer: "emis-a81001", Subject: "emis-a81001", Audience: jwt.Audience{"https://other-server.example/oauth/token"},
		Expiry: jwt.NewNumericDate(h.now().Add(4 * time.Minute)), ID: "for-the-other-server"}
	r := h.doRequest(http.MethodPost, "/oauth/token", "", []byte(tokenForm(assertion(t, k.gp, jose.RS384, "gp-2026", other), scope).Encode()),
		"other-server.example", "Content-Type: application/x-www-form-urlencoded")
	if m := r.json(t); r.status != http.StatusUnauthorized || m["error"] != "invalid_client" ||
		!strings.Contains(m["error_description"].(string), h.url+"/oauth/token") {
		t.Errorf("assertion for another server sent with its Host: %d %s; want 401 naming the configured token endpoint", r.status, r.body)
	}

	withHeader := func(jti string, extra map[jose.HeaderKey]any, embed bool) string {
		opts := (&jose.SignerOptions{}).WithType("JWT")
		for k, v := range extra {
			opts = opts.WithHeader(k, v)
		}
		if embed {
			opts.EmbedJWK = true
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS384, Key: jose.JSONWebKey{Key: k.gp, KeyID: "gp-2026"}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		s, err := jwt.Signed(signer).Claims(h.claims("emis-a81001", jti)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, c := range []struct {
		name string
		form url.Values
		says string
	}{
		{"jku header", tokenForm(withHeader("jku", map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks.json"}, false), scope), "jku"},
		{"x5u header", tokenForm(withHeader("x5u", map[jose.HeaderKey]any{"x5u": "https://attacker.example/cert.pem"}, false), scope), "x5u"},
		{"embedded jwk", tokenForm(withHeader("jwk", nil, true), scope), "jwk"},
		{"client_id of another client", func() url.Values {
			f := tokenForm(assertion(t, k.gp, jose.RS384, "gp-2026", h.claims("emis-a81001", "cid")), scope)
			f.Set("client_id", "museum-platform")
			return f
		}(), `client_id "museum-platform"`},
	} {
		r := h.tokenRequest(c.form)
		m := r.json(t)
		if r.status != http.StatusUnauthorized || m["error"] != "invalid_client" || !strings.Contains(m["error_description"].(string), c.says) || m["access_token"] != nil {
			t.Errorf("%s: %d %s; want 401 invalid_client naming %s", c.name, r.status, r.body, c.says)
		}
	}
	// The same client's id beside its assertion is fine (RFC 7521 allows it).
	f := tokenForm(assertion(t, k.gp, jose.RS384, "gp-2026", h.claims("emis-a81001", "cid-ok")), scope)
	f.Set("client_id", "emis-a81001")
	h.accessToken(f, scope)
	// A GP system may be granted update on its Subscriptions (re-activation after an error).
	h.accessToken(tokenForm(assertion(t, k.gp, jose.RS384, "gp-2026", h.claims("emis-a81001", "sub-u")), "system/Subscription.u"), "system/Subscription.u")
}

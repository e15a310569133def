// Package smart is socialrx's SMART Backend Services authorisation server: the discovery document
// (GET /fhir/.well-known/smart-configuration), the token endpoint (POST /oauth/token: client_credentials with a
// private_key_jwt client assertion) and the verification of the access tokens it issues, which the FHIR API
// accepts besides the directory's static tokens.
package smart

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/referral"
	"github.com/socialrx/socialrx/server/internal/web"
)

// SMART Backend Services (docs/design.md#security-discovery): a client whose directory entry has jwks asks
// POST /oauth/token for a short-lived access token with a client assertion (a JWT it signs with RS384 or
// ES384: iss = sub = its client id, aud = the token endpoint, exp at most five minutes ahead, a jti used once)
// and the SMART scopes it wants; it then calls the FHIR API with that token. Scopes narrow what the client's
// role allows, never widen it. GET /fhir/.well-known/smart-configuration says all of this to machines.
//
// Access tokens are self-contained and signed (HMAC-SHA256 with Options.TokenKey), so any instance that
// shares the key accepts them; they name the client, which must still be in the directory with its keys.

const (
	// TokenPath is the token endpoint's path.
	TokenPath       = "/oauth/token"
	accessTokenTTL  = 5 * time.Minute
	assertionMaxTTL = 5 * time.Minute
	clockLeeway     = 30 * time.Second
	// AccessPrefix starts every access token socialrx issues (static directory tokens never do).
	AccessPrefix = "srx1."
	// assertionType is the only client_assertion_type (RFC 7523).
	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// smartPerms are the SMART v2 permission letters in their canonical order.
const smartPerms = "cruds"

// roleScopes is what each role may be granted: resource type → permissions.
var roleScopes = map[config.Role]map[string]string{
	config.RoleGP:        {"ServiceRequest": "cruds", "Task": "rus", "Subscription": "cruds", "Observation": "r"}, // u: re-activation
	config.RoleCommunity: {"ServiceRequest": "rs", "Task": "rus", "Observation": "cr"},
	config.RoleAdmin:     {"ServiceRequest": "cruds", "Task": "cruds", "Subscription": "crds", "Observation": "r"},
}

// Grant is what an access token allows: the client and, per resource type, the permission letters.
type Grant struct {
	Client string            `json:"c"`
	Scopes map[string]string `json:"s"`
	Expiry int64             `json:"e"`
}

// ScopeString renders granted scopes as SMART v2 scopes, sorted.
func ScopeString(sc map[string]string) string {
	out := make([]string, 0, len(sc))
	for res, perms := range sc {
		out = append(out, "system/"+res+"."+perms)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// parseScopes reads requested SMART scopes (v2 system/Type.cruds and v1 system/Type.read|write|*, Type may be
// *) and keeps what role may have. Scopes of other contexts (patient/, user/, launch, openid …) are refused.
func parseScopes(requested string, role config.Role) (map[string]string, error) {
	allowed := roleScopes[role]
	out := map[string]string{}
	fields := strings.Fields(requested)
	if len(fields) == 0 {
		return nil, errors.New("scope is required, e.g. system/ServiceRequest.c system/Task.rs")
	}
	for _, sc := range fields {
		rest, ok := strings.CutPrefix(sc, "system/")
		res, perms, ok2 := strings.Cut(rest, ".")
		if !ok || !ok2 || res == "" || perms == "" {
			return nil, fmt.Errorf("scope %q is not a system scope like system/Task.rs (backend services only)", sc)
		}
		if q, _, hasQuery := strings.Cut(perms, "?"); hasQuery {
			return nil, fmt.Errorf("scope %q: search-parameter scopes are not supported (%s)", sc, q)
		}
		switch perms {
		case "read":
			perms = "rs"
		case "write":
			perms = "cud"
		case "*":
			perms = smartPerms
		default:
			if !validPerms(perms) {
				return nil, fmt.Errorf("scope %q: permissions must be some of c, r, u, d, s in that order", sc)
			}
		}
		for r, may := range allowed {
			if res != "*" && res != r {
				continue
			}
			for _, p := range perms {
				if strings.ContainsRune(may, p) {
					out[r] += string(p) // canonicalPerms below drops repeats
				}
			}
		}
	}
	for r, p := range out {
		out[r] = canonicalPerms(p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("none of the requested scopes is open to a %s client (it may have %s)", role, ScopeString(allowed))
	}
	return out, nil
}

// validPerms reports whether p is a non-empty, ordered subset of "cruds".
func validPerms(p string) bool {
	last := -1
	for _, c := range p {
		i := strings.IndexRune(smartPerms, c)
		if i <= last {
			return false
		}
		last = i
	}
	return last >= 0
}

// canonicalPerms orders permission letters as "cruds".
func canonicalPerms(p string) string {
	var b strings.Builder
	for _, c := range smartPerms {
		if strings.ContainsRune(p, c) {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// RequiredScope is the resource type and permission a FHIR route and method need ("" when the route needs
// no scope: discovery).
func RequiredScope(path, method string) (string, byte) {
	rest := strings.TrimPrefix(path, "/fhir")
	if rest == "" { // POST /fhir: a transaction Bundle creating a referral
		return "ServiceRequest", 'c'
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	res := parts[0]
	if res == "metadata" || strings.HasPrefix(res, ".well-known") {
		return "", 0
	}
	last := parts[len(parts)-1]
	switch {
	case last == "_search": // POST [type]/_search is a search
		return res, 's'
	case slices.Contains(parts, "_history"): // vread, history: reads of one resource
		return res, 'r'
	case strings.HasPrefix(last, "$"): // operations read: $status of one subscription (r) or of several (s)
		if len(parts) > 2 {
			return res, 'r'
		}
		return res, 's'
	}
	instance := len(parts) > 1
	switch method {
	case http.MethodPost:
		return res, 'c'
	case http.MethodPut, http.MethodPatch:
		return res, 'u'
	case http.MethodDelete:
		return res, 'd'
	}
	if instance {
		return res, 'r'
	}
	return res, 's'
}

// Options are what the SMART server needs.
type Options struct {
	Config  *config.Config
	Service *referral.Service // records assertion ids (used once across instances)
	Logger  *slog.Logger
	Clock   func() time.Time
	// Key signs access tokens; instances that share a database must share it (SOCIALRX_TOKEN_KEY). Empty: a
	// random key, so tokens work on this process only.
	Key []byte
	// Base is the public base URL of the FHIR API (SOCIALRX_BASE_URL + "/fhir"): the token endpoint it names,
	// and the audience client assertions must carry, are built on it, never on a request's Host.
	Base string
}

// Server issues and verifies SMART Backend Services access tokens.
type Server struct {
	cfg      *config.Config
	svc      *referral.Service
	log      *slog.Logger
	now      func() time.Time
	tokenKey []byte
	base     string
}

// New returns the SMART server.
func New(o Options) (*Server, error) {
	key, err := tokenKeyOrRandom(o.Key)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: o.Config, svc: o.Service, log: o.Logger, now: o.Clock, tokenKey: key, base: o.Base}, nil
}

// Routes are the discovery document and the token endpoint (both public: the token endpoint authenticates
// the client by its signed assertion).
func (s *Server) Routes() []web.Route {
	return []web.Route{
		{Path: "/fhir/.well-known/smart-configuration", Name: "smart_configuration", Access: web.Public,
			Methods: map[string]http.HandlerFunc{http.MethodGet: s.smartConfiguration}},
		{Path: TokenPath, Name: "oauth_token", Access: web.Public, Methods: map[string]http.HandlerFunc{http.MethodPost: s.token}},
	}
}

// tokenKeyOrRandom returns key, or 32 random bytes when key is empty (tokens then work on this process only).
func tokenKeyOrRandom(key []byte) ([]byte, error) {
	if len(key) > 0 {
		return key, nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("smart: token key: %w", err)
	}
	return k, nil
}

// signGrant encodes g as an access token.
func (s *Server) signGrant(g Grant) (string, error) {
	b, err := json.Marshal(g)
	if err != nil {
		return "", fmt.Errorf("encode access token: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return AccessPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(s.grantMAC(payload)), nil
}

func (s *Server) grantMAC(payload string) []byte {
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write([]byte(AccessPrefix + payload))
	return m.Sum(nil)
}

// Verify checks an access token socialrx issued: signature, expiry, and that its client is still in
// the directory with keys. The error says why, without the token.
func (s *Server) Verify(token string) (config.Client, Grant, error) {
	rest := strings.TrimPrefix(token, AccessPrefix)
	payload, sig, ok := strings.Cut(rest, ".")
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(mac, s.grantMAC(payload)) {
		return config.Client{}, Grant{}, errors.New("access token is not valid here (damaged, or issued with another key)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	var g Grant
	if err != nil || json.Unmarshal(raw, &g) != nil {
		return config.Client{}, Grant{}, errors.New("access token is damaged")
	}
	if !s.now().Before(time.Unix(g.Expiry, 0)) {
		return config.Client{}, Grant{}, errors.New("access token has expired; ask " + TokenPath + " for a new one")
	}
	cl, ok := s.clientByID(g.Client)
	if !ok || len(cl.JWKS) == 0 {
		return config.Client{}, Grant{}, errors.New("access token's client is no longer in the directory")
	}
	return cl, g, nil
}

// clientByID finds a directory client.
func (s *Server) clientByID(id string) (config.Client, bool) {
	for _, cl := range s.cfg.Clients {
		if cl.ID == id {
			return cl, true
		}
	}
	return config.Client{}, false
}

// tokenEndpoint is the token endpoint's absolute URL under the configured base (the aud of client assertions).
func (s *Server) tokenEndpoint() string {
	return strings.TrimSuffix(s.base, "/fhir") + TokenPath
}

// smartConfiguration is GET /fhir/.well-known/smart-configuration.
func (s *Server) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	var scopes []string
	for _, res := range []string{"ServiceRequest", "Task", "Subscription"} {
		scopes = append(scopes, "system/"+res+".cruds", "system/"+res+".read", "system/"+res+".write")
	}
	w.Header().Set("Cache-Control", "max-age=3600")
	web.WriteJSON(w, s.log, http.StatusOK, map[string]any{
		"issuer":                                strings.TrimSuffix(s.base, "/fhir"),
		"token_endpoint":                        s.tokenEndpoint(),
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
		"token_endpoint_auth_signing_alg_values_supported": []string{config.AlgRS384, config.AlgES384},
		"scopes_supported": scopes,
		"capabilities":     []string{"client-confidential-asymmetric", "permission-v1", "permission-v2"},
	})
}

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

// writeOAuth answers the token endpoint (never cached; Retry-After on 429 and 503).
func (s *Server) writeOAuth(w http.ResponseWriter, r *http.Request, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	web.SetRetryAfter(w, status, nil)
	if oe, ok := v.(*oauthError); ok {
		if oe.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="socialrx"`)
		}
		s.log.Info("token request refused", "request_id", web.RequestID(r.Context()), "status", oe.Status, "error", oe.Code,
			"reason", oe.Description)
	}
	web.WriteJSON(w, s.log, status, v)
}

// WriteError answers a token endpoint request that was refused before it reached the endpoint (a rate
// limit, a busy server, a request too large or malformed) in RFC 6749's error format: 429 and 503 are
// temporarily_unavailable with Retry-After, 401 invalid_client, other 4xx invalid_request, the rest
// server_error; error_description says why.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := web.JSONError(err)
	web.LogFailure(log, r, status, err)
	code := "invalid_request"
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable:
		code = "temporarily_unavailable"
	case status == http.StatusUnauthorized:
		code = "invalid_client"
	case status >= 500:
		code = "server_error"
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	web.SetRetryAfter(w, status, err)
	web.WriteJSON(w, log, status, &oauthError{Status: status, Code: code, Description: body.Message})
}

// token is POST /oauth/token: client_credentials with a private_key_jwt client assertion.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	g, err := s.issue(w, r)
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			oe = &oauthError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "try again shortly"}
			s.log.Error("token request failed", "request_id", web.RequestID(r.Context()), "err", err)
		}
		s.writeOAuth(w, r, oe.Status, oe)
		return
	}
	tok, err := s.signGrant(g)
	if err != nil {
		s.log.Error("token request failed", "request_id", web.RequestID(r.Context()), "err", err)
		s.writeOAuth(w, r, http.StatusServiceUnavailable, &oauthError{Status: http.StatusServiceUnavailable,
			Code: "temporarily_unavailable", Description: "try again shortly"})
		return
	}
	s.log.Info("access token issued", "request_id", web.RequestID(r.Context()), "client", g.Client, "scope", ScopeString(g.Scopes))
	s.writeOAuth(w, r, http.StatusOK, map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": int(accessTokenTTL / time.Second),
		"scope": ScopeString(g.Scopes),
	})
}

// issue checks a token request and returns the grant to sign.
func (s *Server) issue(w http.ResponseWriter, r *http.Request) (Grant, error) {
	bad := func(code, msg string) error {
		return &oauthError{Status: http.StatusBadRequest, Code: code, Description: msg}
	}
	if err := web.ReadForm(w, r, 64<<10); err != nil {
		return Grant{}, bad("invalid_request", err.Error())
	}
	f := r.PostForm
	if k := web.RepeatedField(f, "grant_type", "scope", "client_assertion_type", "client_assertion", "client_id"); k != "" {
		return Grant{}, bad("invalid_request", k+" was sent more than once")
	}
	if gt := f.Get("grant_type"); gt != "client_credentials" {
		if gt == "" {
			return Grant{}, bad("invalid_request", "grant_type is required: client_credentials")
		}
		return Grant{}, bad("unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported; use client_credentials", gt))
	}
	if f.Get("client_assertion_type") != assertionType {
		return Grant{}, bad("invalid_request", "client_assertion_type must be "+assertionType)
	}
	assertion := f.Get("client_assertion")
	if assertion == "" {
		return Grant{}, bad("invalid_request", "client_assertion is required: a JWT signed with one of your registered keys")
	}
	cl, err := s.checkAssertion(r, assertion)
	if err != nil {
		return Grant{}, err
	}
	if id, sent := f["client_id"]; sent && id[0] != cl.ID {
		// RFC 7521 §4.2: a client_id sent beside the assertion must name the client the assertion
		// authenticates; anything else is a confused (or forged) request.
		return Grant{}, &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client",
			Description: fmt.Sprintf("client_id %q is not the client the assertion authenticates (%s)", id[0], cl.ID)}
	}
	scopes, err := parseScopes(f.Get("scope"), cl.Role)
	if err != nil {
		return Grant{}, bad("invalid_scope", err.Error())
	}
	return Grant{Client: cl.ID, Scopes: scopes, Expiry: s.now().Add(accessTokenTTL).Unix()}, nil
}

// checkAssertion verifies a client assertion (RFC 7523 as SMART Backend Services profiles it) and returns its
// client. Every refusal is invalid_client (401) naming the rule.
func (s *Server) checkAssertion(r *http.Request, assertion string) (config.Client, error) {
	refuse := func(format string, args ...any) error {
		return &oauthError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: fmt.Sprintf(format, args...)}
	}
	tok, err := jwt.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS384, jose.ES384})
	if err != nil {
		return config.Client{}, refuse("client_assertion is not a JWS signed with RS384 or ES384: %s", shortJOSE(err))
	}
	if len(tok.Headers) == 1 {
		if key := foreignKeyHeader(tok.Headers[0]); key != "" {
			return config.Client{}, refuse("client_assertion's header names a key by %s; socialrx verifies assertions only with the keys registered in the directory, named by kid: remove %s", key, key)
		}
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return config.Client{}, refuse("client_assertion's header must name its key (kid)")
	}
	hdr := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return config.Client{}, refuse("client_assertion's claims are not readable: %s", shortJOSE(err))
	}
	if unverified.Issuer == "" || unverified.Issuer != unverified.Subject {
		return config.Client{}, refuse("client_assertion's iss and sub must both be your client id")
	}
	cl, ok := s.clientByID(unverified.Issuer)
	if !ok || len(cl.JWKS) == 0 {
		return config.Client{}, refuse("client %q is not registered for signed-JWT authentication (no jwks in the directory)", unverified.Issuer)
	}
	idx := slices.IndexFunc(cl.JWKS, func(k jose.JSONWebKey) bool { return k.KeyID == hdr.KeyID })
	if idx < 0 {
		return config.Client{}, refuse("client %q has no key with kid %q", cl.ID, hdr.KeyID)
	}
	key := cl.JWKS[idx]
	if hdr.Algorithm != key.Algorithm {
		return config.Client{}, refuse("key %q signs with %s, not %s", key.KeyID, key.Algorithm, hdr.Algorithm)
	}
	var claims jwt.Claims
	if err := tok.Claims(key.Key, &claims); err != nil {
		return config.Client{}, refuse("client_assertion's signature does not verify with key %q", key.KeyID)
	}
	now := s.now()
	aud := s.tokenEndpoint()
	switch {
	case claims.Expiry == nil:
		return config.Client{}, refuse("client_assertion needs exp")
	case !now.Before(claims.Expiry.Time().Add(clockLeeway)):
		return config.Client{}, refuse("client_assertion has expired")
	case claims.Expiry.Time().After(now.Add(assertionMaxTTL + clockLeeway)):
		return config.Client{}, refuse("client_assertion's exp is more than five minutes ahead")
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(clockLeeway)):
		return config.Client{}, refuse("client_assertion is not valid yet (nbf)")
	case !claims.Audience.Contains(aud):
		return config.Client{}, refuse("client_assertion's aud must be the token endpoint %s", aud)
	case claims.ID == "":
		return config.Client{}, refuse("client_assertion needs a jti (used once)")
	}
	if err := s.useJTI(r, cl.ID, claims.ID, claims.Expiry.Time().Add(clockLeeway)); err != nil {
		var oe *oauthError
		if errors.As(err, &oe) {
			return config.Client{}, refuse("%s", oe.Description)
		}
		return config.Client{}, err
	}
	return cl, nil
}

// foreignKeyHeader names a JOSE header that points at a key other than a directory key named by kid (jku,
// x5u: a URL to fetch; jwk: the key itself), or "" when there is none. socialrx never fetches nor trusts such
// a key (whoever controls the URL or the embedded key would control the verification), and says so rather
// than ignore a header the client may believe is used.
func foreignKeyHeader(h jose.Header) string {
	if h.JSONWebKey != nil {
		return "jwk"
	}
	for _, k := range []jose.HeaderKey{"jku", "x5u"} {
		if _, ok := h.ExtraHeaders[k]; ok {
			return string(k)
		}
	}
	return ""
}

// useJTI records an assertion's jti until it expires (referral.Service.UseOnce, in the store), so that no
// instance sharing the database accepts it twice; a jti seen before is an *oauthError. The key is a hash, so
// any jti text is stored safely.
func (s *Server) useJTI(r *http.Request, client, jti string, expiry time.Time) error {
	sum := sha256.Sum256([]byte(client + "\x00" + jti))
	fresh, err := s.svc.UseOnce(r.Context(), "jti:"+hex.EncodeToString(sum[:]), expiry)
	if err != nil {
		return fmt.Errorf("record jti: %w", err)
	}
	if !fresh {
		return &oauthError{Code: "invalid_client", Description: "client_assertion's jti was used before; sign a new assertion for every request"}
	}
	return nil
}

// shortJOSE is a library error without anything from the token.
func shortJOSE(err error) string {
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

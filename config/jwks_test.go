package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// jwkJSON is one key as a JWK Set member (public unless the key is private), with kid and alg.
func jwkJSON(t *testing.T, key any, kid, alg string) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestClientJWKS(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name, keys string) string {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"keys":[`+keys+`]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	yaml := func(client string) []byte {
		return []byte("clients:\n" + client + "\nservices:\n  - id: walks\n    name: Walks\n")
	}

	// Inline (JSON is YAML) and from a file relative to the directory file; no static token needed.
	good := "  - id: emis\n    role: gp\n    practices: [A81001]\n    jwks: {\"keys\": [" + jwkJSON(t, rsaKey.Public(), "r1", "") + "]}\n" +
		"  - id: platform\n    role: community\n    service: walks\n    jwks_file: " + file("ec.json", jwkJSON(t, p384.Public(), "e1", "ES384"))
	c, err := Parse(yaml(good), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Clients) != 2 || c.Clients[0].JWKS[0].Algorithm != AlgRS384 || c.Clients[1].JWKS[0].Algorithm != AlgES384 {
		t.Fatalf("clients %+v", c.Clients)
	}
	if _, ok := c.Authenticate(strings.Repeat("0", 64)); ok {
		t.Error("a client without a static token authenticated with an arbitrary token")
	}
	if _, ok := c.Authenticate(""); ok {
		t.Error("the empty token authenticated")
	}

	for _, tc := range []struct{ name, client, want string }{
		{"private key", "    jwks: {\"keys\": [" + jwkJSON(t, rsaKey, "r1", "") + "]}", "is a private key"},
		{"no kid", "    jwks: {\"keys\": [" + jwkJSON(t, rsaKey.Public(), "", "") + "]}", "kid is required"},
		{"kid twice", "    jwks: {\"keys\": [" + jwkJSON(t, rsaKey.Public(), "k", "") + "," + jwkJSON(t, p384.Public(), "k", "") + "]}", "used twice"},
		{"small RSA", "    jwks: {\"keys\": [" + jwkJSON(t, small.Public(), "s", "") + "]}", "use at least 2048"},
		{"P-256", "    jwks: {\"keys\": [" + jwkJSON(t, p256.Public(), "p", "") + "]}", "ES384 needs P-384"},
		{"alg that does not fit", "    jwks: {\"keys\": [" + jwkJSON(t, rsaKey.Public(), "r", "RS256") + "]}", `alg "RS256" does not fit`},
		{"symmetric key", "    jwks: {\"keys\": [{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"o\"}]}", "shared-secret (oct) key is not supported"},
		{"empty set", "    jwks: {\"keys\": []}", "no keys"},
		{"both", "    jwks: {\"keys\": []}\n    jwks_file: x.json", "not both"},
		{"missing file", "    jwks_file: missing.json", "jwks_file"},
		{"neither token nor keys", "", "unless the client has jwks"},
	} {
		_, err := Parse(yaml("  - id: emis\n    role: gp\n    practices: [A81001]\n"+tc.client), dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "clients[0]") {
			t.Errorf("%s: %v; want an error at clients[0] saying %q", tc.name, err, tc.want)
		}
	}
}

func TestTokenKeySetting(t *testing.T) {
	t.Parallel()
	key := "c29jaWFscngtdG9rZW4ta2V5LWZvci10ZXN0cy0zMi1ieXRlcw==" // "socialrx-token-key-for-tests-32-bytes"
	s, err := FromEnv(Defaults(), func(k string) string { return map[string]string{"SOCIALRX_TOKEN_KEY": key}[k] })
	if err != nil || string(s.TokenKey) != "socialrx-token-key-for-tests-32-bytes" {
		t.Fatalf("token key: %d bytes, %v", len(s.TokenKey), err)
	}
	for _, bad := range []string{"c2hvcnQ=", "not base64!"} {
		_, err := FromEnv(Defaults(), func(k string) string { return map[string]string{"SOCIALRX_TOKEN_KEY": bad}[k] })
		if err == nil || !strings.Contains(err.Error(), "SOCIALRX_TOKEN_KEY") || strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v; want an error naming the setting, not echoing the value", bad, err)
		}
	}
}

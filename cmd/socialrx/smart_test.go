package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/socialrx/socialrx/config"
)

// TestSMARTEndToEnd: an operator registers a GP system's public key with `socialrx jwks`, the GP system signs
// assertions with `socialrx client-assertion`, gets an access token from the running service and refers with it.
func TestSMARTEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "gp-key.pem")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if c := CLI(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errb); c != 0 {
			t.Fatalf("socialrx %v: exit %d: %s", args, c, errb.String())
		}
		return strings.TrimSpace(out.String())
	}

	jwks := run("jwks", "--kid", "gp-2026", keyPath)
	if strings.Contains(jwks, `"d"`) || !strings.Contains(jwks, `"alg":"ES384"`) {
		t.Fatalf("jwks must hold the public key only, for ES384: %s", jwks)
	}
	if err := os.WriteFile(filepath.Join(dir, "gp-jwks.json"), []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	directory := filepath.Join(dir, "directory.yaml")
	y := `clients:
  - {id: emis-a81001, role: gp, practices: [A81001], jwks_file: gp-jwks.json}
services:
  - {id: link-workers, name: Link workers, default: true}
`
	if err := os.WriteFile(directory, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	base, exit, stop := startMain(t, map[string]string{"SOCIALRX_CONFIG": directory, "SOCIALRX_ADDR": "127.0.0.1:0",
		"SOCIALRX_DATABASE_URL": "sqlite:" + filepath.Join(dir, "socialrx.db"), "SOCIALRX_LOG_FORMAT": "json",
		"SOCIALRX_TOKEN_KEY": "c29jaWFscngtdG9rZW4ta2V5LWZvci10ZXN0cy0zMi1ieXRlcw=="})
	defer func() {
		stop()
		if c := <-exit; c != 0 {
			t.Errorf("serve exited %d", c)
		}
	}()

	var disc map[string]any
	if code, body := call(t, http.MethodGet, base+"/fhir/.well-known/smart-configuration", "", nil); code != http.StatusOK ||
		json.Unmarshal(body, &disc) != nil || disc["token_endpoint"] != base+"/oauth/token" {
		t.Fatalf("discovery: %d %s", code, body)
	}
	tokenURL := disc["token_endpoint"].(string)
	jwt := run("client-assertion", "--key", keyPath, "--kid", "gp-2026", "--client", "emis-a81001", "--aud", tokenURL)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/ServiceRequest.cr system/Task.rs"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {jwt}}
	resp, err := http.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token: %d %+v %v", resp.StatusCode, tok, err)
	}
	resp.Body.Close()
	if tok.Scope != "system/ServiceRequest.cr system/Task.rs" {
		t.Errorf("granted scope %q", tok.Scope)
	}
	body, err := os.ReadFile("../../testdata/referrals/link-worker-befriending-default.json")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := call(t, http.MethodPost, base+"/fhir/ServiceRequest", tok.AccessToken, body); code != http.StatusCreated {
		t.Fatalf("refer with the access token: %d %s", code, out)
	}
	// The same assertion again is a replay.
	resp, err = http.Post(tokenURL, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replayed assertion: %d", resp.StatusCode)
	}
	if _, err := config.Load(directory); err != nil {
		t.Errorf("the directory file with the printed jwks does not load: %v", err)
	}
}

package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/postgres"
	"github.com/socialrx/socialrx/outbox/postgres/pgtest"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/server"
)

// fuzzStore is the store a fuzz target runs on: SQLite, or PostgreSQL when SOCIALRX_FUZZ_BACKEND=postgres
// (make fuzz runs the store-touching targets on both; a fresh schema of the test server, skipped without
// one unless CI is set).
func fuzzStore(f *testing.F) outbox.Store {
	f.Helper()
	quiet := slog.New(slog.DiscardHandler)
	var st outbox.Store
	var err error
	switch b := os.Getenv("SOCIALRX_FUZZ_BACKEND"); b {
	case "", "sqlite":
		st, err = sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"), sqlite.Options{Logger: quiet})
	case "postgres":
		st, err = postgres.Open(context.Background(), pgtest.FreshSchema(f), postgres.Options{Logger: quiet, MaxConns: 4, NoListen: true})
	default:
		f.Fatalf("SOCIALRX_FUZZ_BACKEND=%q: use sqlite or postgres", b)
	}
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	return st
}

// FuzzAPIs: whatever a client sends to any API — any method, path, query, body and media type, including NUL
// bytes, invalid UTF-8, odd escapes and huge numbers — with a valid token of each role, the answer is never a
// 5xx and never a panic, on SQLite and on PostgreSQL (SOCIALRX_FUZZ_BACKEND). Bad input gets a 4xx.
func FuzzAPIs(f *testing.F) {
	st := fuzzStore(f)
	cfg, err := config.LoadDemo()
	if err != nil {
		f.Fatal(err)
	}
	keys, _ := outbox.RandomKeyring()
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	srv, err := server.New(server.Options{Config: cfg, Store: st, Secrets: keys, Clock: func() time.Time { return now },
		BaseURL: "http://socialrx.test/fhir"})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	tokens := []string{"", tokGP, tokPCN, tokWalks, tokAdmin, "srx1.e30.AAAA", "wrong"}
	referral, err := os.ReadFile(filepath.Join(referrals, "walking-group-performer.json"))
	if err != nil {
		f.Fatal(err)
	}
	// Seed one referral, so that ids, searches and updates find something to work on.
	seed := httptest.NewRequest(http.MethodPost, "http://socialrx.test/fhir/ServiceRequest", bytes.NewReader(referral))
	seed.Header.Set("Authorization", "Bearer "+tokGP)
	seed.Header.Set("Content-Type", fhirJSON)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, seed)
	if rec.Code != http.StatusCreated {
		f.Fatalf("seed referral: %d %s", rec.Code, rec.Body)
	}
	for _, s := range []struct {
		tok          uint8
		method, path string
		body         []byte
		ct           string
	}{
		{1, "GET", "/fhir/Task?owner=no-such-service", nil, ""},
		{1, "GET", "/fhir/Task/%00", nil, ""},
		{1, "GET", "/fhir/ServiceRequest?identifier=%FF%FE&_count=99999999999999999999", nil, ""},
		{1, "GET", "/fhir/Task?_cursor=AAAA&_lastUpdated=gt2026-13-45", nil, ""},
		{2, "GET", "/fhir/Task?requester:identifier=https://fhir.nhs.uk/Id/ods-organization-code|B82002", nil, ""},
		{1, "POST", "/fhir/ServiceRequest", referral, fhirJSON},
		{1, "POST", "/fhir/ServiceRequest", []byte(`{"resourceType":"ServiceRequest","identifier":[{"value":"\u0000"}]}`), fhirJSON},
		{1, "POST", "/fhir", []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{}]}`), fhirJSON},
		{1, "POST", "/fhir/Subscription", []byte(`{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"Task?x","channel":{"type":"rest-hook","endpoint":"http://169.254.169.254/","payload":"application/fhir+json","header":["Cookie: a"]}}`), fhirJSON},
		{3, "PATCH", "/fhir/Task/x", []byte(`[{"op":"replace","path":"/status","value":"\u0000"}]`), "application/json-patch+json"},
		{3, "GET", "/community/v1/referrals?since=%00&limit=-1", nil, ""},
		{3, "POST", "/community/v1/referrals/x/status", []byte("{\"status\":\"received\",\"reason\":\"\xff\"}"), "application/json"},
		{4, "GET", "/admin/v1/messages?state=dead&older_than=-5h&after_seq=-1", nil, ""},
		{4, "POST", "/admin/v1/replay", []byte(`{"ids":["\u0000"],"reason":"x"}`), "application/json"},
		{0, "POST", "/oauth/token", []byte("grant_type=client_credentials&client_assertion=%00"), "application/x-www-form-urlencoded"},
		{0, "GET", "/inbox/referrals/%FF", nil, ""},
	} {
		f.Add(s.tok, s.method, s.path, s.body, s.ct)
	}
	f.Fuzz(func(t *testing.T, tok uint8, method, path string, body []byte, ct string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || len(method) > 16 {
			t.Skip() // not an HTTP method: net/http refuses it before socialrx sees it
		}
		u, err := url.Parse("http://socialrx.test" + path)
		if err != nil || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n#") {
			t.Skip() // not a request target a client can send
		}
		req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
		if err != nil {
			t.Skip()
		}
		req.RequestURI = u.RequestURI()
		if tok := tokens[int(tok)%len(tokens)]; tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if ct != "" && !strings.ContainsAny(ct, "\r\n\x00") {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s (%q, %d bytes): %d %s", method, path, ct, len(body), rec.Code, rec.Body)
		}
	})
}

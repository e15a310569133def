package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir/fhirtest"
	"github.com/socialrx/socialrx/outbox"
	"github.com/socialrx/socialrx/outbox/sqlite"
	"github.com/socialrx/socialrx/server"
)

// Demo tokens (config/demo.yaml, documented in README.md).
const (
	tokGP     = "demo-gp-token"     // practice A81001
	tokPCN    = "demo-pcn-token"    // A81001–A81004
	tokGP2    = "demo-gp2-token"    // B82002
	tokWalks  = "demo-walks-token"  // community frome-walks
	tokMuseum = "demo-museum-token" // community museum-volunteers
	tokAdmin  = "demo-admin-token"  // admin
	fhirJSON  = "application/fhir+json"
	referrals = "../testdata/referrals"
	corpus    = "../testdata/conformance" // the FHIR R4 conformance corpus (testdata/conformance/SOURCES.md)
)

// harness is a real server on loopback over a real SQLite file.
type harness struct {
	t     *testing.T
	url   string
	store outbox.Store
	v     *fhirtest.Validator
	clock *atomic.Int64 // unix micro
	cfg   *config.Config
	keys  *outbox.Keyring       // seals Subscription channel.header values (the server's and the dispatcher's)
	opt   func(*server.Options) // changes each instance's server options (nil: none)
}

func newHarness(t *testing.T, v *fhirtest.Validator) *harness {
	t.Helper()
	return newHarnessWith(t, v, nil)
}

// newHarnessWith is newHarness with the demo configuration changed by mod (e.g. a service's webhook URL).
func newHarnessWith(t *testing.T, v *fhirtest.Validator, mod func(*config.Config)) *harness {
	t.Helper()
	return newHarnessLogged(t, v, mod, nil)
}

// newHarnessLogged is newHarnessWith with the server logging to log (nil: nowhere).
func newHarnessLogged(t *testing.T, v *fhirtest.Validator, mod func(*config.Config), log *slog.Logger) *harness {
	t.Helper()
	return newHarnessOpts(t, v, mod, func(o *server.Options) { o.Logger = log })
}

// newHarnessOpts is newHarnessWith with the server's options changed by opt (e.g. CORS origins), for every
// instance.
func newHarnessOpts(t *testing.T, v *fhirtest.Validator, mod func(*config.Config), opt func(*server.Options)) *harness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "socialrx.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	cfg, err := config.LoadDemo()
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(cfg)
	}
	keys, err := outbox.RandomKeyring()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: st, v: v, clock: &atomic.Int64{}, cfg: cfg, keys: keys, opt: opt}
	h.clock.Store(time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC).UnixMicro())
	h.url = h.instance(cfg, nil)
	return h
}

// instance starts one more socialrx server on loopback over the harness's store and clock (another
// instance sharing the database) with directory cfg and the harness's server options, its handler wrapped by
// wrap when not nil; it returns its base URL. The server's public base URL is configured (never derived from a
// request's Host): the instance's own loopback address, known before it starts serving.
func (h *harness) instance(cfg *config.Config, wrap func(http.Handler) http.Handler) string {
	h.t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	audit := outbox.NewAuditLog(h.store, outbox.AuditLogOptions{Instance: "test"})
	h.t.Cleanup(audit.Close) // after the server closes (cleanups run last first)
	opts := server.Options{Config: cfg, Store: h.store, Version: "test", BaseURL: base + "/fhir", Secrets: h.keys,
		Clock: func() time.Time { return time.UnixMicro(h.clock.Add(1000)).UTC() }, Auditor: audit}
	if h.opt != nil {
		h.opt(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	handler := srv.Handler()
	if wrap != nil {
		handler = wrap(handler)
	}
	ts.Config.Handler = handler
	ts.Start()
	h.t.Cleanup(ts.Close)
	return base
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, r.body)
	}
	return m
}

// do sends a request; headers are "Name: value" strings.
func (h *harness) do(method, path, token string, body []byte, headers ...string) response {
	h.t.Helper()
	return h.doRequest(method, path, token, body, "", headers...)
}

// doRequest is do with the request's Host (when not empty).
func (h *harness) doRequest(method, path, token string, body []byte, host string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", fhirJSON)
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	// Every FHIR body socialrx returns must be valid R4 JSON (official schema, independent validator).
	if h.v != nil && strings.HasPrefix(resp.Header.Get("Content-Type"), fhirJSON) && len(b) > 0 {
		if err := h.v.Validate(h.t, b); err != nil {
			h.t.Errorf("%s %s returned invalid FHIR R4 JSON: %v\n%s", method, path, err, b)
		}
	}
	return r
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issues returns the OperationOutcome's issues as (code, expressions) pairs.
func issues(t *testing.T, r response) []ooIssue {
	t.Helper()
	var oo struct {
		ResourceType string    `json:"resourceType"`
		ID           string    `json:"id"`
		Issue        []ooIssue `json:"issue"`
	}
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" {
		t.Fatalf("want an OperationOutcome, got %d %s", r.status, r.body)
	}
	if oo.ID == "" || oo.ID != r.header.Get("X-Request-ID") {
		t.Errorf("OperationOutcome.id %q must equal X-Request-ID %q", oo.ID, r.header.Get("X-Request-ID"))
	}
	return oo.Issue
}

type ooIssue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics"`
	Expression  []string `json:"expression"`
}

func hasExpression(is []ooIssue, expr string) bool {
	for _, i := range is {
		for _, e := range i.Expression {
			if e == expr || strings.HasPrefix(e, expr+".") || strings.HasPrefix(e, expr+"[") {
				return true
			}
		}
	}
	return false
}

// countReferrals counts every referral in the store (admin scope).
func (h *harness) countReferrals() int {
	h.t.Helper()
	refs, _, err := h.store.SearchReferrals(context.Background(), outbox.ReferralQuery{Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	return len(refs)
}

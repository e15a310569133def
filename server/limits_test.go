package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/socialrx/socialrx/config"
)

// testLimits are small limits that a test can reach in a few requests.
func testLimits() *config.Limits {
	return &config.Limits{
		Role: map[config.Role]config.Rate{
			config.RoleGP:        {PerSecond: 1, Burst: 2},
			config.RoleCommunity: {PerSecond: 1, Burst: 2},
			config.RoleAdmin:     {PerSecond: 1, Burst: 2},
		},
		Token:        config.Rate{PerSecond: 1, Burst: 2},
		AuthFailures: config.Rate{PerSecond: 1, Burst: 3},
	}
}

// wantRetryAfter checks a refusal's Retry-After: whole seconds, at least one.
func wantRetryAfter(t *testing.T, what string, r response) {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Errorf("%s: Retry-After %q, want whole seconds ≥ 1", what, r.header.Get("Retry-After"))
	}
}

// TestRateLimitsEveryAPI: each client's requests come out of its role's token bucket, on every API, and the
// token endpoint's out of its address's; beyond it the answer is 429 with Retry-After in that API's format
// (OperationOutcome transient, the JSON error rate_limited, RFC 6749 temporarily_unavailable), and the bucket
// refills with time. One client's empty bucket is not another's.
func TestRateLimitsEveryAPI(t *testing.T) {
	t.Parallel()
	h := newHostile(t, backends()[0].open(t), testLimits(), nil)
	for _, api := range []struct {
		name, path, token, format string
	}{
		{"FHIR", "/fhir/Task", tokGP, "fhir"},
		{"community", "/community/v1/referrals", tokWalks, "json"},
		{"admin", "/admin/v1/messages", tokAdmin, "json"},
	} {
		for i := range 2 {
			if r := h.do(http.MethodGet, api.path, api.token, nil); r.status != http.StatusOK {
				t.Fatalf("%s request %d within the burst: %d %s", api.name, i+1, r.status, r.body)
			}
		}
		r := h.do(http.MethodGet, api.path, api.token, nil)
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("%s beyond the burst: %d %s, want 429", api.name, r.status, r.body)
		}
		wantRetryAfter(t, api.name, r)
		switch api.format {
		case "fhir":
			if is := issues(t, r); len(is) != 1 || is[0].Code != "transient" || !strings.Contains(is[0].Diagnostics, "too many requests") {
				t.Errorf("%s 429: %s", api.name, r.body)
			}
		case "json":
			if code, _, msg := apiErr(t, r); code != "rate_limited" || !strings.Contains(msg, "Retry-After") {
				t.Errorf("%s 429: %s", api.name, r.body)
			}
		}
	}
	// Another GP client is not held back by the first one's empty bucket.
	if r := h.do(http.MethodGet, "/fhir/Task", tokGP2, nil); r.status != http.StatusOK {
		t.Errorf("another GP client: %d %s", r.status, r.body)
	}
	// The token endpoint, per client address.
	form := []byte(url.Values{"grant_type": {"client_credentials"}}.Encode())
	for i := range 2 {
		if r := h.do(http.MethodPost, "/oauth/token", "", form, "Content-Type: application/x-www-form-urlencoded"); r.status != http.StatusBadRequest {
			t.Fatalf("token request %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := h.do(http.MethodPost, "/oauth/token", "", form, "Content-Type: application/x-www-form-urlencoded")
	var oe struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	if r.status != http.StatusTooManyRequests || json.Unmarshal(r.body, &oe) != nil || oe.Error != "temporarily_unavailable" ||
		r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("token endpoint beyond its rate: %d %s", r.status, r.body)
	}
	wantRetryAfter(t, "token endpoint", r)

	// Time refills the buckets.
	h.advance(time.Second)
	if r := h.do(http.MethodGet, "/fhir/Task", tokGP, nil); r.status != http.StatusOK {
		t.Errorf("after a second: %d %s", r.status, r.body)
	}
}

// TestFailedAuthentications: each failed authentication is logged at info with the route and the client
// address, never the token; an address that fails too often gets 429 with Retry-After for requests without
// valid credentials (and no log line each), while valid credentials from the same address are still served.
func TestFailedAuthentications(t *testing.T) {
	t.Parallel()
	h := newHostile(t, backends()[0].open(t), testLimits(), nil)
	const secret = "guessed-token-1b2c3d4e5f"
	for i := range 3 {
		r := h.do(http.MethodGet, "/fhir/Task", secret, nil)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("bad token %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := h.do(http.MethodGet, "/community/v1/referrals", secret, nil)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("after 3 failures from one address: %d %s, want 429", r.status, r.body)
	}
	wantRetryAfter(t, "failed-authentication throttle", r)
	if code, _, _ := apiErr(t, r); code != "too_many_failed_authentications" {
		t.Errorf("throttled: %s", r.body)
	}
	if r := h.do(http.MethodGet, "/fhir/Task", tokGP, nil); r.status != http.StatusOK {
		t.Errorf("a valid token from the throttled address: %d %s", r.status, r.body)
	}
	logs := h.log.String()
	if n := strings.Count(logs, `level=INFO msg="authentication failed"`); n != 3 {
		t.Errorf("%d info lines for 3 failed authentications (the 4th is throttled, not logged at info):\n%s", n, logs)
	}
	if !strings.Contains(logs, `route=fhir_task_type`) || !strings.Contains(logs, "client_addr=127.0.0.1") {
		t.Errorf("the failed authentications must be logged with their route and client address:\n%s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Errorf("the presented token is in the log:\n%s", logs)
	}
}

// maxReferral is a valid referral from practice ods padded with notes to about size bytes (a maximum-size
// body that is processed all the way, not refused early).
func maxReferral(t *testing.T, ods, ident string, size int) []byte {
	t.Helper()
	var top map[string]any
	if err := json.Unmarshal(readFile(t, referrals+"/walking-group-performer.json"), &top); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(top)
	body := strings.Replace(string(b), `"A81001"`, `"`+ods+`"`, 1)
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatal(err)
	}
	top["identifier"] = []any{map[string]any{"system": "https://gp.example/Id/referral", "value": ident}}
	var notes []any
	text := strings.Repeat("Walks with a stick; prefers mornings. ", 100) // about 4 KB
	for range (size - len(body)) / (len(text) + 12) {
		notes = append(notes, map[string]any{"text": text})
	}
	if len(notes) > 0 {
		top["note"] = notes
	}
	out, err := json.Marshal(top)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLegitimateGPServedDuringFlood: while one GP client floods with maximum-size referrals from many
// connections at once, and bad tokens pour in from the same address, another GP client's every request is
// served (201 for its referrals, 200 for its reads), with the shipped default limits. The flood is refused
// where it exceeds its own limits (429 with Retry-After), never with a 5xx. Each flooding connection sends at
// least a few requests and keeps on while the legitimate client works; every answer is waited for (held-back
// refusals included), so what the flood got is counted whole.
func TestLegitimateGPServedDuringFlood(t *testing.T) {
	t.Parallel()
	lim := config.DefaultLimits()
	h := newHostile(t, backends()[0].open(t), &lim, nil)
	big := maxReferral(t, "B82002", "FLOOD", 1000<<10)
	if len(big) > 1<<20 || len(big) < 900<<10 {
		t.Fatalf("flood body is %d bytes", len(big))
	}
	var legitDone atomic.Bool
	var wg sync.WaitGroup
	var floodStatus sync.Map // status → *atomic.Int64
	count := func(code int) {
		v, _ := floodStatus.LoadOrStore(code, &atomic.Int64{})
		v.(*atomic.Int64).Add(1)
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 64}}
	send := func(token string, body []byte, path string) {
		method := http.MethodGet
		var rd io.Reader
		if body != nil {
			method, rd = http.MethodPost, bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, h.url+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", fhirJSON)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("flood request: %v", err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		count(resp.StatusCode)
	}
	// With the limits' clock standing still, 16 connections of 2 maximum-size bodies exceed the client's body
	// budget (8 MiB) and 16 of 3 bad tokens its address's failures (20): the flood is refused for sure.
	for i := range 16 {
		wg.Add(2)
		go func() { // maximum-size referrals, one client
			defer wg.Done()
			for k := 0; k < 2 || !legitDone.Load(); k++ {
				send(tokGP2, bytes.Replace(big, []byte(`"FLOOD"`), []byte(fmt.Sprintf(`"FLOOD-%d-%d"`, i, k)), 1), "/fhir/ServiceRequest")
			}
		}()
		go func() { // bad tokens
			defer wg.Done()
			for k := 0; k < 3 || !legitDone.Load(); k++ {
				send(fmt.Sprintf("guess-%d", i), nil, "/fhir/Task")
			}
		}()
	}
	// The legitimate GP, meanwhile: referrals, reads and searches, one after another.
	for i := range 10 {
		body := maxReferral(t, "A81001", fmt.Sprintf("LEGIT-%d", i), 4<<10)
		r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body, "Prefer: return=representation")
		if r.status != http.StatusCreated {
			t.Errorf("legitimate referral %d during the flood: %d %.300s", i, r.status, r.body)
			continue
		}
		if r := h.do(http.MethodGet, "/fhir/ServiceRequest/"+r.json(t)["id"].(string), tokGP, nil); r.status != http.StatusOK {
			t.Errorf("legitimate read %d during the flood: %d %.300s", i, r.status, r.body)
		}
		if r := h.do(http.MethodGet, "/fhir/Task?requester:identifier="+url.QueryEscape(odsSystem+"|A81001"), tokGP, nil); r.status != http.StatusOK {
			t.Errorf("legitimate search %d during the flood: %d %.300s", i, r.status, r.body)
		}
	}
	legitDone.Store(true)
	wg.Wait()
	statuses := map[int]int64{}
	floodStatus.Range(func(k, v any) bool {
		statuses[k.(int)] = v.(*atomic.Int64).Load()
		return true
	})
	t.Logf("flood answers by status: %v", statuses)
	for code := range statuses {
		if code >= 500 {
			t.Errorf("the flood got %d: never a 5xx for a client's excess (%v)", code, statuses)
		}
	}
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("the flood was never limited: %v", statuses)
	}
}

// heldBody is a request whose body the server has started to read (it answered 100 Continue) and that the
// test holds open: it occupies a body slot until released.
type heldBody struct {
	conn net.Conn
	rd   *bufio.Reader
}

// holdBody sends a POST with Expect: 100-continue (as curl does for large bodies) and waits for the server's
// 100 Continue, which Go's server sends when the handler starts reading the body: the request was admitted.
// A refusal (the server answers at once) is returned as a response instead.
func holdBody(t *testing.T, h *hostile, path, token, contentType string) (*heldBody, *http.Response) {
	t.Helper()
	u, _ := url.Parse(h.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\n"+
		"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n", path, u.Host, token, contentType)
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusContinue {
		return &heldBody{conn: conn, rd: rd}, nil
	}
	return nil, resp
}

// release sends the held body and reads the answer.
func (b *heldBody) release(t *testing.T) {
	t.Helper()
	if _, err := b.conn.Write([]byte("{}")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(b.rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b.conn.Close()
}

// TestBodySlots: a client may have BodiesPerClient requests with a body in progress; one more is refused at
// once, before its body is read (429, Retry-After); everyone together may have Bodies, beyond which any
// client is refused (503, Retry-After). Slots come back when the answers are written.
func TestBodySlots(t *testing.T) {
	t.Parallel()
	lim := config.Limits{Role: map[config.Role]config.Rate{}, Bodies: 3, BodiesPerClient: 2}
	h := newHostile(t, backends()[0].open(t), &lim, nil)
	var held []*heldBody
	for i := range 2 {
		b, refused := holdBody(t, h, "/fhir/ServiceRequest", tokGP, fhirJSON)
		if refused != nil {
			t.Fatalf("GP body %d within the client's slots: %d", i+1, refused.StatusCode)
		}
		held = append(held, b)
	}
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, []byte(`{}`))
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("a third body from the same client: %d %s, want 429", r.status, r.body)
	}
	wantRetryAfter(t, "client's body slots", r)
	if is := issues(t, r); is[0].Code != "transient" {
		t.Errorf("429 issue: %+v", is)
	}
	b, refused := holdBody(t, h, "/admin/v1/replay", tokAdmin, "application/json")
	if refused != nil {
		t.Fatalf("another client's body within the server's slots: %d", refused.StatusCode)
	}
	held = append(held, b)
	r = h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, []byte(`{}`))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("a body beyond the server's slots: %d %s, want 503", r.status, r.body)
	}
	wantRetryAfter(t, "server's body slots", r)
	// Reads need no body slot.
	if r := h.do(http.MethodGet, "/fhir/Task", tokGP2, nil); r.status != http.StatusOK {
		t.Errorf("a read while the body slots are full: %d", r.status)
	}
	for _, b := range held {
		b.release(t)
	}
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, readFile(t, referrals+"/walking-group-performer.json")); r.status == http.StatusServiceUnavailable ||
		r.status == http.StatusTooManyRequests {
		t.Errorf("after the slots came back: %d %s", r.status, r.body)
	}
	// A body declared larger than the limit is refused before it is read.
	r = h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, bytes.Repeat([]byte(" "), 1<<20+1))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("an oversized body: %d", r.status)
	}
}

// TestSecurityHeaders: every answer (resources, errors, JSON APIs, the token endpoint) says nosniff and
// no-store; public discovery documents keep their own caching.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHostile(t, backends()[0].open(t), nil, nil)
	id := refer(h.harness, tokGP, "walking-group-performer.json")
	for _, c := range []struct {
		method, path, token string
		cache               string
	}{
		{"GET", "/fhir/ServiceRequest/" + id.sr, tokGP, "no-store"},
		{"GET", "/fhir/Task?requester:identifier=" + url.QueryEscape(odsSystem+"|A81001"), tokGP, "no-store"},
		{"GET", "/fhir/Task/nope", tokGP, "no-store"},
		{"GET", "/fhir/Task", "", "no-store"},
		{"GET", "/community/v1/referrals/" + id.referral, tokWalks, "no-store"},
		{"GET", "/admin/v1/referrals/" + id.referral + "/timeline", tokAdmin, "no-store"},
		{"POST", "/oauth/token", "", "no-store"},
		{"GET", "/readyz", "", "no-store"},
		{"GET", "/fhir/.well-known/smart-configuration", "", "max-age=3600"},
	} {
		r := h.do(c.method, c.path, c.token, nil)
		if r.header.Get("X-Content-Type-Options") != "nosniff" || r.header.Get("Cache-Control") != c.cache {
			t.Errorf("%s %s: %d, X-Content-Type-Options %q, Cache-Control %q (want %q)", c.method, c.path, r.status,
				r.header.Get("X-Content-Type-Options"), r.header.Get("Cache-Control"), c.cache)
		}
	}
}

// TestBodyBytesRate: each client's request bodies come out of a byte budget (declared size, taken before the
// body is read): beyond it, 429 with Retry-After; other clients keep theirs.
func TestBodyBytesRate(t *testing.T) {
	t.Parallel()
	lim := config.Limits{Role: map[config.Role]config.Rate{}, BodyBytes: config.Rate{PerSecond: 1000, Burst: 8000}}
	h := newHostile(t, backends()[0].open(t), &lim, nil)
	body := readFile(t, referrals+"/walking-group-performer.json") // 5402 bytes
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body); r.status != http.StatusCreated {
		t.Fatalf("first body: %d %s", r.status, r.body)
	}
	r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("a second body beyond the budget: %d %s", r.status, r.body)
	}
	wantRetryAfter(t, "body bytes", r)
	if n, _ := strconv.Atoi(r.header.Get("Retry-After")); n < 1 || n > 7 {
		t.Errorf("Retry-After %q: the budget refills at 1000 bytes a second", r.header.Get("Retry-After"))
	}
	other := []byte(strings.Replace(string(body), `"A81001"`, `"B82002"`, 1))
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP2, other); r.status != http.StatusCreated {
		t.Errorf("another client: %d %s", r.status, r.body)
	}
	h.advance(10 * time.Second)
	if r := h.do(http.MethodPost, "/fhir/ServiceRequest", tokGP, body); r.status != http.StatusOK { // the identical resend
		t.Errorf("after the budget refilled: %d %s", r.status, r.body)
	}
}

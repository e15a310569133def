package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestMainPublicBaseURL: with SOCIALRX_BASE_URL (a proxy in front), every absolute URL — Location, SMART
// discovery, the CapabilityStatement — is on it, whatever Host the request came with; without it, a service
// with a directory file warns at start and uses its own listen address, while the demo on loopback does not
// warn.
func TestMainPublicBaseURL(t *testing.T) {
	t.Parallel()
	fixture, err := os.ReadFile("../../testdata/referrals/link-worker-befriending-default.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		base     string
		demo     bool
		warns    bool
		wantBase func(addr string) string
	}{
		{"configured", "https://socialrx.example.org/gp", false, false, func(string) string { return "https://socialrx.example.org/gp" }},
		{"directory file, not configured", "", false, true, func(addr string) string { return "http://" + addr }},
		{"demo on loopback, not configured", "", true, false, func(addr string) string { return "http://" + addr }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newTestMain(t)
			var logs bytes.Buffer
			m.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			m.Settings.BaseURL = tc.base
			m.Config.Demo = tc.demo
			if err := m.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			want := tc.wantBase(m.Addr())
			if warned := strings.Contains(logs.String(), "SOCIALRX_BASE_URL is not set"); warned != tc.warns {
				t.Errorf("warning logged: %v, want %v\n%s", warned, tc.warns, logs.String())
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+m.Addr()+"/fhir/ServiceRequest", bytes.NewReader(fixture))
			req.Host = "attacker.example" // a request's Host never makes a URL
			req.Header.Set("X-Forwarded-Host", "attacker.example")
			req.Header.Set("Authorization", "Bearer demo-gp-token")
			req.Header.Set("Content-Type", "application/fhir+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusCreated || !strings.HasPrefix(loc, want+"/fhir/ServiceRequest/") {
				t.Errorf("create: %d Location %q, want it under %s", resp.StatusCode, loc, want)
			}
			resp, err = http.Get("http://" + m.Addr() + "/fhir/.well-known/smart-configuration")
			if err != nil {
				t.Fatal(err)
			}
			var disc map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&disc)
			resp.Body.Close()
			if disc["token_endpoint"] != want+"/oauth/token" {
				t.Errorf("token_endpoint %v, want %s/oauth/token", disc["token_endpoint"], want)
			}
		})
	}
}

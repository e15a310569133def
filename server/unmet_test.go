package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestUnmetNeedExport: referrals that found no room or were declined are counted by reason, need, month and
// postcode district, as JSON and CSV, with counts under 5 suppressed; admin clients only.
func TestUnmetNeedExport(t *testing.T) {
	t.Parallel()
	h := routingHarness(t)
	const fixture, ident = "walking-group-performer.json", "FVMC-2025-0142"
	if r := putCapacity(h, tokWalks, `{"status": "full"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	for i := range 5 {
		referVariant(h, fixture, ident, fmt.Sprintf("FVMC-2025-90%02d", i), nil)
	}
	if r := putCapacity(h, tokWalks, `{"status": "open"}`); r.status != http.StatusOK {
		t.Fatal(r.status)
	}
	for i := range 2 {
		ref := referVariant(h, fixture, ident, fmt.Sprintf("FVMC-2025-91%02d", i), nil)
		if r := setStatus(h, tokWalks, ref.referral, `{"status": "rejected", "reason": "no volunteers on Tuesdays"}`); r.status != http.StatusOK {
			t.Fatalf("decline: %d %s", r.status, r.body)
		}
	}
	referVariant(h, fixture, ident, "FVMC-2025-9200", nil) // taken: not counted

	r := h.do(http.MethodGet, "/admin/v1/unmet-need", tokAdmin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("unmet-need: %d %s", r.status, r.body)
	}
	got := string(r.body)
	for _, want := range []string{`"suppressed_below":5`,
		`{"month":"2026-11","district":"BA11","reason":"declined","count":null,"suppressed":true}`,
		`{"month":"2026-11","district":"BA11","reason":"no-capacity","count":5}`} {
		if !strings.Contains(got, want) {
			t.Errorf("JSON lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "BA11 3BA") || strings.Contains(got, "9999542557") {
		t.Error("the export carries patient data")
	}
	c := h.do(http.MethodGet, "/admin/v1/unmet-need?format=csv", tokAdmin, nil)
	if c.status != http.StatusOK || !strings.HasPrefix(c.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s", c.status, c.header.Get("Content-Type"))
	}
	wantCSV := "month,district,reason,need,count\n2026-11,BA11,declined,,<5\n2026-11,BA11,no-capacity,,5\n"
	if string(c.body) != wantCSV {
		t.Errorf("csv:\n%s\nwant:\n%s", c.body, wantCSV)
	}
	if r := h.do(http.MethodGet, "/admin/v1/unmet-need", tokGP, nil); r.status != http.StatusForbidden {
		t.Errorf("a GP client: %d", r.status)
	}
	if r := h.do(http.MethodGet, "/admin/v1/unmet-need?format=xml", tokAdmin, nil); r.status != http.StatusBadRequest {
		t.Errorf("format=xml: %d", r.status)
	}
}

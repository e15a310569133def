package config

import (
	"strings"
	"testing"
)

// TestDirectoryDeliveryInFlight: a service's delivery.max_in_flight is read; left out it is 0 (the
// dispatcher's default); out of range, on a pull-only service or not a number, the error names the place and
// the rule (the YAML decoder names a value of the wrong type by its line).
func TestDirectoryDeliveryInFlight(t *testing.T) {
	t.Parallel()
	const secret = "whsec_c29jaWFscngtZGVtby13ZWJob29rLXNlY3JldC0zMmI="
	good := `services:
  - {id: s1, name: One, delivery: {url: "https://one.example/hook", secret: "` + secret + `", max_in_flight: 2}}
  - {id: s2, name: Two, delivery: {url: "https://two.example/hook", secret: "` + secret + `", max_in_flight: 64}}
  - {id: s3, name: Three, delivery: {url: "https://three.example/hook", secret: "` + secret + `"}}
`
	c, err := Parse([]byte(good), "")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{2, 64, 0} {
		if got := c.Directory.Services[i].Delivery.MaxInFlight; got != want {
			t.Errorf("services[%d]: MaxInFlight %d, want %d", i, got, want)
		}
	}
	for _, tc := range []struct{ delivery, want string }{
		{`{url: "https://one.example/hook", secret: "` + secret + `", max_in_flight: 0}`, "services[0].delivery.max_in_flight: 0 must be from 1 to 64"},
		{`{url: "https://one.example/hook", secret: "` + secret + `", max_in_flight: -3}`, "services[0].delivery.max_in_flight: -3 must be from 1 to 64"},
		{`{url: "https://one.example/hook", secret: "` + secret + `", max_in_flight: 65}`, "services[0].delivery.max_in_flight: 65 must be from 1 to 64"},
		{`{max_in_flight: 4}`, "services[0].delivery.max_in_flight: without a url"},
		{`{url: "https://one.example/hook", secret: "` + secret + `", max_in_flight: lots}`, `services[0].delivery.max_in_flight: "lots" must be a whole number (line 2)`},
	} {
		_, err := Parse([]byte("services:\n  - {id: s1, name: One, delivery: "+tc.delivery+"}\n"), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("delivery %s: error %v, want it to say %q", tc.delivery, err, tc.want)
		}
	}
}

package config

import "testing"

// TestGCPercent: serve sets DefaultGCPercent unless GOGC holds a setting the Go runtime takes.
func TestGCPercent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, gogc string
		want       int
	}{
		{"GOGC unset: socialrx's default", "", DefaultGCPercent},
		{"GOGC set: the operator decides", "100", 0},
		{"GOGC off: the operator decides", "off", 0},
		{"GOGC the runtime ignores: as unset", "lots", DefaultGCPercent},
	} {
		got := GCPercent(func(k string) string {
			if k == "GOGC" {
				return tc.gogc
			}
			return ""
		})
		if got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

package config

import (
	"strings"
	"testing"
)

// TestParseNamesThePlaceOfAValueOfTheWrongType: a value the YAML decoder cannot read as its setting's type,
// and a key the file format does not have, are reported at their place in the file (as every other problem
// Parse finds), with what the setting takes and the line, every one of them; a value longer than 10 characters
// is shown cut, as the decoder cuts it (a secret in the wrong place is not logged whole); where a line holds
// two such values alike, the decoder's own message is kept rather than a guess.
func TestParseNamesThePlaceOfAValueOfTheWrongType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"block style", `services:
  - id: s1
    name: One
    default: sometimes
    delivery:
      url: https://one.example/hook
      max_in_flight: lots
      retries: 3
`, []string{
			`services[0].default: "sometimes" must be true or false (line 4)`,
			`services[0].delivery.max_in_flight: "lots" must be a whole number (line 7)`,
			`services[0].delivery.retries: not a setting of the directory file (line 8)`,
		}},
		{"flow style, a long value", "services:\n  - {id: s1, name: One, capacity: {status: open, max_open: twelve-hundred}}\n",
			[]string{`services[0].capacity.max_open: "twelve-…" must be a whole number (line 2)`}},
		{"a list and a mapping", "services:\n  - id: s1\n    name: [One, Two]\n    codes: {a: b}\n", []string{
			`services[0].name: must be a single value (text), not a list (line 3)`,
			`services[0].codes: must be a list, not a mapping (line 4)`,
		}},
		{"the second service", "services:\n  - {id: s1, name: One}\n  - {id: s2, name: Two, link_worker: perhaps}\n",
			[]string{`services[1].link_worker: "perhaps" must be true or false (line 3)`}},
		{"two alike on one line", "services:\n  - {id: s1, name: One, default: x, link_worker: x}\n",
			[]string{"line 2: cannot unmarshal !!str `x` into bool", "line 2: cannot unmarshal !!str `x` into bool"}},
		{"not YAML", "services: [\n", []string{"parse YAML: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "")
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to say %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) && !strings.HasPrefix(tc.want[0], "parse YAML") {
				t.Errorf("error:\n%v\nhas %d lines, want %d (one per problem)", err, n, len(tc.want))
			}
		})
	}
}

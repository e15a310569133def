package web

import (
	"testing"

	"github.com/socialrx/socialrx/fault"
)

func TestCheckJSONText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body, field string
		ok          bool
	}{
		{`{"status":"accepted","reason":"fine"}`, "", true},
		{`{"reason":"a\u0000b"}`, "reason", false},
		{`{"reason":"a\\u0000b"}`, "", true}, // an escaped backslash, then the text u0000: no NUL
		{`{"outcome_code":{"system":"x","display":"\u0000"}}`, "outcome_code.display", false},
		{`{"ids":["a","b","c\u0000"]}`, "ids[2]", false},
		{`{"a":{"b":[1,{"c":"\u0000"}]}}`, "a.b[1].c", false},
		{`{"":"x","d":"\u0000"}`, "d", false},
		{`{"na\u0000me":"x"}`, "na\uFFFDme", false},
		{"{\"reason\":\"caf\xe9\"}", "", false}, // Latin-1, not UTF-8
		{`not json \u0000`, "", true},           // left to the decoder
	} {
		err := CheckJSONText([]byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.body, err, tc.ok)
			continue
		}
		if err == nil {
			continue
		}
		fe, ok := err.(*fault.Error)
		if !ok || fe.Kind != fault.Invalid || fe.Issues[0].Code != CodeInvalidText || fe.Issues[0].Field != tc.field {
			t.Errorf("%s: %#v, want an invalid_text issue on %q", tc.body, err, tc.field)
		}
	}
}

func TestCheckQuery(t *testing.T) {
	t.Parallel()
	for raw, field := range map[string]string{
		"status=accepted&limit=5": "",
		"status=acc%00epted":      "status",
		"since=%FF%FE":            "since",
		"st%00atus=x":             "st\uFFFDatus",
		"bad=%zz":                 "", // does not parse: the API's own rules answer
	} {
		err := CheckQuery(raw)
		if field == "" {
			if err != nil {
				t.Errorf("%s: %v", raw, err)
			}
			continue
		}
		fe, ok := err.(*fault.Error)
		if !ok || fe.Issues[0].Field != field || fe.Issues[0].Code != CodeInvalidText {
			t.Errorf("%s: %v, want invalid_text on %q", raw, err, field)
		}
	}
}

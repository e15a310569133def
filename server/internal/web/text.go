package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/socialrx/socialrx/fault"
)

// CodeInvalidText is the rule a value breaks when it holds a NUL byte or is not valid UTF-8: nothing socialrx
// stores or compares may (PostgreSQL text cannot hold either), so such a value is a 400 naming where it is,
// on every API and both backends, before anything reaches the database.
const CodeInvalidText fault.Code = "invalid_text"

// TextProblem says what is wrong with s as text ("" when nothing is).
func TextProblem(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "contains a NUL character (U+0000)"
	}
	return ""
}

// CheckText is a 400 (CodeInvalidText) naming field when value holds a NUL byte or invalid UTF-8; what says
// what the field is in words ("query parameter status", "path").
func CheckText(field, what, value string) error {
	if p := TextProblem(value); p != "" {
		return fault.New(fault.Invalid, CodeInvalidText, field, what+" "+p)
	}
	return nil
}

// CheckQuery checks every name and value of a raw query string (CheckText). A query that does not parse is
// left to the API (its own rules answer it).
func CheckQuery(raw string) error {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil
	}
	for k, vs := range vals {
		if err := CheckText(safeField(k), "a query parameter name", k); err != nil {
			return err
		}
		for _, v := range vs {
			if err := CheckText(k, "query parameter "+strconv.Quote(k), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckJSONText checks a JSON body's text: valid UTF-8 throughout (else a 400 naming the byte offset), and no
// member name or string value holding a NUL character (else a 400 naming the member, as a dotted path such
// as outcome_code.display or ids[2]). A body that is not JSON is left to the decoder.
func CheckJSONText(body []byte) error {
	if !utf8.Valid(body) {
		off := invalidUTF8At(body)
		return fault.New(fault.Invalid, CodeInvalidText, "", fmt.Sprintf("the body is not valid UTF-8 (at byte %d)", off))
	}
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return nil // the only way JSON text carries a NUL
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		array  bool
		hasKey bool // an object's member name was read; its value comes next
		key    string
		index  int
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
				continue
			}
			if f.hasKey {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	expectKey := func() bool { return len(stack) > 0 && !stack[len(stack)-1].array && !stack[len(stack)-1].hasKey }
	advance := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].index++
			} else {
				stack[n-1].hasKey, stack[n-1].key = false, ""
			}
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // not JSON: the decoder says so
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{})
			case '[':
				stack = append(stack, frame{array: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
				advance()
			}
		case string:
			if expectKey() {
				stack[len(stack)-1].hasKey, stack[len(stack)-1].key = true, safeField(v)
				if strings.IndexByte(v, 0) >= 0 {
					return fault.New(fault.Invalid, CodeInvalidText, path(), "a member name contains a NUL character (U+0000)")
				}
				continue
			}
			if strings.IndexByte(v, 0) >= 0 {
				field := path()
				return fault.New(fault.Invalid, CodeInvalidText, field, strings.TrimSpace(field+" contains a NUL character (U+0000)"))
			}
			advance()
		default:
			advance()
		}
	}
}

// safeField is a name fit to echo as a field: NUL and invalid UTF-8 replaced.
func safeField(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// invalidUTF8At is the offset of the first byte of b that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

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
	var p jsonPath
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // not JSON: the decoder says so
		}
		if v, ok := tok.(string); ok && strings.IndexByte(v, 0) >= 0 {
			if p.expectingName() {
				p.token(safeField(v))
				return fault.New(fault.Invalid, CodeInvalidText, p.String(), "a member name contains a NUL character (U+0000)")
			}
			field := p.String()
			return fault.New(fault.Invalid, CodeInvalidText, field, strings.TrimSpace(field+" contains a NUL character (U+0000)"))
		}
		p.token(tok)
	}
}

// jsonPath follows where a JSON token stream is, as a dotted path (outcome_code.display, ids[2]).
type jsonPath struct{ stack []pathFrame }

// pathFrame is one open object or array.
type pathFrame struct {
	array  bool
	hasKey bool // an object's member name was read; its value comes next
	key    string
	index  int
}

// expectingName reports whether the next string token is an object's member name.
func (p *jsonPath) expectingName() bool {
	n := len(p.stack)
	return n > 0 && !p.stack[n-1].array && !p.stack[n-1].hasKey
}

// token moves the path past one token of json.Decoder.Token.
func (p *jsonPath) token(tok any) {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			p.stack = append(p.stack, pathFrame{})
		case '[':
			p.stack = append(p.stack, pathFrame{array: true})
		case '}', ']':
			p.stack = p.stack[:len(p.stack)-1]
			p.advance()
		}
	case string:
		if p.expectingName() {
			top := &p.stack[len(p.stack)-1]
			top.hasKey, top.key = true, safeField(v)
			return
		}
		p.advance()
	default:
		p.advance()
	}
}

// advance moves past a value: the next item of an array, or the next member of an object.
func (p *jsonPath) advance() {
	if n := len(p.stack); n > 0 {
		if p.stack[n-1].array {
			p.stack[n-1].index++
		} else {
			p.stack[n-1].hasKey, p.stack[n-1].key = false, ""
		}
	}
}

// String is the path, e.g. outcome_code.display or ids[2].
func (p *jsonPath) String() string {
	var b strings.Builder
	for _, f := range p.stack {
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

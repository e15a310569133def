package fhir

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small strict JSON reader and writer. encoding/json cannot be used for the raw pass: it
// silently accepts duplicate keys and invalid UTF-8, loses key order, and its token API is slow. The reader
// builds a compact tree (one string copy of the body, values carved from a few slabs), keeps key order and
// number literals verbatim, and flags duplicate keys for the validator to report with their path.

// jsonKind is the kind of a JSON value; the zero value is invalid.
type jsonKind uint8

const (
	jsonNull jsonKind = iota + 1
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

// node flags.
const (
	flagDupKey    uint8 = 1 << iota // object has a key more than once
	flagReference                   // string is the value of a Reference.reference (set by the validator)
	flagPlain                       // string had no escapes in the source: it can be written back verbatim
)

// node is one JSON value. str holds the decoded string, the number literal, or "true"/"false".
type node struct {
	kind    jsonKind
	flags   uint8
	str     string
	items   []node
	members []member
}

// member is one key/value pair of an object, in document order.
type member struct {
	key string
	val node
}

// get returns the value of key in an object, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != jsonObject {
		return nil
	}
	for i := range n.members {
		if n.members[i].key == key {
			return &n.members[i].val
		}
	}
	return nil
}

// getString returns the string value of key in an object.
func (n *node) getString(key string) (string, bool) {
	v := n.get(key)
	if v == nil || v.kind != jsonString {
		return "", false
	}
	return v.str, true
}

// without returns a copy of an object without the given keys (the members slice is new; values are shared).
func (n *node) without(keys ...string) node {
	out := node{kind: n.kind, flags: n.flags}
	out.members = make([]member, 0, len(n.members))
	for _, m := range n.members {
		if !slices.Contains(keys, m.key) {
			out.members = append(out.members, m)
		}
	}
	return out
}

// maxDepth bounds nesting; real FHIR resources stay far below it, and it keeps recursion bounded on any input.
const maxDepth = 96

// Decoded-size limits (issue 9): what one document may hold, far above any real referral (the largest
// example of the conformance corpus has 779 values, 27 items in an array and a 66 KB string: a PDF consent
// form) and far below what costs real memory or CPU. A body within the byte limit that breaks one is refused
// while it is read (413, OperationOutcome issue too-costly), before anything is built from it.
const (
	// MaxValues bounds the JSON values (objects, arrays, strings, numbers, literals) of one document.
	MaxValues = 20000
	// MaxArrayItems bounds the items of one array.
	MaxArrayItems = 1000
	// MaxStringBytes bounds one string, decoded (a base64 attachment of about 190 KB fits).
	MaxStringBytes = 256 << 10
)

// limitError is a document that breaks a decoded-size limit at a byte offset.
type limitError struct {
	offset int
	msg    string
}

// Error implements error.
func (e *limitError) Error() string {
	return fmt.Sprintf("too large at byte %d: %s", e.offset, e.msg)
}

// syntaxError is a JSON syntax error at a byte offset of the body.
type syntaxError struct {
	offset int
	msg    string
}

// Error implements error.
func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.offset, e.msg)
}

// parser reads one JSON document.
type parser struct {
	s      string
	pos    int
	depth  int
	stackN []node
	stackM []member
	slabN  []node
	slabM  []member
	dup    bool // some object has a duplicate key
	values int  // values read so far (MaxValues)
}

// parseJSON parses exactly one JSON value (a leading UTF-8 byte order mark is tolerated).
func parseJSON(b []byte) (node, bool, error) {
	p := parser{s: strings.TrimPrefix(string(b), "\uFEFF"), stackN: make([]node, 0, 16), stackM: make([]member, 0, 32)}
	// One slab each for members and array items, sized from upper bounds (every member has a colon, every
	// further item a comma), so that a document needs few allocations.
	p.slabM = make([]member, min(strings.Count(p.s, ":"), MaxValues))
	p.slabN = make([]node, min(strings.Count(p.s, ",")+strings.Count(p.s, "[")+1, MaxValues))
	p.skipWS()
	if p.pos >= len(p.s) {
		return node{}, false, &syntaxError{p.pos, "empty document"}
	}
	v, err := p.value()
	if err != nil {
		return node{}, false, err
	}
	p.skipWS()
	if p.pos < len(p.s) {
		return node{}, false, &syntaxError{p.pos, "data after the JSON value"}
	}
	return v, p.dup, nil
}

func (p *parser) skipWS() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) fail(msg string) error { return &syntaxError{p.pos, msg} }

func (p *parser) value() (node, error) {
	if p.pos >= len(p.s) {
		return node{}, p.fail("unexpected end of input")
	}
	if p.values++; p.values > MaxValues {
		return node{}, &limitError{p.pos, fmt.Sprintf("more than %d values (elements, items and primitives) in one document", MaxValues)}
	}
	switch c := p.s[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, plain, err := p.stringPlain()
		n := node{kind: jsonString, str: s}
		if plain {
			n.flags = flagPlain
		}
		return n, err
	case c == 't':
		return p.literal("true", node{kind: jsonBool, str: "true"})
	case c == 'f':
		return p.literal("false", node{kind: jsonBool, str: "false"})
	case c == 'n':
		return p.literal("null", node{kind: jsonNull})
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return node{}, p.fail("unexpected character")
	}
}

func (p *parser) literal(word string, n node) (node, error) {
	if !strings.HasPrefix(p.s[p.pos:], word) {
		return node{}, p.fail("invalid literal")
	}
	p.pos += len(word)
	return n, nil
}

func (p *parser) number() (node, error) {
	start := p.pos
	if p.s[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	switch {
	case p.pos < len(p.s) && p.s[p.pos] == '0':
		p.pos++
	case digits() == 0:
		return node{}, p.fail("invalid number")
	}
	if p.pos < len(p.s) && p.s[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return node{}, p.fail("invalid number")
		}
	}
	if p.pos < len(p.s) && (p.s[p.pos] == 'e' || p.s[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.s) && (p.s[p.pos] == '+' || p.s[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return node{}, p.fail("invalid number")
		}
	}
	return node{kind: jsonNumber, str: p.s[start:p.pos]}, nil
}

// string reads a JSON string; invalid UTF-8, unescaped control characters and unpaired surrogates are errors.
func (p *parser) string() (string, error) {
	s, _, err := p.stringPlain()
	return s, err
}

// stringPlain is string that also reports whether the source had no escapes (so that the decoded value holds
// no quote, backslash or control character and can be written back verbatim).
func (p *parser) stringPlain() (string, bool, error) {
	p.pos++ // opening quote
	start := p.pos
	ascii := true
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '"':
			s := p.s[start:p.pos]
			p.pos++
			if len(s) > MaxStringBytes {
				return "", false, &limitError{start, fmt.Sprintf("a string longer than %d bytes", MaxStringBytes)}
			}
			if !ascii && !utf8.ValidString(s) {
				return "", false, &syntaxError{start, "invalid UTF-8 in string"}
			}
			return s, true, nil
		case c == '\\':
			s, err := p.escapedString(start)
			return s, false, err
		case c < 0x20:
			return "", false, p.fail("control character in string")
		case c >= 0x80:
			ascii = false
		}
		p.pos++
	}
	return "", false, p.fail("unterminated string")
}

func (p *parser) escapedString(start int) (string, error) {
	var sb strings.Builder
	sb.Grow(p.pos - start + 16)
	sb.WriteString(p.s[start:p.pos])
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '"':
			p.pos++
			s := sb.String()
			if len(s) > MaxStringBytes {
				return "", &limitError{start, fmt.Sprintf("a string longer than %d bytes", MaxStringBytes)}
			}
			if !utf8.ValidString(s) {
				return "", &syntaxError{start, "invalid UTF-8 in string"}
			}
			return s, nil
		case c < 0x20:
			return "", p.fail("control character in string")
		case c != '\\':
			sb.WriteByte(c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.s) {
			break
		}
		e := p.s[p.pos+1]
		p.pos += 2
		switch e {
		case '"', '\\', '/':
			sb.WriteByte(e)
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.fail("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 || !strings.HasPrefix(p.s[p.pos:], `\u`) {
					return "", p.fail("unpaired surrogate")
				}
				p.pos += 2
				r2, ok := p.hex4()
				if !ok {
					return "", p.fail("invalid \\u escape")
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", p.fail("unpaired surrogate")
				}
			}
			sb.WriteRune(r)
		default:
			return "", p.fail("invalid escape")
		}
	}
	return "", p.fail("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(p.s[p.pos:p.pos+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(v), true
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.fail("nesting too deep")
	}
	return nil
}

func (p *parser) array() (node, error) {
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.pos++
	start := len(p.stackN)
	p.skipWS()
	if p.pos < len(p.s) && p.s[p.pos] == ']' {
		p.pos++
		p.depth--
		return node{kind: jsonArray}, nil
	}
	for {
		p.skipWS()
		v, err := p.value()
		if err != nil {
			return node{}, err
		}
		p.stackN = append(p.stackN, v)
		if len(p.stackN)-start > MaxArrayItems {
			return node{}, &limitError{p.pos, fmt.Sprintf("an array of more than %d items", MaxArrayItems)}
		}
		p.skipWS()
		if p.pos >= len(p.s) {
			return node{}, p.fail("unterminated array")
		}
		c := p.s[p.pos]
		p.pos++
		if c == ']' {
			break
		}
		if c != ',' {
			p.pos--
			return node{}, p.fail("expected , or ]")
		}
	}
	n := len(p.stackN) - start
	if len(p.slabN) < n {
		p.slabN = make([]node, max(n, 128))
	}
	items := p.slabN[:n:n]
	p.slabN = p.slabN[n:]
	copy(items, p.stackN[start:])
	clear(p.stackN[start:])
	p.stackN = p.stackN[:start]
	p.depth--
	return node{kind: jsonArray, items: items}, nil
}

func (p *parser) object() (node, error) {
	if err := p.enter(); err != nil {
		return node{}, err
	}
	p.pos++
	start := len(p.stackM)
	p.skipWS()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		p.depth--
		return node{kind: jsonObject}, nil
	}
	for {
		p.skipWS()
		if p.pos >= len(p.s) || p.s[p.pos] != '"' {
			return node{}, p.fail("expected a string key")
		}
		k, err := p.string()
		if err != nil {
			return node{}, err
		}
		p.skipWS()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return node{}, p.fail("expected :")
		}
		p.pos++
		p.skipWS()
		v, err := p.value()
		if err != nil {
			return node{}, err
		}
		p.stackM = append(p.stackM, member{key: k, val: v})
		p.skipWS()
		if p.pos >= len(p.s) {
			return node{}, p.fail("unterminated object")
		}
		c := p.s[p.pos]
		p.pos++
		if c == '}' {
			break
		}
		if c != ',' {
			p.pos--
			return node{}, p.fail("expected , or }")
		}
	}
	n := len(p.stackM) - start
	if len(p.slabM) < n {
		p.slabM = make([]member, max(n, 128))
	}
	ms := p.slabM[:n:n]
	p.slabM = p.slabM[n:]
	copy(ms, p.stackM[start:])
	clear(p.stackM[start:])
	p.stackM = p.stackM[:start]
	p.depth--
	out := node{kind: jsonObject, members: ms}
	if hasDupKey(ms) {
		out.flags |= flagDupKey
		p.dup = true
	}
	return out, nil
}

// hasDupKey reports whether a key occurs twice.
func hasDupKey(ms []member) bool {
	if len(ms) <= 32 {
		for i := 1; i < len(ms); i++ {
			for j := 0; j < i; j++ {
				if ms[i].key == ms[j].key {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(ms))
	for _, m := range ms {
		if _, ok := seen[m.key]; ok {
			return true
		}
		seen[m.key] = struct{}{}
	}
	return false
}

// writer serialises nodes without insignificant whitespace. With canonical set, object keys are sorted (byte
// order); with hideUUIDRefs set, every flagged Reference.reference starting with "urn:uuid:" is written as
// uuidRefConstant.
type writer struct {
	buf          []byte
	canonical    bool
	hideUUIDRefs bool
	order        []*member
}

// uuidRefConstant replaces urn:uuid reference values in fingerprints.
const uuidRefConstant = "urn:uuid:"

// write appends n; the keys in skip are left out of n itself (not of nested objects).
func (w *writer) write(n *node, skip ...string) {
	switch n.kind {
	case jsonNull:
		w.buf = append(w.buf, "null"...)
	case jsonBool, jsonNumber:
		w.buf = append(w.buf, n.str...)
	case jsonString:
		s := n.str
		if w.hideUUIDRefs && n.flags&flagReference != 0 && strings.HasPrefix(s, "urn:uuid:") {
			s = uuidRefConstant
		}
		if n.flags&flagPlain != 0 {
			w.buf = append(append(append(w.buf, '"'), s...), '"')
			return
		}
		w.buf = appendQuoted(w.buf, s)
	case jsonArray:
		w.buf = append(w.buf, '[')
		for i := range n.items {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.write(&n.items[i])
		}
		w.buf = append(w.buf, ']')
	case jsonObject:
		w.buf = append(w.buf, '{')
		if !w.canonical {
			first := true
			for i := range n.members {
				first = w.member(&n.members[i], first, skip)
			}
		} else {
			base := len(w.order)
			for i := range n.members {
				w.order = append(w.order, &n.members[i])
			}
			ms := w.order[base:]
			for i := 1; i < len(ms); i++ { // insertion sort: objects are small
				for j := i; j > 0 && ms[j].key < ms[j-1].key; j-- {
					ms[j], ms[j-1] = ms[j-1], ms[j]
				}
			}
			first := true
			for k := range ms {
				first = w.member(w.order[base+k], first, skip) // w.order may grow (and move) meanwhile
			}
			w.order = w.order[:base]
		}
		w.buf = append(w.buf, '}')
	}
}

// member writes one object member unless its key is in skip; it returns the new value of first.
func (w *writer) member(m *member, first bool, skip []string) bool {
	if len(skip) > 0 && slices.Contains(skip, m.key) {
		return first
	}
	if !first {
		w.buf = append(w.buf, ',')
	}
	w.buf = appendQuoted(w.buf, m.key)
	w.buf = append(w.buf, ':')
	w.write(&m.val)
	return false
}

// appendQuoted appends s as a JSON string, escaping only what JSON requires (no HTML escaping).
func appendQuoted(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// errDuplicateKey is returned by Canonical for an object with a repeated key.
var errDuplicateKey = errors.New("duplicate object key")

// Canonical returns b as canonical JSON: object keys sorted by byte order, no insignificant whitespace, strings
// with minimal escaping, numbers verbatim (FHIR decimals keep their precision). It rejects anything that is not
// exactly one strict JSON value, including duplicate keys. Equal FHIR content in any key order or layout gives
// equal bytes.
func Canonical(b []byte) ([]byte, error) {
	n, dup, err := parseJSON(b)
	if err != nil {
		return nil, fmt.Errorf("fhir: canonical: %w", err)
	}
	if dup {
		return nil, fmt.Errorf("fhir: canonical: %w", errDuplicateKey)
	}
	w := writer{canonical: true, buf: make([]byte, 0, len(b))}
	w.write(&n)
	return w.buf, nil
}

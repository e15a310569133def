package outbox

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ResponseText is how an attempt keeps a receiver's answer (Attempt.Response): the first MaxResponseBytes
// of body as text when it is text (valid UTF-8, apart from a rune cut by the limit, which is dropped; no
// control characters but tab, newline and carriage return), with a note of the full size when it was cut;
// a body that is not text is described by its size, never kept. total is the body's length as far as it
// was read (at least len(body)), whole whether that was all of it. An empty body is "".
func ResponseText(body []byte, total int, whole bool) string {
	if len(body) == 0 {
		return ""
	}
	total = max(total, len(body))
	head := body
	if len(head) > MaxResponseBytes {
		head = head[:MaxResponseBytes]
	}
	// A multi-byte rune cut by the limit leaves at most UTFMax-1 bytes of an incomplete sequence at the end.
	for i := 0; i < utf8.UTFMax-1 && !utf8.Valid(head); i++ {
		if r, _ := utf8.DecodeLastRune(head); r != utf8.RuneError || len(head) == len(body) {
			break // invalid elsewhere, or nothing was cut
		}
		head = head[:len(head)-1]
	}
	size := fmt.Sprintf("%d bytes", total)
	if !whole {
		size = fmt.Sprintf("more than %d bytes", total)
	}
	if !utf8.Valid(head) || !textOnly(head) {
		return "(binary response body, " + size + "; not kept)"
	}
	if total > len(head) || !whole {
		return string(head) + "… (" + size + " in all)"
	}
	return string(head)
}

// textOnly reports whether b has no control characters other than tab, newline and carriage return.
func textOnly(b []byte) bool {
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
	}
	return true
}

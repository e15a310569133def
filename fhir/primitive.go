package fhir

import (
	"strconv"
	"strings"
)

// The R4 primitive formats, written out by hand (no regexp compiled at start-up). They follow the patterns of
// the official JSON schema (primitive_test.go checks them against those patterns) and add what the schema
// cannot say: no empty values, no control characters in strings, real calendar dates, 32-bit integer ranges,
// base64 alphabet and padding, and a <div> root for narrative XHTML.

// primitiveJSONKind is the JSON kind a primitive must be sent as.
func primitiveJSONKind(typ string) jsonKind {
	switch typ {
	case "boolean":
		return jsonBool
	case "decimal", "integer", "positiveInt", "unsignedInt":
		return jsonNumber
	}
	return jsonString
}

// validPrimitive reports whether s (the string value, or the number literal) is a valid value of typ.
func validPrimitive(typ, s string) bool {
	switch typ {
	case "boolean":
		return s == "true" || s == "false"
	case "decimal":
		return s != "" // the JSON number grammar is the FHIR decimal grammar
	case "integer":
		return validInt(s, -1<<31)
	case "unsignedInt":
		return validInt(s, 0)
	case "positiveInt":
		return validInt(s, 1)
	case "string", "markdown":
		return validString(s)
	case "id":
		return validID(s)
	case "code":
		return validCode(s)
	case "uri", "url", "canonical":
		return s != "" && !strings.ContainsAny(s, " \t\n\r\f")
	case "oid":
		return validOID(s)
	case "uuid":
		return validUUIDURN(s)
	case "date":
		_, ok := scanDate(s, false)
		return ok
	case "dateTime":
		return validDateTime(s, false)
	case "instant":
		return validDateTime(s, true)
	case "time":
		n, ok := scanTime(s)
		return ok && n == len(s)
	case "base64Binary":
		return validBase64(s)
	case "xhtml":
		return strings.HasPrefix(strings.TrimLeft(s, " \t\r\n"), "<div")
	}
	return false
}

func validInt(s string, minimum int64) bool {
	t := strings.TrimPrefix(s, "-")
	if t == "" || (len(t) > 1 && t[0] == '0') {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	v, err := strconv.ParseInt(s, 10, 32)
	return err == nil && v >= minimum
}

// validString: non-empty, no control characters other than tab, CR and LF.
func validString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// validCode: non-empty, no leading or trailing whitespace, single whitespace characters between tokens.
func validCode(s string) bool {
	if s == "" || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

func validOID(s string) bool {
	rest, ok := strings.CutPrefix(s, "urn:oid:")
	if !ok || len(rest) < 3 || rest[0] < '0' || rest[0] > '2' || rest[1] != '.' {
		return false
	}
	for part := range strings.SplitSeq(rest[2:], ".") {
		if part == "" || (len(part) > 1 && part[0] == '0') {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// validUUIDURN: "urn:uuid:" and a lower-case 8-4-4-4-12 hex UUID.
func validUUIDURN(s string) bool {
	rest, ok := strings.CutPrefix(s, "urn:uuid:")
	return ok && validUUID(rest)
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

func digits(s string, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for i := 0; i < n; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// scanDate reads YYYY, YYYY-MM or YYYY-MM-DD (full requires the day) and returns the bytes consumed. The whole
// of s must be the date unless more may follow (the caller checks what is left).
func scanDate(s string, prefix bool) (int, bool) {
	y, ok := digits(s, 4)
	if !ok || y == 0 {
		return 0, false
	}
	n := 4
	if len(s) > n && s[n] == '-' {
		m, ok := digits(s[n+1:], 2)
		if !ok || m < 1 || m > 12 {
			return 0, false
		}
		n += 3
		if len(s) > n && s[n] == '-' {
			d, ok := digits(s[n+1:], 2)
			if !ok || d < 1 || d > daysIn(y, m) {
				return 0, false
			}
			n += 3
		}
	}
	if !prefix && n != len(s) {
		return 0, false
	}
	return n, true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// scanTime reads hh:mm:ss[.fff…] and returns the bytes consumed.
func scanTime(s string) (int, bool) {
	h, ok1 := digits(s, 2)
	m, ok2 := digits(s[min(len(s), 3):], 2)
	sec, ok3 := digits(s[min(len(s), 6):], 2)
	if !ok1 || !ok2 || !ok3 || s[2] != ':' || s[5] != ':' || h > 23 || m > 59 || sec > 60 {
		return 0, false
	}
	n := 8
	if len(s) > n && s[n] == '.' {
		n++
		start := n
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == start {
			return 0, false
		}
	}
	return n, true
}

// validDateTime checks a dateTime (partial dates allowed; a time needs a zone) or, with instant set, an instant
// (full date, time and zone).
func validDateTime(s string, instant bool) bool {
	n, ok := scanDate(s, true)
	if !ok {
		return false
	}
	if n == len(s) {
		return !instant
	}
	if n != 10 || s[n] != 'T' {
		return false
	}
	s = s[n+1:]
	n, ok = scanTime(s)
	if !ok {
		return false
	}
	zone := s[n:]
	if zone == "Z" {
		return true
	}
	if len(zone) != 6 || (zone[0] != '+' && zone[0] != '-') || zone[3] != ':' {
		return false
	}
	zh, ok1 := digits(zone[1:], 2)
	zm, ok2 := digits(zone[4:], 2)
	return ok1 && ok2 && zm <= 59 && (zh <= 13 || zh == 14 && zm == 0)
}

// validBase64: standard alphabet in groups of four, whitespace only between groups (as the schema's pattern
// says), '=' only as final padding.
func validBase64(s string) bool {
	n, pad := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isSpace(c):
			if n%4 != 0 {
				return false
			}
			continue
		case c == '=':
			pad++
		case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/':
			if pad > 0 {
				return false
			}
		default:
			return false
		}
		n++
	}
	return n > 0 && n%4 == 0 && pad <= 2
}

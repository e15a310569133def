package web

import (
	"strconv"
	"strings"
)

// ParseETagVersion reads a version from an If-Match value: W/"3" (FHIR), "3" or 3. ok is false for anything
// else, including "*" and lists.
func ParseETagVersion(v string) (int, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || strconv.Itoa(n) != v {
		return 0, false
	}
	return n, true
}

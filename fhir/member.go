package fhir

import "encoding/json"

// TopLevel returns the raw value of one top-level member of a JSON object without decoding the rest: the
// stored ServiceRequest is read on every intake and read path only for its status and meta.versionId, and a
// full json.Unmarshal scans (and validates) the whole document twice. The input is socialrx's own stored
// JSON, already validated; on anything unexpected it reports not found and callers fall back to decoding.
func TopLevel(b []byte, key string) (json.RawMessage, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return nil, false
		}
		kEnd := skipString(b, i)
		if kEnd < 0 {
			return nil, false
		}
		k := b[i+1 : kEnd-1]
		i = skipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		i = skipSpace(b, i+1)
		vEnd := skipValue(b, i)
		if vEnd < 0 {
			return nil, false
		}
		if string(k) == key {
			return json.RawMessage(b[i:vEnd]), true
		}
		i = skipSpace(b, vEnd)
		if i >= len(b) || b[i] != ',' {
			return nil, false
		}
		i++
	}
}

// TopLevelString is TopLevel for a plain string value (no escapes).
func TopLevelString(b []byte, key string) (string, bool) {
	v, ok := TopLevel(b, key)
	if !ok || len(v) < 2 || v[0] != '"' {
		return "", false
	}
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' {
			var s string
			if json.Unmarshal(v, &s) != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(v[1 : len(v)-1]), true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"', or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the JSON value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = skipString(b, j)
				if j < 0 {
					return -1
				}
				j--
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

package referral

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/socialrx/socialrx/fhir"
)

// objectMembers splits a JSON object into its members.
func objectMembers(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// replaceMembers rewrites the named top-level members of a JSON object, keeping every member's position.
func replaceMembers(b []byte, repl map[string]func(json.RawMessage) (json.RawMessage, error)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("bad object key")
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		if f, ok := repl[key]; ok {
			if val, err = f(val); err != nil {
				return nil, err
			}
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(mustJSON(key))
		buf.WriteByte(':')
		buf.Write(val)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// mustJSON marshals a string (cannot fail).
func mustJSON(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// canonicalEqual reports whether two JSON values (nil: absent) are equal as canonical JSON.
func canonicalEqual(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ca, errA := fhir.Canonical(a)
	cb, errB := fhir.Canonical(b)
	if errA != nil || errB != nil {
		return bytes.Equal(a, b)
	}
	return bytes.Equal(ca, cb)
}

// changedMembers names, sorted, the members of two JSON objects (cur as stored, in as sent) whose values
// differ as canonical JSON (a member present in one only differs), leaving out the ignored ones. A value that
// is not an object counts as an empty one.
func changedMembers(cur, in json.RawMessage, ignore ...string) []string {
	curM, _ := objectMembers(cur)
	inM, _ := objectMembers(in)
	keys := make([]string, 0, len(curM)+len(inM))
	for k := range curM {
		keys = append(keys, k)
	}
	for k := range inM {
		if _, ok := curM[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if !slices.Contains(ignore, k) && !canonicalEqual(curM[k], inM[k]) {
			out = append(out, k)
		}
	}
	return out
}

// SetJSONField sets one top-level field of a JSON object (and drops its _field twin).
func SetJSONField(obj json.RawMessage, field string, value any) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(obj, &top); err != nil {
		return nil, fmt.Errorf("referral: resource: %w", err)
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("referral: resource: %w", err)
	}
	top[field] = v
	delete(top, "_"+field)
	out, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("referral: resource: %w", err)
	}
	return out, nil
}

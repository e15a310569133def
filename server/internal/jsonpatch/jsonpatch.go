// Package jsonpatch applies RFC 6902 JSON Patch documents to FHIR resources for the FHIR API's PATCH: Parse
// reads a patch strictly, Apply applies it to a resource, letting add, remove and replace touch only the
// elements a caller names as changeable (test may read any). Errors are *fhir.Error with a kind: a malformed
// patch is fault.Invalid, a failed test fault.Conflict, anything else the patch may not do fault.Rule.
package jsonpatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/socialrx/socialrx/fault"
	"github.com/socialrx/socialrx/fhir"
)

// Op is one JSON Patch (RFC 6902) operation.
type Op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
	From  string          `json:"from"`
	// hasValue is set when the op carried a value member (null is a value).
	hasValue bool
}

// Parse decodes a JSON Patch document strictly: one array of known operations with the members they need.
func Parse(body []byte) ([]Op, error) {
	bad := func(msg string) error { return fhir.NewError(fault.Invalid, fhir.CodeStructure, msg, "PATCH") }
	if _, err := fhir.Canonical(body); err != nil {
		return nil, bad("json-patch: the body must be one JSON array of operations, without duplicate keys")
	}
	var raws []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, bad("json-patch: the body must be a JSON array of operation objects")
	}
	if len(raws) == 0 {
		return nil, bad("json-patch: the patch has no operations")
	}
	ops := make([]Op, 0, len(raws))
	for i, m := range raws {
		var op Op
		at := fmt.Sprintf("json-patch: operation %d: ", i)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := m[k]
			var err error
			switch k {
			case "op":
				err = json.Unmarshal(v, &op.Op)
			case "path":
				err = json.Unmarshal(v, &op.Path)
			case "from":
				err = json.Unmarshal(v, &op.From)
			case "value":
				op.Value, op.hasValue = v, true
			default:
				return nil, bad(at + "unknown member " + strconv.Quote(k))
			}
			if err != nil {
				return nil, bad(at + k + " must be a string")
			}
		}
		if _, ok := m["path"]; !ok {
			return nil, bad(at + "path is required")
		}
		if op.Path != "" && !strings.HasPrefix(op.Path, "/") {
			return nil, bad(at + "path must be a JSON Pointer starting with /")
		}
		switch op.Op {
		case "add", "replace", "test":
			if !op.hasValue {
				return nil, bad(at + op.Op + " needs a value")
			}
		case "remove":
		case "move", "copy":
			return nil, fhir.NewError(fault.Rule, fhir.CodeNotSupported,
				at+op.Op+" is not supported; use add, remove, replace or test", "PATCH")
		default:
			return nil, bad(at + "op must be add, remove, replace or test")
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// Apply applies ops to the JSON object doc (a resource of type typ). add, remove and replace may touch
// only the top-level elements in changeable (and what is inside them); test may read anything. A failed test
// is a 409, a path that does not exist a 422.
func Apply(doc []byte, ops []Op, typ string, changeable []string) ([]byte, error) {
	root, err := decodeAny(doc)
	if err != nil {
		return nil, fmt.Errorf("json-patch: current %s: %w", typ, err)
	}
	for i, op := range ops {
		at := fmt.Sprintf("json-patch: operation %d (%s %s): ", i, op.Op, op.Path)
		tokens, err := splitPointer(op.Path)
		if err != nil {
			return nil, fhir.NewError(fault.Invalid, fhir.CodeStructure, at+err.Error(), "PATCH")
		}
		expr := typ
		if len(tokens) > 0 {
			expr = typ + "." + tokens[0]
		}
		if op.Op != "test" && (len(tokens) == 0 || !slices.Contains(changeable, tokens[0])) {
			return nil, fhir.NewError(fault.Rule, fhir.CodeBusinessRule,
				at+"a patch may change only "+strings.Join(changeable, ", "), expr)
		}
		var value any
		if op.hasValue {
			if value, err = decodeAny(op.Value); err != nil {
				return nil, fhir.NewError(fault.Invalid, fhir.CodeStructure, at+"value is not valid JSON", "PATCH")
			}
		}
		switch op.Op {
		case "test":
			got, ok := lookup(root, tokens)
			if !ok || !jsonEqual(got, value) {
				return nil, fhir.NewError(fault.Conflict, fhir.CodeConflict, at+"test failed: the value differs", expr)
			}
		case "add", "replace", "remove":
			root, err = patchAt(root, tokens, op.Op, value)
			if err != nil {
				return nil, fhir.NewError(fault.Rule, fhir.CodeProcessing, at+err.Error(), expr)
			}
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		return nil, fhir.NewError(fault.Rule, fhir.CodeProcessing, "json-patch: the result is not JSON", "PATCH")
	}
	return out, nil
}

// decodeAny decodes JSON keeping numbers exact.
func decodeAny(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// splitPointer splits a JSON Pointer (RFC 6901) into its unescaped tokens.
func splitPointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p[1:], "/")
	for i, t := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(t, "~0", ""), "~1", ""), "~") {
			return nil, errors.New("bad ~ escape in the path")
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// arrayIndex reads an array index token (no leading zeros); n is the array's length, "-" is n when allowEnd.
func arrayIndex(tok string, n int, allowEnd bool) (int, error) {
	if tok == "-" && allowEnd {
		return n, nil
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || strconv.Itoa(i) != tok {
		return 0, fmt.Errorf("%q is not an array index", tok)
	}
	max := n - 1
	if allowEnd {
		max = n
	}
	if i > max {
		return 0, fmt.Errorf("index %d is out of range", i)
	}
	return i, nil
}

// lookup returns the value at tokens.
func lookup(v any, tokens []string) (any, bool) {
	for _, t := range tokens {
		switch c := v.(type) {
		case map[string]any:
			next, ok := c[t]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := arrayIndex(t, len(c), false)
			if err != nil {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// patchAt applies add, replace or remove at tokens (non-empty) and returns the new root.
func patchAt(root any, tokens []string, op string, value any) (any, error) {
	parent, ok := lookup(root, tokens[:len(tokens)-1])
	if !ok {
		return nil, errors.New("the path's parent does not exist")
	}
	last := tokens[len(tokens)-1]
	switch c := parent.(type) {
	case map[string]any:
		_, exists := c[last]
		switch op {
		case "add":
			c[last] = value
		case "replace":
			if !exists {
				return nil, errors.New("nothing to replace at the path")
			}
			c[last] = value
		case "remove":
			if !exists {
				return nil, errors.New("nothing to remove at the path")
			}
			delete(c, last)
		}
		return root, nil
	case []any:
		i, err := arrayIndex(last, len(c), op == "add")
		if err != nil {
			return nil, err
		}
		var next []any
		switch op {
		case "add":
			next = slices.Insert(slices.Clone(c), i, value)
		case "replace":
			next = slices.Clone(c)
			next[i] = value
		case "remove":
			next = slices.Delete(slices.Clone(c), i, i+1)
		}
		return setAt(root, tokens[:len(tokens)-1], next), nil
	}
	return nil, errors.New("the path's parent is not an object or array")
}

// setAt replaces the value at tokens (which exists) and returns the new root.
func setAt(root any, tokens []string, v any) any {
	if len(tokens) == 0 {
		return v
	}
	parent, _ := lookup(root, tokens[:len(tokens)-1])
	last := tokens[len(tokens)-1]
	switch c := parent.(type) {
	case map[string]any:
		c[last] = v
	case []any:
		if i, err := arrayIndex(last, len(c), false); err == nil {
			c[i] = v
		}
	}
	return root
}

// jsonEqual compares two decoded JSON values (numbers by their text).
func jsonEqual(a, b any) bool {
	ab, errA := json.Marshal(a)
	bb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return false
	}
	ca, errA := fhir.Canonical(ab)
	cb, errB := fhir.Canonical(bb)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

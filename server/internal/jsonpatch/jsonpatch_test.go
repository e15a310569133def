package jsonpatch

import (
	"encoding/json"
	"testing"
)

// FuzzJSONPatch: no patch document, however malformed, panics or yields anything but one JSON object, and
// changeable elements are the only ones add, remove and replace reach.
func FuzzJSONPatch(f *testing.F) {
	doc := []byte(`{"resourceType":"Task","id":"t1","status":"requested","priority":"routine","output":[{"type":{"text":"outcome"},"valueString":"x"}],"statusReason":{"text":"r"}}`)
	for _, seed := range []string{
		`[{"op":"replace","path":"/status","value":"received"}]`,
		`[{"op":"add","path":"/output/-","value":{"type":{"text":"outcome"},"valueString":"y"}}]`,
		`[{"op":"add","path":"/output/0","value":1},{"op":"remove","path":"/output/1"}]`,
		`[{"op":"remove","path":"/statusReason/text"},{"op":"test","path":"/priority","value":"routine"}]`,
		`[{"op":"replace","path":"/priority","value":"urgent"}]`,
		`[{"op":"add","path":"/note~1x","value":1}]`,
		`[{"op":"add","path":"/output/01","value":1}]`,
		`[{"op":"replace","path":"","value":{}}]`,
		`[{"op":"copy","from":"/status","path":"/note"}]`,
		`[{"op":"add","path":"/status/x","value":1}]`,
		`[]`, `{}`, `[1]`, `[{"op":"add"}]`, `[{"op":"add","path":"x","value":1}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		ops, err := Parse(patch)
		if err != nil {
			return
		}
		out, err := Apply(doc, ops, "Task", []string{"status", "statusReason", "businessStatus", "output", "note"})
		if err != nil {
			return
		}
		var before, after map[string]json.RawMessage
		if err := json.Unmarshal(out, &after); err != nil || after == nil {
			t.Fatalf("patch result is not a JSON object: %s", out)
		}
		_ = json.Unmarshal(doc, &before)
		for _, k := range []string{"resourceType", "id", "priority"} {
			if string(before[k]) != string(after[k]) {
				t.Fatalf("patch %s changed %s", patch, k)
			}
		}
	})
}

package referral

import (
	"bytes"
	"encoding/json"
)

// Masked is what MaskPayload shows instead of a value.
const Masked = "•••"

// shownKeys are the members of a payload whose text values MaskPayload leaves readable: ids, types, states,
// times, codes and references, never a person's details or free text (which may hold them).
var shownKeys = map[string]bool{
	"type": true, "timestamp": true, "id": true, "service_request_id": true, "task_id": true, "status": true,
	"version": true, "priority": true, "referred_at": true, "created_at": true, "updated_at": true,
	"resourceType": true, "system": true, "code": true, "ods_code": true, "fullUrl": true, "reference": true,
	"versionId": true, "lastUpdated": true, "intent": true, "authoredOn": true, "lastModified": true,
	"businessStatus": true, "profile": true, "url": true, "valueCode": true, "mode": true, "source": true,
	"recorded": true, "interpreter_needed": true,
}

// MaskPayload returns a message payload with every text value masked except those of shownKeys (and every
// value inside an object named "patient"), keeping its shape, numbers and booleans, so that an engineer can
// see what kind of message it is without seeing who it is about. A payload that is not JSON is masked whole.
func MaskPayload(p json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(p)) == 0 {
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		b, _ := json.Marshal(Masked)
		return b
	}
	b, err := json.Marshal(mask(v, "", false))
	if err != nil {
		b, _ = json.Marshal(Masked)
	}
	return b
}

// mask masks v, the value of member key (inPatient: under a "patient" object, where nothing is shown).
func mask(v any, key string, inPatient bool) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = mask(e, k, inPatient || k == "patient")
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = mask(e, key, inPatient)
		}
		return x
	case string:
		if !inPatient && shownKeys[key] {
			return x
		}
		return Masked
	case json.Number:
		if inPatient {
			return Masked
		}
		return x
	}
	return v
}

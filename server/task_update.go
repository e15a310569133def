package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/fhir"
	"github.com/socialrx/socialrx/mapping"
	"github.com/socialrx/socialrx/outbox"
)

// Task updates (issue 4): PUT and PATCH /fhir/Task/{id} from FHIR-capable community platforms (the owner, as
// the community actor) and from GP systems (the requesting practice, as the requester actor: cancelled with a
// reason, or entered-in-error). Both need If-Match: W/"<versionId>" (428 without, 412 when stale); what may
// change is decided by mapping.TaskUpdate and the state machine by mapping.ApplyStatus.

// taskPatchable are the Task elements a JSON Patch may add, remove or replace (test may read any).
var taskPatchable = []string{"status", "statusReason", "businessStatus", "output", "note"}

// updateTask is PUT /fhir/Task/{id}: the full Task, with only the changeable elements changed.
func (s *Server) updateTask(w http.ResponseWriter, r *http.Request) {
	ref, actor, expect, err := s.taskForUpdate(r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	body, err := s.readFHIRBody(w, r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.applyTask(w, r, ref, actor, expect, body)
}

// patchTask is PATCH /fhir/Task/{id} with a JSON Patch (application/json-patch+json) limited to status,
// statusReason, businessStatus, output and note. Notes are append-only: `add /note/-` with an Annotation adds
// one (also the first: the patch sees an empty note array then); author and time are socialrx's.
func (s *Server) patchTask(w http.ResponseWriter, r *http.Request) {
	ref, actor, expect, err := s.taskForUpdate(r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	ops, err := s.readJSONPatch(w, r)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	cur, err := patchableTask(ref.Referral)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	body, err := applyJSONPatch(cur, ops, "Task", taskPatchable)
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	if body, err = dropEmptyNote(body); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.applyTask(w, r, ref, actor, expect, body)
}

// patchableTask is the document a Task PATCH applies to: the current Task with "note" present even when it
// has no notes yet (an empty array), so that `add /note/-` appends the first note as it does the next ones.
func patchableTask(ref mapping.Referral) ([]byte, error) {
	t := mapping.TaskFor(ref)
	b, err := json.Marshal(t)
	if err != nil || len(t.Note) > 0 {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["note"] = json.RawMessage(`[]`)
	return json.Marshal(m)
}

// dropEmptyNote removes an empty "note" array left by patchableTask (FHIR JSON has no empty arrays).
func dropEmptyNote(b []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("json-patch: result: %w", err)
	}
	if raw, ok := m["note"]; !ok || !bytes.Equal(bytes.TrimSpace(raw), []byte("[]")) {
		return b, nil
	}
	delete(m, "note")
	return json.Marshal(m)
}

// taskForUpdate checks who may update the Task {id} and If-Match: the owner's community client acts as the
// community, the requesting practice's GP client as the requester; admins may not (403); anyone else sees
// nothing (404). A stale If-Match is a 412 before the body is even read.
func (s *Server) taskForUpdate(r *http.Request) (outbox.Referral, mapping.Actor, int, error) {
	id := mux.Vars(r)["id"]
	cl := clientFrom(r.Context())
	var actor mapping.Actor
	switch cl.Role {
	case config.RoleCommunity:
		actor = mapping.ActorCommunity
	case config.RoleGP:
		actor = mapping.ActorRequester
	case config.RoleAdmin:
		return outbox.Referral{}, "", 0, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden,
			"admin clients operate the outbox; only the owning service or the requesting practice may update a Task")
	}
	if actor == "" {
		return outbox.Referral{}, "", 0, fhir.NewError(http.StatusForbidden, fhir.CodeForbidden, "this client may not update Tasks")
	}
	ref, err := s.getReferral(r, id)
	if err == nil && ref.Record.TaskID != id {
		err = outbox.ErrNotFound
	}
	if err != nil {
		return outbox.Referral{}, "", 0, err
	}
	expect, err := requireIfMatch(r)
	if err != nil {
		return outbox.Referral{}, "", 0, err
	}
	if expect != ref.Record.Version {
		return outbox.Referral{}, "", 0, fmt.Errorf("task %s is at version %d, If-Match names %d: %w", id, ref.Record.Version, expect, outbox.ErrVersionMismatch)
	}
	return ref, actor, expect, nil
}

// requireIfMatch reads If-Match: W/"<versionId>" (428 when absent, 400 when not one version).
func requireIfMatch(r *http.Request) (int, error) {
	h := r.Header.Get("If-Match")
	if h == "" {
		return 0, fhir.NewError(http.StatusPreconditionRequired, fhir.CodeRequired,
			`If-Match: W/"<versionId>" is required to update a Task: read the Task, then send its ETag so that concurrent updates cannot overwrite each other`, "If-Match")
	}
	v, ok := parseETagVersion(h)
	if !ok {
		return 0, fhir.NewError(http.StatusBadRequest, fhir.CodeInvalid, `If-Match must name one version: W/"<versionId>"`, "If-Match")
	}
	return v, nil
}

// applyTask validates the new Task (body) against the current one and applies the status change it asks for,
// answering with the new Task.
func (s *Server) applyTask(w http.ResponseWriter, r *http.Request, ref outbox.Referral, actor mapping.Actor, expect int, body []byte) {
	if err := fhir.ValidateResource(body, "Task"); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	var head struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.ID == nil || *head.ID != ref.Record.TaskID {
		s.writeFHIRError(w, r, fhir.NewError(http.StatusBadRequest, fhir.CodeInvalid,
			"Task.id is required and must equal the id in the URL", "Task.id"))
		return
	}
	if _, err := mapping.TaskUpdate(ref.Referral, body); err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	from := ref.Record.Status
	now := s.now().UTC().Truncate(time.Microsecond)
	next, err := s.store.UpdateReferral(r.Context(), ref.Record.ID, expect, now,
		func(cur outbox.Referral) (mapping.Referral, []mapping.Event, error) {
			change, err := mapping.TaskUpdate(cur.Referral, body) // against the state inside the transaction
			if err != nil {
				return cur.Referral, nil, err
			}
			if change.To == cur.Record.Status && len(change.Notes) == 0 { // the Task as it is (TaskUpdate refused any other change): a no-op
				return cur.Referral, nil, outbox.ErrNoChange // whoever sends it, even if it is not their status to set
			}
			// New notes (with the same status: a note-only change) are authored by the calling client, now.
			change.By, change.NewID, change.NoteAuthor = actor, s.newID, s.noteAuthor(clientFrom(r.Context()))
			return s.statusUpdate(change, now)(cur)
		})
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.logStatusChange(r, ref, from, next)
	s.writeTask(w, r, next)
}

// writeTask answers 200 with the referral's Task and its ETag, Last-Modified and Location.
func (s *Server) writeTask(w http.ResponseWriter, r *http.Request, ref outbox.Referral) {
	b, err := json.Marshal(mapping.TaskFor(ref.Referral))
	if err != nil {
		s.writeFHIRError(w, r, err)
		return
	}
	s.setResourceHeaders(w, r, "Task", ref.Record.TaskID, strconv.Itoa(ref.Record.Version), ref.Record.UpdatedAt)
	s.writeFHIR(w, http.StatusOK, b)
}

// patchOp is one JSON Patch (RFC 6902) operation.
type patchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
	From  string          `json:"from"`
	// hasValue is set when the op carried a value member (null is a value).
	hasValue bool
}

// readJSONPatch reads a JSON Patch document: Content-Type application/json-patch+json (415), the body limit
// (413), strict JSON (400), known ops with the members they need (400).
func (s *Server) readJSONPatch(w http.ResponseWriter, r *http.Request) ([]patchOp, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json-patch+json" {
		return nil, fhir.NewError(http.StatusUnsupportedMediaType, fhir.CodeNotSupported,
			fmt.Sprintf("Content-Type %q is not supported for PATCH; send a JSON Patch as application/json-patch+json (FHIRPath Patch is not supported)", ct))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fhir.NewError(http.StatusRequestEntityTooLarge, fhir.CodeTooCostly,
				fmt.Sprintf("request body is larger than the limit of %d bytes", s.maxBody))
		}
		return nil, fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, "could not read the request body")
	}
	return parseJSONPatch(body)
}

// parseJSONPatch decodes a JSON Patch document strictly.
func parseJSONPatch(body []byte) ([]patchOp, error) {
	bad := func(msg string) error { return fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, msg, "PATCH") }
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
	ops := make([]patchOp, 0, len(raws))
	for i, m := range raws {
		var op patchOp
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
			return nil, fhir.NewError(http.StatusUnprocessableEntity, fhir.CodeNotSupported,
				at+op.Op+" is not supported; use add, remove, replace or test", "PATCH")
		default:
			return nil, bad(at + "op must be add, remove, replace or test")
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// applyJSONPatch applies ops to the JSON object doc (a resource of type typ). add, remove and replace may touch
// only the top-level elements in changeable (and what is inside them); test may read anything. A failed test
// is a 409, a path that does not exist a 422.
func applyJSONPatch(doc []byte, ops []patchOp, typ string, changeable []string) ([]byte, error) {
	root, err := decodeAny(doc)
	if err != nil {
		return nil, fmt.Errorf("json-patch: current %s: %w", typ, err)
	}
	for i, op := range ops {
		at := fmt.Sprintf("json-patch: operation %d (%s %s): ", i, op.Op, op.Path)
		tokens, err := splitPointer(op.Path)
		if err != nil {
			return nil, fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, at+err.Error(), "PATCH")
		}
		expr := typ
		if len(tokens) > 0 {
			expr = typ + "." + tokens[0]
		}
		if op.Op != "test" && (len(tokens) == 0 || !slices.Contains(changeable, tokens[0])) {
			return nil, fhir.NewError(http.StatusUnprocessableEntity, fhir.CodeBusinessRule,
				at+"a patch may change only "+strings.Join(changeable, ", "), expr)
		}
		var value any
		if op.hasValue {
			if value, err = decodeAny(op.Value); err != nil {
				return nil, fhir.NewError(http.StatusBadRequest, fhir.CodeStructure, at+"value is not valid JSON", "PATCH")
			}
		}
		switch op.Op {
		case "test":
			got, ok := lookup(root, tokens)
			if !ok || !jsonEqual(got, value) {
				return nil, fhir.NewError(http.StatusConflict, fhir.CodeConflict, at+"test failed: the value differs", expr)
			}
		case "add", "replace", "remove":
			root, err = patchAt(root, tokens, op.Op, value)
			if err != nil {
				return nil, fhir.NewError(http.StatusUnprocessableEntity, fhir.CodeProcessing, at+err.Error(), expr)
			}
		}
	}
	out, err := json.Marshal(root)
	if err != nil {
		return nil, fhir.NewError(http.StatusUnprocessableEntity, fhir.CodeProcessing, "json-patch: the result is not JSON", "PATCH")
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

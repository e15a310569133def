package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/socialrx/socialrx/fault"

	"github.com/socialrx/socialrx/fhir"
)

// taskServerElements are the Task elements socialrx alone maintains: an update's values for them are ignored
// (meta.versionId is checked through If-Match by the caller, id against the URL).
var taskServerElements = []string{"resourceType", "id", "meta", "lastModified", "_lastModified"}

// taskClientElements are the Task elements an update may change (issue 4): status, statusReason, output and
// note; businessStatus may be sent back unchanged or left out (transport facts are socialrx's).
var taskClientElements = []string{"status", "statusReason", "businessStatus", "output", "note"}

// TaskUpdate compares a Task sent by a client (PUT /fhir/Task/{id}, or the result of a JSON Patch; body must
// already have passed fhir.ValidateResource for "Task") with the referral's current Task (TaskFor) and returns
// the status change it asks for: To, Reason and Outcome are set; the caller sets By and the rest. The rules:
//
//   - resourceType, id, meta and lastModified are socialrx's and ignored here;
//   - every other element except status, statusReason, businessStatus, output and note must equal the current
//     one (compared as canonical JSON): any difference is a 422 naming the element;
//   - status must be one of the referral state machine's statuses (422 otherwise); the same status as now
//     means no status change (ApplyStatus then answers ErrNoChange);
//   - statusReason (its text, else its first coding's display or code) is the reason of a status change; a
//     statusReason equal to the current one counts as none, so that a reason is never carried into the next
//     status by accident; changing it without changing status is a 422;
//   - businessStatus may be left out or sent back unchanged; any other value is a 422 (transport facts are set
//     by socialrx, never by a client);
//   - output: at most one, with valueString (the outcome text) or valueCodeableConcept (its first coding is the
//     coded outcome, its text the outcome text); an output equal to the current one counts as none; changing
//     it without changing status is a 422; ApplyStatus decides whether the new status may carry one;
//   - note is append-only: the Task's note list must start with the current notes, each unchanged (an edit
//     of Task.note[i], or leaving it out, is a 422 naming Task.note[i]); notes after them are new and their
//     texts are returned in Notes (each must have a text of at most MaxNoteRunes characters; at most
//     MaxTaskNotes notes in all). Only a new note's text is kept: its authorString, authorReference and time
//     are not trusted but overwritten by socialrx (the authenticated client, the time of the update), and
//     any other member (id, extension) is dropped. New notes may come with the same status (a note-only
//     change, which ApplyStatus applies without a status move) or with a status change.
//
// Every problem found is reported at once, in one *fhir.Error with Status 422.
func TaskUpdate(cur Referral, body []byte) (StatusChange, error) {
	in, err := topLevel(body)
	if err != nil {
		return StatusChange{}, fmt.Errorf("%w: Task update: %w", ErrBadInput, err)
	}
	curJSON, err := json.Marshal(TaskFor(cur))
	if err != nil {
		return StatusChange{}, fmt.Errorf("mapping: current Task: %w", err)
	}
	now, err := topLevel(curJSON)
	if err != nil {
		return StatusChange{}, fmt.Errorf("mapping: current Task: %w", err)
	}

	var is issueList
	// Elements outside the client's reach, in a stable order: the current Task's first, then the new ones.
	keys := make([]string, 0, len(in)+len(now))
	for k := range now {
		keys = append(keys, k)
	}
	for k := range in {
		if _, ok := now[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := strings.TrimPrefix(k, "_")
		if slices.Contains(taskServerElements, k) || slices.Contains(taskClientElements, name) {
			continue
		}
		if !sameJSON(in[k], now[k]) {
			is.add(fhir.CodeBusinessRule, "Task."+k+" cannot be changed: an update may change only status, statusReason, output and note", "Task."+k)
		}
	}
	for _, k := range []string{"_status", "_statusReason", "_businessStatus", "_output", "_note"} {
		if !sameJSON(in[k], now[k]) {
			is.add(fhir.CodeNotSupported, "Task."+k+" (extensions on a primitive) is not kept by socialrx", "Task."+k)
		}
	}

	var change StatusChange
	statusChanged := false
	var st string
	if raw, ok := in["status"]; !ok || json.Unmarshal(raw, &st) != nil {
		is.add(fhir.CodeRequired, "Task.status is required", "Task.status")
	} else if to, ok := ParseTaskStatus(st); !ok {
		is.add(fhir.CodeBusinessRule, fmt.Sprintf("Task.status %q is not a status of the referral state machine (%s)", st, statusList()), "Task.status")
	} else {
		change.To = to
		statusChanged = to != cur.Record.Status
	}

	if raw, ok := in["statusReason"]; ok && !sameJSON(raw, now["statusReason"]) {
		var cc fhir.CodeableConcept
		switch {
		case json.Unmarshal(raw, &cc) != nil:
			is.add(fhir.CodeStructure, "Task.statusReason must be a CodeableConcept", "Task.statusReason")
		case consentWithdrawn(cc):
			// A consent withdrawal: with status cancelled, whatever the status now (a final referral keeps
			// its status and is erased; WithdrawConsent).
			if change.To != StatusCancelled {
				is.add(fhir.CodeBusinessRule, "the reason "+CancelReasonSystem+"|"+ConsentWithdrawnCode+" comes with Task.status cancelled", "Task.statusReason")
			}
			change.ConsentWithdrawn, change.Reason = true, ConsentWithdrawnText
		case !statusChanged:
			is.add(fhir.CodeBusinessRule, "Task.statusReason can only change together with Task.status", "Task.statusReason")
		default:
			change.Reason = conceptText(cc)
		}
	}

	if raw, ok := in["businessStatus"]; ok && !sameJSON(raw, now["businessStatus"]) {
		is.add(fhir.CodeBusinessRule, "Task.businessStatus carries transport facts set by socialrx (queued, delivered, delivery-failed, awaiting-pickup, picked-up, overdue); send it back unchanged or leave it out", "Task.businessStatus")
	}

	if raw, ok := in["output"]; ok && !sameJSON(withoutOwnOutputs(raw), withoutOwnOutputs(now["output"])) {
		o, oerr := outcomeFromOutput(withoutOwnOutputs(raw))
		switch {
		case oerr != nil:
			is = append(is, oerr.Issues...)
		case !statusChanged:
			is.add(fhir.CodeBusinessRule, "Task.output (the outcome) can only change together with Task.status (completed or failed)", "Task.output")
		default:
			change.Outcome = o
		}
	}

	if !sameJSON(in["note"], now["note"]) {
		notes, nis := newNotes(in["note"], now["note"])
		is = append(is, nis...)
		change.Notes = notes
	}

	if len(is) > 0 {
		return StatusChange{}, &fhir.Error{Kind: fault.Rule, Issues: is}
	}
	return change, nil
}

// consentWithdrawn reports whether a statusReason carries the coded consent withdrawal.
func consentWithdrawn(cc fhir.CodeableConcept) bool {
	for _, c := range cc.Coding {
		if c.System == CancelReasonSystem && c.Code == ConsentWithdrawnCode {
			return true
		}
	}
	return false
}

// newNotes compares the Task.note sent (raw; nil when absent) with the current one (cur; nil when there are
// no notes) and returns the texts of the notes added at the end, or the issues that refuse the change.
func newNotes(raw, cur json.RawMessage) ([]string, issueList) {
	var is issueList
	var in, have []json.RawMessage
	if raw != nil && json.Unmarshal(raw, &in) != nil {
		is.add(fhir.CodeStructure, "Task.note must be an array of Annotations", "Task.note")
		return nil, is
	}
	if cur != nil && json.Unmarshal(cur, &have) != nil {
		is.add(fhir.CodeProcessing, "the current Task.note cannot be read", "Task.note")
		return nil, is
	}
	for i := range have {
		at := fmt.Sprintf("Task.note[%d]", i)
		switch {
		case i >= len(in):
			is.add(fhir.CodeBusinessRule, at+" cannot be removed: notes are append-only; send every current note unchanged and add new ones at the end", at)
			return nil, is
		case !sameJSON(in[i], have[i]):
			is.add(fhir.CodeBusinessRule, at+" cannot be changed: notes are append-only; send every current note unchanged and add new ones at the end", at)
		}
	}
	if len(is) > 0 {
		return nil, is
	}
	if len(in) > MaxTaskNotes {
		is.add(fhir.CodeBusinessRule, fmt.Sprintf("Task.note: a Task keeps at most %d notes", MaxTaskNotes), "Task.note")
		return nil, is
	}
	var texts []string
	for i := len(have); i < len(in); i++ {
		at := fmt.Sprintf("Task.note[%d]", i)
		var a struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(in[i], &a); err != nil || a.Text == nil {
			is.add(fhir.CodeRequired, at+".text is required", at+".text")
			continue
		}
		if msg := CheckNoteText(*a.Text); msg != "" {
			is.add(fhir.CodeBusinessRule, at+": "+msg, at+".text")
			continue
		}
		texts = append(texts, *a.Text)
	}
	return texts, is
}

// withoutOwnOutputs is Task.output without the entries socialrx writes itself (typed in TaskOutputSystem: the
// episode code, the measures' Observations, the GP letter): a client sends them back or leaves them out, and
// either way they are not the outcome it may change. Anything that is not an array is returned as it is.
func withoutOwnOutputs(raw json.RawMessage) json.RawMessage {
	var items []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &items) != nil {
		return raw
	}
	kept := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		var o struct {
			Type struct {
				Coding []fhir.Coding `json:"coding"`
			} `json:"type"`
		}
		if json.Unmarshal(it, &o) == nil && len(o.Type.Coding) > 0 && o.Type.Coding[0].System == TaskOutputSystem {
			continue
		}
		kept = append(kept, it)
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return raw
	}
	return b
}

// outcomeFromOutput reads Task.output into an Outcome: the inverse of TaskFor's rendering.
func outcomeFromOutput(raw json.RawMessage) (*Outcome, *fhir.Error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fhir.NewError(fault.Rule, fhir.CodeStructure, "Task.output must be an array", "Task.output")
	}
	switch len(items) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fhir.NewError(fault.Rule, fhir.CodeBusinessRule,
			"Task.output: socialrx keeps one outcome; send exactly one output (valueString or valueCodeableConcept)", "Task.output")
	}
	members, err := topLevel(items[0])
	if err != nil {
		return nil, fhir.NewError(fault.Rule, fhir.CodeStructure, "Task.output[0] must be an object", "Task.output[0]")
	}
	var is issueList
	for k := range members {
		switch k {
		case "type", "valueString", "valueCodeableConcept":
		default:
			is.add(fhir.CodeNotSupported, "Task.output[0]."+k+" is not kept by socialrx: an outcome is a valueString or a valueCodeableConcept", "Task.output[0]."+k)
		}
	}
	if len(is) > 0 {
		slices.SortFunc(is, func(a, b fhir.Issue) int { return strings.Compare(a.Expression[0], b.Expression[0]) })
		return nil, &fhir.Error{Kind: fault.Rule, Issues: is}
	}
	var out fhir.TaskOutput
	if err := json.Unmarshal(items[0], &out); err != nil {
		return nil, fhir.NewError(fault.Rule, fhir.CodeStructure, "Task.output[0] is not a Task output", "Task.output[0]")
	}
	o := &Outcome{}
	switch {
	case out.ValueCodeableConcept != nil:
		o.Text = out.ValueCodeableConcept.Text
		if len(out.ValueCodeableConcept.Coding) > 0 {
			c := out.ValueCodeableConcept.Coding[0]
			o.Code = &Concept{System: c.System, Code: c.Code, Display: c.Display}
		}
	case out.ValueString != nil:
		o.Text = *out.ValueString
	default:
		return nil, fhir.NewError(fault.Rule, fhir.CodeRequired,
			"Task.output[0] needs valueString (the outcome text) or valueCodeableConcept (a coded outcome)", "Task.output[0]")
	}
	return o, nil
}

// conceptText is what a person reads of a CodeableConcept: its text, else its first coding's display or code.
func conceptText(cc fhir.CodeableConcept) string {
	if t := strings.TrimSpace(cc.Text); t != "" {
		return t
	}
	for _, c := range cc.Coding {
		if c.Display != "" {
			return c.Display
		}
		if c.Code != "" {
			return c.Code
		}
	}
	return ""
}

// statusList names every status of the state machine, for messages.
func statusList() string {
	names := make([]string, 0, len(AllStatuses()))
	for _, s := range AllStatuses() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// topLevel splits a JSON object into its members (duplicates keep the last; callers pass validated JSON).
func topLevel(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

// sameJSON reports whether two JSON values (nil: absent) are equal as canonical JSON.
func sameJSON(a, b json.RawMessage) bool {
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

// Package fhirtest checks JSON documents against the official HL7 FHIR R4 JSON schema
// (fhir/testdata/fhir.schema.json) with github.com/santhosh-tekuri/jsonschema/v6, an implementation independent
// of package fhir's own validator. Tests of any package use it to prove that what socialrx emits
// (ServiceRequest, Task, Bundle, OperationOutcome, CapabilityStatement) is valid R4 JSON:
//
//	v := fhirtest.NewValidator(t)
//	v.AssertValid(t, body)
//
// The schema is a test-only dependency: it is found next to this package's source (runtime.Caller), so it
// works from any package's tests. It is compiled once per test binary: every NewValidator returns the same
// Validator, which is safe for concurrent use (compiling the 3 MB schema per test made the race-detector run
// of the server tests slow and memory-hungry).
package fhirtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL is the schema's own id.
const schemaURL = "http://hl7.org/fhir/json-schema/4.0"

// Validator validates documents against the official R4 schema. The zero value is not usable; call
// NewValidator.
type Validator struct {
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	root     *jsonschema.Schema
	byType   map[string]*jsonschema.Schema
}

// SchemaPath returns the path of fhir/testdata/fhir.schema.json, located from this source file.
func SchemaPath() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("fhir", "testdata", "fhir.schema.json")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "fhir.schema.json")
}

// compiled is the one Validator of this test binary, compiled on first use. It is write-once: after the
// first call it only hands out the same value (the Validator's own cache is guarded by its mutex).
var compiled = sync.OnceValues(func() (*Validator, error) { return load(SchemaPath()) })

// NewValidator returns the test binary's Validator of the official schema, loading and compiling it on first
// use; it fails the test if it cannot.
func NewValidator(tb testing.TB) *Validator {
	tb.Helper()
	v, err := compiled()
	if err != nil {
		tb.Fatalf("fhirtest: %v", err)
	}
	return v
}

func load(path string) (*Validator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := patchErrata(doc); err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	root, err := c.Compile(schemaURL)
	if err != nil {
		return nil, err
	}
	return &Validator{compiler: c, root: root, byType: map[string]*jsonschema.Schema{}}, nil
}

// patchErrata fixes the one known erratum that would reject valid socialrx output: the fhirVersion enums of
// the published R4 schema stop at 4.0.0 and miss R4's own 4.0.1 (see fhir/testdata/README.md).
func patchErrata(doc any) error {
	defs, _ := doc.(map[string]any)["definitions"].(map[string]any)
	for _, name := range []string{"CapabilityStatement", "StructureDefinition"} {
		def, _ := defs[name].(map[string]any)
		props, _ := def["properties"].(map[string]any)
		fv, _ := props["fhirVersion"].(map[string]any)
		enum, ok := fv["enum"].([]any)
		if !ok {
			return fmt.Errorf("fhirtest: schema erratum: %s.fhirVersion has no enum", name)
		}
		fv["enum"] = append(enum, "4.0.1")
	}
	return nil
}

// Validate checks one JSON document. A document with a known resourceType is checked against that resource's
// definition (for short error messages), anything else against the whole schema.
func (v *Validator) Validate(tb testing.TB, b []byte) error {
	tb.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("fhirtest: not JSON: %w", err)
	}
	sch, err := v.schemaFor(inst)
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// AssertValid fails the test (without stopping it) when b is not valid R4 JSON.
func (v *Validator) AssertValid(tb testing.TB, b []byte) {
	tb.Helper()
	if err := v.Validate(tb, b); err != nil {
		tb.Errorf("not valid FHIR R4 JSON (official schema): %v\ndocument: %.2000s", err, b)
	}
}

func (v *Validator) schemaFor(inst any) (*jsonschema.Schema, error) {
	obj, _ := inst.(map[string]any)
	rt, _ := obj["resourceType"].(string)
	if rt == "" || strings.ContainsAny(rt, "_#/") || rt == "ResourceList" {
		return v.root, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.byType[rt]; ok {
		return s, nil
	}
	s, err := v.compiler.Compile(schemaURL + "#/definitions/" + rt)
	if err != nil {
		return v.root, nil //nolint:nilerr // not a resource name: the whole schema reports it
	}
	v.byType[rt] = s
	return s, nil
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGeneratedTableIsUpToDate regenerates the table from the committed schema and compares it with the
// committed fhir/elements_gen.go (run `go generate ./fhir` after changing the generator).
func TestGeneratedTableIsUpToDate(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fhir.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := generate(src, "fhir")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "elements_gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("fhir/elements_gen.go is stale: run go generate ./fhir")
	}
}

// TestGenerateRejectsUnknownShapes feeds the generator schemas it must refuse rather than misread.
func TestGenerateRejectsUnknownShapes(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"no primitives":     `{"definitions":{"X":{"properties":{"id":{"$ref":"#/definitions/string"}}}}}`,
		"property w/o type": `{"definitions":{` + prims + `,"X":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}},"a":{"description":"?"}}}}}`,
		"twin w/o element":  `{"definitions":{` + prims + `,"X":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}},"_a":{"$ref":"#/definitions/Element"}}}}}`,
		"code with comma":   `{"definitions":{` + prims + `,"X":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}},"a":{"enum":["x,y"]}}}}}`,
		"not JSON":          `{`,
	}
	for name, src := range bad {
		if _, err := generate([]byte(src), "fhir"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := `{"definitions":{` + prims + `,"X":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}},"a":{"enum":["x","y"]},"_a":{"$ref":"#/definitions/Element"}}}}}`
	out, err := generate([]byte(ok), "fhir")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"X.a": {"code", "x,y", elemPrimitive | elemTwin},`)) {
		t.Errorf("unexpected output:\n%s", out)
	}
}

const prims = `"string":{"type":"string"},"code":{"type":"string"},"id":{"type":"string"},"uri":{"type":"string"},` +
	`"boolean":{"type":"boolean"},"decimal":{"type":"number"},"dateTime":{"type":"string"},"xhtml":{},"base64Binary":{"type":"string"},` +
	`"Element":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}}}},` +
	`"Extension":{"properties":{"id":{"$ref":"#/definitions/string"},"extension":{"type":"array","items":{"$ref":"#/definitions/Extension"}},"url":{"$ref":"#/definitions/uri"}}}`

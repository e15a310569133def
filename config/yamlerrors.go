package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The YAML decoder names a value of the wrong type, or a key the file format does not have, by its line
// only ("line 2: cannot unmarshal !!str `lots` into int", "line 3: field bogus not found in type
// config.fileService"). namedYAMLErrors gives each such error the place the rest of Parse's errors name
// (services[0].delivery.max_in_flight) and says what the setting takes, keeping the line.

var (
	// typeMismatch is the decoder's "cannot unmarshal": line, tag, the value (cut to 7 characters and "..."
	// when longer than 10; absent for a list or a mapping), the Go type.
	typeMismatch = regexp.MustCompile("^line ([0-9]+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
	// unknownField is the decoder's "field … not found" (KnownFields).
	unknownField = regexp.MustCompile(`^line ([0-9]+): field (.+) not found in type .+$`)
)

// yamlPlace is one key of a directory file and where it sits.
type yamlPlace struct {
	path      string // services[0].delivery.max_in_flight
	keyLine   int
	valueLine int
	value     string // the value, when it is a scalar
	kind      yaml.Kind
}

// namedYAMLErrors rewrites err's type errors when err is a *yaml.TypeError, each naming its place in src;
// any other error, and any message it cannot place, is returned as the decoder gave it.
func namedYAMLErrors(src []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse YAML: %w", err)
	}
	var root yaml.Node
	if yaml.Unmarshal(src, &root) != nil {
		return fmt.Errorf("parse YAML: %w", err)
	}
	var places []yamlPlace
	collectPlaces(&root, "", &places)
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		errs = append(errs, errors.New(placeYAMLError(msg, places)))
	}
	return errors.Join(errs...)
}

// collectPlaces walks n, appending a place for every mapping key under prefix.
func collectPlaces(n *yaml.Node, prefix string, out *[]yamlPlace) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectPlaces(c, prefix, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			collectPlaces(c, prefix+"["+strconv.Itoa(i)+"]", out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			p := yamlPlace{path: path, keyLine: k.Line, valueLine: v.Line, kind: v.Kind}
			if v.Kind == yaml.ScalarNode {
				p.value = v.Value
			}
			*out = append(*out, p)
			collectPlaces(v, path, out)
		}
	}
}

// placeYAMLError is msg with its place and what the setting takes, or msg itself when it names no single
// place in places.
func placeYAMLError(msg string, places []yamlPlace) string {
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p, ok := onePlace(places, func(p yamlPlace) bool {
			return p.keyLine == line && (p.path == m[2] || strings.HasSuffix(p.path, "."+m[2]))
		})
		if !ok {
			return msg
		}
		return fmt.Sprintf("%s: not a setting of the directory file (line %d)", p.path, line)
	}
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	tag, value, into := m[2], m[3], m[4]
	p, ok := onePlace(places, func(p yamlPlace) bool {
		if p.valueLine != line {
			return false
		}
		switch tag {
		case "!!map":
			return p.kind == yaml.MappingNode
		case "!!seq":
			return p.kind == yaml.SequenceNode
		}
		if p.kind != yaml.ScalarNode {
			return false
		}
		if cut, ok := strings.CutSuffix(value, "..."); ok && len(value) == 10 {
			return strings.HasPrefix(p.value, cut)
		}
		return p.value == value
	})
	if !ok {
		return msg
	}
	switch tag {
	case "!!map":
		return fmt.Sprintf("%s: must be %s, not a mapping (line %d)", p.path, expected(into), line)
	case "!!seq":
		return fmt.Sprintf("%s: must be %s, not a list (line %d)", p.path, expected(into), line)
	}
	return fmt.Sprintf("%s: %q must be %s (line %d)", p.path, shownValue(p.value), expected(into), line)
}

// shownValue is v as an error shows it: cut to its first 7 characters when longer than 10, as the decoder
// cuts it, so that a secret written in the wrong place is not copied whole into a log.
func shownValue(v string) string {
	if r := []rune(v); len(r) > 10 {
		return string(r[:7]) + "…"
	}
	return v
}

// onePlace is the one place in places that match accepts; ok is false when none or several do.
func onePlace(places []yamlPlace, match func(yamlPlace) bool) (yamlPlace, bool) {
	var found yamlPlace
	n := 0
	for _, p := range places {
		if match(p) {
			found, n = p, n+1
		}
	}
	return found, n == 1
}

// expected says in words what a Go type the decoder named takes.
func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "*int"), strings.HasPrefix(goType, "uint"):
		return "a whole number"
	case goType == "bool" || goType == "*bool":
		return "true or false"
	case goType == "string" || goType == "*string":
		return "a single value (text)"
	case strings.HasPrefix(goType, "[]") || strings.HasPrefix(goType, "*[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"), strings.HasPrefix(goType, "*struct"),
		strings.HasPrefix(goType, "config."), strings.HasPrefix(goType, "*config."):
		return "a mapping of settings"
	}
	return "of type " + goType
}

package config

//go:generate go run ../../cmd/kestrel-schema -o ../../schema/config.schema.json

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// SchemaID is the $id of the generated JSON Schema.
const SchemaID = "https://kestrel-os.github.io/schema/config.schema.json"

// JSONSchema returns a JSON Schema (draft 2020-12) for config.yaml,
// generated from the Go types, the Keys table (descriptions and phases)
// and the check tags (enums). It is for editors: the validator in this
// package remains the reference (it also checks CIDRs, URLs, modes,
// encodings and cross-field rules that the schema only describes).
func JSONSchema() ([]byte, error) {
	g := &schemaGen{defs: map[string]any{}}
	root := g.object(configType, "")
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = SchemaID
	root["title"] = "Kestrel config.yaml"
	root["$defs"] = g.defs
	b, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode JSON schema: %w", err)
	}
	return append(b, '\n'), nil
}

type schemaGen struct{ defs map[string]any }

func (g *schemaGen) object(t reflect.Type, path string) map[string]any {
	props := map[string]any{}
	var required []string
	for _, f := range fieldsOf(t) {
		p := join(path, f.Name)
		s := g.typeSchema(f.Type, p, f.Check)
		if k := LookupKey(SchemaPath(p)); k != nil {
			desc := k.Doc
			if ph := PhaseOf(p); ph != PhaseNone {
				desc += " [phase: " + ph.String() + "]"
			}
			s["description"] = desc
		}
		props[f.Name] = s
		for _, alias := range f.Aliases {
			a := map[string]any{}
			for k, v := range s {
				a[k] = v
			}
			a["description"] = fmt.Sprintf("legacy spelling of %s", f.Name)
			props[alias] = a
		}
		if f.Required {
			required = append(required, f.Name)
		}
	}
	o := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func (g *schemaGen) typeSchema(t reflect.Type, path, check string) map[string]any {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = true // placeholder against recursion
			g.defs[name] = g.object(t, path)
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.typeSchema(t.Elem(), path+".*", "")}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.typeSchema(t.Elem(), path+"[]", check)}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.String:
		if rest, ok := strings.CutPrefix(check, "enum="); ok {
			return map[string]any{"type": "string", "enum": strings.Split(rest, "|")}
		}
		// Any YAML scalar is accepted as a string (sysctl values, labels).
		return map[string]any{"type": []string{"string", "number", "boolean"}}
	}
	return map[string]any{}
}

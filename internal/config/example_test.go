package config

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const examplePath = "../../config.yaml.example"

// TestExample: config.yaml.example validates, sets every schema key, and
// every key in it carries a comment.
func TestExample(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(examplePath, data)
	if err != nil {
		t.Fatalf("example does not validate:\n%v", err)
	}
	present := map[string]bool{}
	r, err := Merge(d)
	if err != nil {
		t.Fatal(err)
	}
	r.walkAll(r.root, "", func(p string, _ *yaml.Node) { present[SchemaPath(p)] = true })
	for _, p := range SchemaPaths() {
		if !present[p] {
			t.Errorf("config.yaml.example does not show %s", p)
		}
	}

	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatal(err)
	}
	var check func(n *yaml.Node, path string, commented bool)
	check = func(n *yaml.Node, path string, commented bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			check(n.Content[0], path, true)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				c := k.HeadComment != "" || k.LineComment != "" || v.LineComment != "" || (i == 0 && commented)
				// Keys of free-form maps (sysctl names, labels, interface
				// names) are examples, not schema keys.
				if !c && LookupKey(SchemaPath(p)) != nil {
					t.Errorf("%s:%d: key %s has no comment", examplePath, k.Line, p)
				}
				check(v, p, false)
			}
		case yaml.SequenceNode:
			for i, it := range n.Content {
				check(it, path+"["+string(rune('0'+i))+"]", it.HeadComment != "")
			}
		}
	}
	check(&n, "", false)
}

// TestJSONSchemaUpToDate: schema/config.schema.json is what the generator
// writes now (run `go generate ./internal/config` after changing the schema),
// and it names every key.
func TestJSONSchemaUpToDate(t *testing.T) {
	want, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../schema/config.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schema/config.schema.json is stale: run go generate ./internal/config")
	}
	var v map[string]any
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatal(err)
	}
	for _, p := range SchemaPaths() {
		last := p[strings.LastIndexAny(p, ".]")+1:]
		if !bytes.Contains(got, []byte(`"`+last+`"`)) {
			t.Errorf("schema lacks %s", p)
		}
	}
}

// TestJSONSchemaAcceptsExamples checks the generated schema with an
// independent validator (Python's jsonschema, skipped when missing): the
// example and the k3OS document pass, a misspelt key fails.
func TestJSONSchemaAcceptsExamples(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if exec.Command(py, "-c", "import jsonschema, yaml").Run() != nil {
		t.Skip("python3 jsonschema or yaml module missing")
	}
	const script = `
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2])) or {}
jsonschema.Draft202012Validator(schema).validate(doc)
`
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("kestrel:\n  modles: [x]\n"), 0o644)
	for file, ok := range map[string]bool{examplePath: true, "testdata/k3os.yaml": true, bad: false} {
		out, err := exec.Command(py, "-c", script, "../../schema/config.schema.json", file).CombinedOutput()
		if (err == nil) != ok {
			t.Errorf("%s: valid=%v, want %v\n%s", file, err == nil, ok, out)
		}
	}
}

package config

import (
	"bytes"
	"encoding/json"
	"os"
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
// writes now (run `go generate ./pkg/config` after changing the schema),
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
		t.Fatal("schema/config.schema.json is stale: run go generate ./pkg/config")
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

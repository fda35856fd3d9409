package config

import (
	"slices"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzTranslate: whatever the config says, Translate does not panic, and
// what it accepts comes out as YAML that reads back to the same server,
// token and labels (no injection through values).
func FuzzTranslate(f *testing.F) {
	f.Add("", "https://s:6443", "tok", "zone", "a", "k=v:NoSchedule", "HTTP_PROXY", "http://p", "--x", "v1.0.0")
	f.Add("agent", "https://s:6443", "tok\nnode-label: evil", "k", "v", "t:NoExecute", "A", "b", "", "v1+x")
	f.Fuzz(func(t *testing.T, role, server, token, lk, lv, taint, ek, ev, arg, version string) {
		in := Input{Role: role, ServerURL: server, Token: token, Version: version, Slot: "b",
			Labels: map[string]string{lk: lv}, Taints: []string{taint},
			Environment: map[string]string{ek: ev}, ExtraArgs: []string{arg}}
		out, err := Translate(in)
		if err != nil {
			return
		}
		var back configFile
		if err := yaml.Unmarshal(out.ConfigYAML, &back); err != nil {
			t.Fatalf("config.yaml does not parse: %v\n%s", err, out.ConfigYAML)
		}
		if back.Server != server || back.Token != token {
			t.Fatalf("server/token changed: %q %q\n%s", back.Server, back.Token, out.ConfigYAML)
		}
		if !slices.Contains(back.NodeLabel, lk+"="+lv) || !slices.Contains(back.NodeLabel, LabelSlot+"=b") || len(back.NodeLabel) != 3 {
			t.Fatalf("labels %q\n%s", back.NodeLabel, out.ConfigYAML)
		}
		if out.Argv[0] != "k3s" || out.Argv[1] != out.Role || out.Argv[len(out.Argv)-1] != arg {
			t.Fatalf("argv %q", out.Argv)
		}
	})
}

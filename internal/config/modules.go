package config

import (
	"errors"
	"fmt"
	"strings"
)

// Module is one entry of the modules: list (k3OS `modules:`), parsed: a
// module name optionally followed by parameters, as in
// "nf_conntrack hashsize=65536". The config validates entries with
// ParseModule; the node loads them (internal/node/provision/modprobe).
type Module struct {
	Name   string
	Params string // space-separated key=value, as insmod takes them
}

// ParseModule splits "name key=value ..." and checks its shape: a name
// without '/' or '=', and parameters with a key.
func ParseModule(entry string) (Module, error) {
	fields := strings.Fields(entry)
	if len(fields) == 0 {
		return Module{}, errors.New("empty module entry")
	}
	name := fields[0]
	if strings.ContainsAny(name, "/=") {
		return Module{}, fmt.Errorf("module %q: name must not contain '/' or '='", name)
	}
	for _, p := range fields[1:] {
		if k, _, _ := strings.Cut(p, "="); k == "" {
			return Module{}, fmt.Errorf("module %s: parameter %q: want key=value", name, p)
		}
	}
	return Module{Name: name, Params: strings.Join(fields[1:], " ")}, nil
}

package config

import (
	"reflect"
	"strings"
)

// Changed lists the keys with their own phase (see Keys) whose merged
// value differs between two configs. The phase runner merges again once
// the network sources have been read and uses this to apply the
// boot-phase keys that a network source changed (hostname or keys from
// cloud metadata, say) late, instead of waiting for the next boot.
func Changed(before, after *Config) []Key {
	var out []Key
	for _, k := range Keys {
		if k.Phase == PhaseNone {
			continue
		}
		if !reflect.DeepEqual(valueAt(before, k.Path), valueAt(after, k.Path)) {
			out = append(out, k)
		}
	}
	return out
}

// valueAt returns the value at a schema path made of struct fields only.
func valueAt(c *Config, path string) any {
	v := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(path, ".") {
		f, ok := lookupField(v.Type(), name)
		if !ok {
			return nil
		}
		v = v.Field(f.Index)
	}
	if v.Kind() == reflect.Slice && v.Len() == 0 || v.Kind() == reflect.Map && v.Len() == 0 {
		return nil // empty and unset are the same to an applier
	}
	return v.Interface()
}

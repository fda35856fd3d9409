package stage2

import (
	"slices"
	"testing"
)

func TestDHCPSet(t *testing.T) {
	tests := []struct {
		set   DHCPSet
		every bool
		ifs   []string
		str   string
	}{
		{DHCPSet{}, true, nil, "every wired interface"},
		{DHCPEveryWired(), true, nil, "every wired interface"},
		{DHCPOn(nil), false, nil, "none"},
		{DHCPOn([]string{}), false, nil, "none"},
		{DHCPOn([]string{"eth1", "bond0"}), false, []string{"eth1", "bond0"}, "eth1 bond0"},
	}
	for _, tt := range tests {
		if tt.set.EveryWired() != tt.every || !slices.Equal(tt.set.Interfaces(), tt.ifs) || tt.set.String() != tt.str {
			t.Errorf("%#v: every wired %v, interfaces %v, %q", tt.set, tt.set.EveryWired(), tt.set.Interfaces(), tt.set.String())
		}
	}
}

package config

import (
	"strings"
	"testing"
)

func TestParseModule(t *testing.T) {
	tests := []struct {
		in      string
		want    Module
		wantErr string
	}{
		{"br_netfilter", Module{Name: "br_netfilter"}, ""},
		{"  nf_conntrack   hashsize=65536  expect_hashsize=10 ", Module{"nf_conntrack", "hashsize=65536 expect_hashsize=10"}, ""},
		{"wireguard flag", Module{"wireguard", "flag"}, ""},
		{"", Module{}, "empty"},
		{"../evil", Module{}, "must not contain"},
		{"mod =x", Module{}, `parameter "=x"`},
	}
	for _, tt := range tests {
		got, err := ParseModule(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseModule(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseModule(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

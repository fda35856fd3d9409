package main

import (
	"io"
	"strings"
	"testing"
)

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		args []string
		want string
	}{
		{"unknown command", "frobnicate", nil, "usage"},
		{"missing definition", "image", []string{"-def", "/nonexistent.yaml"}, "image definition"},
		{"missing versions", "image", []string{"-def", "../../images/amd64.yaml", "-versions", "/nonexistent.yaml"}, "versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.cmd, tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSourceDateEpoch(t *testing.T) {
	for _, tt := range []struct {
		env     string
		want    int64
		wantErr bool
	}{{"", 0, false}, {"1700000000", 1700000000, false}, {"yesterday", 0, true}} {
		t.Setenv("SOURCE_DATE_EPOCH", tt.env)
		got, err := sourceDateEpoch()
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %d, %v", tt.env, got, err)
		}
	}
}

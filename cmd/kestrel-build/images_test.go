package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
)

func TestImageCommandErrors(t *testing.T) {
	empty, keys := t.TempDir(), t.TempDir()
	if err := run("keygen", []string{"-out", keys}, io.Discard); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cmd  string
		args []string
		want string
	}{
		{"upgrade image before any build", "upgrade-image", []string{"-out", empty, "-version", "1.0"}, "no build of version 1.0"},
		{"upgrade image of a missing target", "upgrade-image", []string{"-out", empty, "-version", "1.0", "-targets", "rpi4"}, "for rpi4"},
		{"upgrade image without a versions file", "upgrade-image", []string{"-out", empty, "-versions", "/nonexistent.yaml"}, "versions"},
		{"keygen without a directory", "keygen", nil, "-out DIR is required"},
		{"keygen over an existing key", "keygen", []string{"-out", keys}, "release.key: file exists"},
		{"bundle without a key", "bundle", []string{"-out", empty, "-version", "1.0"}, "-key FILE is required"},
		{"bundle before any build", "bundle", []string{"-out", empty, "-version", "1.0", "-key", filepath.Join(keys, "release.key")}, "run kestrel-build image first"},
		{"image with a missing trusted key", "image", []string{"-def", "../../images/amd64.yaml", "-versions", "../../versions.yaml", "-out", empty, "-trusted-keys", "/nonexistent.pub"}, "trusted release key: open /nonexistent.pub"},
		{"image with a private key as trusted key", "image", []string{"-def", "../../images/amd64.yaml", "-versions", "../../versions.yaml", "-out", empty, "-trusted-keys", filepath.Join(keys, "release.key")}, `PEM "PRIVATE KEY", want "PUBLIC KEY"`},
		{"controller image without arches", "controller-image", []string{"-out", empty, "-version", "1.0", "-arches", ""}, "no arches"},
		{"controller image of an unknown package", "controller-image", []string{"-out", empty, "-version", "1.0", "-arches", "amd64", "-controller", "./nonexistent", "-cache", t.TempDir()}, "go build ./nonexistent"},
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

func TestSplitList(t *testing.T) {
	for in, want := range map[string]string{"": "", "amd64": "amd64", " amd64, arm64 ,,arm": "amd64|arm64|arm"} {
		if got := strings.Join(splitList(in), "|"); got != want {
			t.Errorf("splitList(%q) = %q, want %q", in, got, want)
		}
	}
}

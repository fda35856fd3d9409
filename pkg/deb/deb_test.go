package deb

import (
	"os"
	"path/filepath"
	"testing"
)

// realDeb returns a .deb from the builder's cache, or skips.
func realDeb(t *testing.T, glob string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join("..", "..", ".cache", "debs", glob))
	if len(m) == 0 {
		t.Skipf("no %s in .cache/debs: run kestrel-build once to fetch the pinned packages", glob)
	}
	return m[0]
}

func TestUnpackReal(t *testing.T) {
	tests := []struct {
		glob string
		want []string
	}{
		{"busybox-static_*_amd64.deb", []string{"bin/busybox"}},
		{"systemd-boot-efi_*_amd64.deb", []string{"usr/lib/systemd/boot/efi/systemd-bootx64.efi"}},
	}
	for _, tt := range tests {
		t.Run(tt.glob, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "root")
			if _, err := Unpack(realDeb(t, tt.glob), dest); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if _, err := os.Stat(filepath.Join(dest, w)); err != nil {
					t.Errorf("after unpack: %v", err)
				}
			}
			// A second unpack of the same .deb is a no-op: the stamp matches.
			marker := filepath.Join(dest, "marker")
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Unpack(realDeb(t, tt.glob), dest); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("second unpack replaced the tree: %v", err)
			}
		})
	}
}

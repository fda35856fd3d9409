package timezone

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zoneRoot copies a few zones of the host's tzdata into a temporary root.
func zoneRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, z := range []string{"UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"} {
		data, err := os.ReadFile(filepath.Join("/usr/share/zoneinfo", z))
		if err != nil {
			t.Skipf("host tzdata: %v", err)
		}
		p := filepath.Join(root, ZoneinfoDir, z)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, data, 0o644)
	}
	os.WriteFile(filepath.Join(root, ZoneinfoDir, "zone.tab"), []byte("# not a zone\n"), 0o644)
	return root
}

func TestSet(t *testing.T) {
	root := zoneRoot(t)
	for _, z := range []string{"UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"} {
		if err := Set(root, z); err != nil {
			t.Fatal(err)
		}
		target, err := os.Readlink(filepath.Join(root, LocaltimeLink))
		if err != nil || target != "/usr/share/zoneinfo/"+z {
			t.Errorf("%s: link %q %v", z, target, err)
		}
		name, _ := os.ReadFile(filepath.Join(root, TimezoneFile))
		if string(name) != z+"\n" {
			t.Errorf("%s: /etc/timezone %q", z, name)
		}
	}
}

func TestSetErrors(t *testing.T) {
	root := zoneRoot(t)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(root, LocaltimeLink))
	for name, want := range map[string]string{
		"":                           "empty",
		"Mars/Olympus":               "unknown zone",
		"../../etc/passwd":           "not a zone name",
		"/etc/passwd":                "not a zone name",
		"CET-1CEST,M3.5.0,M10.5.0/3": "not a zone name",
		"zone.tab":                   "not a TZif file",
	} {
		err := Set(root, name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set(%q) = %v, want %q", name, err, want)
		}
	}
	if target, _ := os.Readlink(filepath.Join(root, LocaltimeLink)); target != "/usr/share/zoneinfo/UTC" {
		t.Errorf("a refused zone changed /etc/localtime to %q", target)
	}
}

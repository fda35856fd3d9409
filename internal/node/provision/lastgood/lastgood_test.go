package lastgood

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kestrel-os/kestrel/internal/config"
)

// TestLastGood walks one file through its life: written good, saved,
// broken (its copy stands in), fixed, deleted (its copy goes).
func TestLastGood(t *testing.T) {
	dir := t.TempDir()
	loc := config.Locations{
		Defaults:       filepath.Join(dir, "defaults.yaml"),
		ESPConfig:      filepath.Join(dir, "esp/config.yaml"),
		StateConfig:    filepath.Join(dir, "state/config.yaml"),
		StateConfigDir: filepath.Join(dir, "state/config.d"),
	}
	st := Store{Dir: filepath.Join(dir, "state/last-good")}
	write := func(p, data string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dropin := filepath.Join(loc.StateConfigDir, "10-x.yaml")
	for _, step := range []struct {
		name     string
		edit     func()
		hostname string
		timezone string
		replaced []string
		errors   int
		copies   []string
	}{
		{"first boot, all good",
			func() {
				write(loc.Defaults, "kestrel: {timezone: UTC}\n")
				write(loc.StateConfig, "hostname: good\n")
				write(dropin, "kestrel: {timezone: Europe/Paris}\n")
			},
			"good", "Europe/Paris", nil, 0, []string{"config.d-10-x.yaml", "state-config.yaml"}},
		{"both broken: copies stand in, problems still reported",
			func() {
				write(loc.StateConfig, "hostname: bad\nkestrel: [\n")
				write(dropin, "kestrel: {timezone: [Asia/Tokyo]}\n")
			},
			"good", "Europe/Paris", []string{loc.StateConfig, dropin}, 2, []string{"config.d-10-x.yaml", "state-config.yaml"}},
		{"fixed with new values",
			func() { write(loc.StateConfig, "hostname: fixed\n") },
			"fixed", "Europe/Paris", []string{dropin}, 1, []string{"config.d-10-x.yaml", "state-config.yaml"}},
		{"drop-in deleted: its copy goes",
			func() { os.Remove(dropin) },
			"fixed", "UTC", nil, 0, []string{"state-config.yaml"}},
		{"broken file without a copy is skipped",
			func() { write(loc.ESPConfig, "hostname: [esp\n") },
			"fixed", "UTC", nil, 1, []string{"state-config.yaml"}},
	} {
		step.edit()
		l := st.Load(loc)
		r, err := l.Sources.Merge()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if r.Config.Hostname != step.hostname || r.Config.Kestrel.Timezone != step.timezone {
			t.Errorf("%s: hostname %q timezone %q, want %q %q", step.name, r.Config.Hostname, r.Config.Kestrel.Timezone, step.hostname, step.timezone)
		}
		if !reflect.DeepEqual(l.Replaced, step.replaced) {
			t.Errorf("%s: replaced %v, want %v", step.name, l.Replaced, step.replaced)
		}
		if len(r.Errors) != step.errors {
			t.Errorf("%s: errors %v, want %d", step.name, r.Errors, step.errors)
		}
		for _, f := range l.Replaced {
			if o, ok := r.Origin("hostname"); ok && f == loc.StateConfig && !strings.HasSuffix(o.File, Suffix) {
				t.Errorf("%s: hostname from %s, want the copy", step.name, o)
			}
		}
		if err := st.Save(l); err != nil {
			t.Fatalf("%s: save: %v", step.name, err)
		}
		var copies []string
		ents, _ := os.ReadDir(st.Dir)
		for _, e := range ents {
			copies = append(copies, e.Name())
			if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s mode %v", step.name, e.Name(), fi.Mode())
			}
		}
		if !reflect.DeepEqual(copies, step.copies) {
			t.Errorf("%s: copies %v, want %v", step.name, copies, step.copies)
		}
	}
	if fi, err := os.Stat(st.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir: %v, %v", fi, err)
	}
}

// TestNoStore is config.LoadLocal's behaviour.
func TestNoStore(t *testing.T) {
	dir := t.TempDir()
	loc := config.Locations{StateConfig: filepath.Join(dir, "config.yaml")}
	os.WriteFile(loc.StateConfig, []byte("hostname: [x\n"), 0o644)
	l := Store{}.Load(loc)
	if len(l.Sources.Documents()) != 0 || len(l.Sources.Errors()) != 1 || l.Replaced != nil {
		t.Errorf("docs %d errors %v replaced %v", len(l.Sources.Documents()), l.Sources.Errors(), l.Replaced)
	}
	if err := (Store{}).Save(l); err != nil {
		t.Error(err)
	}
}

// TestAbsenceNotKnown: a file whose absence is not known keeps its copy.
// The ESP is a real mount (tmpfs standing in for the FAT partition): while
// it is not mounted, its config's copy is kept and merged in its place;
// once it is mounted again without the file, the copy goes. A config.d
// that cannot be listed keeps its drop-ins' copies.
func TestAbsenceNotKnown(t *testing.T) {
	dir := t.TempDir()
	loc := config.Locations{
		ESPConfig:      filepath.Join(dir, "boot/efi/config.yaml"),
		StateConfigDir: filepath.Join(dir, "state/config.d"),
	}
	espDir := filepath.Dir(loc.ESPConfig)
	os.MkdirAll(espDir, 0o755)
	os.MkdirAll(loc.StateConfigDir, 0o755)
	if err := syscall.Mount("tmpfs", espDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("needs to mount a tmpfs (root): %v", err)
	}
	mounted := true
	defer func() {
		if mounted {
			syscall.Unmount(espDir, 0)
		}
	}()
	st := Store{Dir: filepath.Join(dir, "state/last-good")}
	os.WriteFile(loc.ESPConfig, []byte("hostname: from-esp\n"), 0o644)
	os.WriteFile(filepath.Join(loc.StateConfigDir, "10-x.yaml"), []byte("kestrel: {timezone: UTC}\n"), 0o644)

	for _, step := range []struct {
		name     string
		edit     func()
		hostname string
		copies   []string
	}{
		{"ESP mounted, all good", func() {}, "from-esp", []string{"config.d-10-x.yaml", "esp-config.yaml"}},
		{"ESP failed to mount: its copy stands in and stays", func() {
			if err := syscall.Unmount(espDir, 0); err != nil {
				t.Fatal(err)
			}
			mounted = false
		}, "from-esp", []string{"config.d-10-x.yaml", "esp-config.yaml"}},
		{"config.d unreadable: its copies stay", func() {
			os.RemoveAll(loc.StateConfigDir)
			os.WriteFile(loc.StateConfigDir, []byte("not a directory"), 0o644)
		}, "from-esp", []string{"config.d-10-x.yaml", "esp-config.yaml"}},
		{"ESP mounted, config.yaml deleted: its copy goes", func() {
			if err := syscall.Mount("tmpfs", espDir, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			mounted = true
		}, "", []string{"config.d-10-x.yaml"}},
	} {
		step.edit()
		l := st.Load(loc)
		r, err := l.Sources.Merge()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if r.Config.Hostname != step.hostname {
			t.Errorf("%s: hostname %q, want %q", step.name, r.Config.Hostname, step.hostname)
		}
		if err := st.Save(l); err != nil {
			t.Fatalf("%s: save: %v", step.name, err)
		}
		var copies []string
		ents, _ := os.ReadDir(st.Dir)
		for _, e := range ents {
			copies = append(copies, e.Name())
		}
		if !reflect.DeepEqual(copies, step.copies) {
			t.Errorf("%s: copies %v, want %v", step.name, copies, step.copies)
		}
	}
}

package coldplug

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "modules")
	os.WriteFile(p, []byte("# stage-1 set\nvirtio_pci\nvirtio_blk  # disk\n\nsquashfs ext4\n"), 0o644)
	got, err := ReadList(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"virtio_pci", "virtio_blk", "squashfs", "ext4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ReadList = %v, want %v", got, want)
	}
}

func TestLoadReportsMissingAndBuiltin(t *testing.T) {
	root := t.TempDir()
	kdir := filepath.Join(root, "lib", "modules", "6.1.0-test")
	os.MkdirAll(kdir, 0o755)
	os.WriteFile(filepath.Join(kdir, "modules.dep"), []byte(""), 0o644)
	os.MkdirAll(filepath.Join(root, "usr", "lib", "kestrel"), 0o755)
	os.WriteFile(filepath.Join(root, "usr", "lib", "kestrel", "modules"), []byte("virtio-blk\nnot_there\n"), 0o644)
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "module", "virtio_blk"), 0o755) // built in

	var logged []string
	n, err := Load("/usr/lib/kestrel/modules", Options{Root: root, KVer: "6.1.0-test", SysRoot: sys,
		Logf: func(f string, a ...any) { logged = append(logged, f) }})
	if n != 1 {
		t.Errorf("loaded %d, want 1 (the built-in one)", n)
	}
	if err == nil || !strings.Contains(err.Error(), "not_there") {
		t.Errorf("err = %v, want it to name not_there", err)
	}
	if len(logged) != 1 {
		t.Errorf("logged %d lines", len(logged))
	}
}

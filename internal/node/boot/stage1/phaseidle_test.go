package stage1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPhaseIdle: the phase is skipped only when every source is readable
// and none can set init_cmd, modules or sysctl, and no disk other than the
// boot disk could be a NoCloud datasource.
func TestPhaseIdle(t *testing.T) {
	boot := []blockdev.Device{
		{Name: "dm-0", Size: 20 << 20},
		{Name: "loop0", Size: 1 << 20},
		{Name: "sr0"}, // a CD drive without a disc
		{Name: "vda", Size: 3 << 30},
		{Name: "vda1", Disk: "vda", PartNum: 1, PartName: layout.PartESP, Size: 256 << 20},
		{Name: "vda4", Disk: "vda", PartNum: 4, PartName: layout.PartState, Size: 2 << 30},
	}
	state := filepath.Join(layout.StateMount)
	plain := map[string]string{
		layout.ConfigDefaults: "kestrel:\n  timezone: UTC\n",
		"proc/cmdline":        `initrd=\kestrel\a\initrd kestrel.slot=a console=ttyS0 quiet` + "\n",
		filepath.Join(state, layout.StateConfigFile): "hostname: edge-1\nrun_cmd: [\"echo hi\"]\n",
		"esp/config.yaml": "ssh_authorized_keys: [\"ssh-ed25519 AAAA op\"]\n",
	}
	for _, tc := range []struct {
		name  string
		files map[string]string // added to (or, when "", removed from) plain
		devs  []blockdev.Device // added to boot
		noESP bool
		idle  bool
		why   string
	}{
		{name: "nothing for the phase", idle: true, why: "no config source"},
		{name: "no config at all", files: map[string]string{layout.ConfigDefaults: "", "proc/cmdline": "", filepath.Join(state, layout.StateConfigFile): "", "esp/config.yaml": ""}, idle: true},
		{name: "init_cmd on the ESP", files: map[string]string{"esp/config.yaml": "init_cmd:\n  - echo early\n"}, why: "config.yaml has \"init_cmd\""},
		{name: "ESP not mounted: its file is no source", files: map[string]string{"esp/config.yaml": "init_cmd: [x]\n"}, noESP: true, idle: true},
		{name: "k3OS sysctls in config.d", files: map[string]string{filepath.Join(state, layout.StateConfigDir, "10-net.yaml"): "k3os:\n  sysctls:\n    vm.swappiness: 10\n"}, why: "10-net.yaml has \"sysctl\""},
		{name: "modules in a last-good copy", files: map[string]string{filepath.Join(state, layout.StateLastGoodDir, "config.yaml"): "kestrel: {modules: [8021q]}\n"}, why: "has \"modules\""},
		{name: "modules on the command line", files: map[string]string{"proc/cmdline": "kestrel.slot=a kestrel.modules=8021q\n"}, why: "cmdline has \"modules\""},
		{name: "an escaped key", files: map[string]string{filepath.Join(state, layout.StateConfigFile): "\"init\\x5fcmd\": [x]\n"}, why: `has "\\"`},
		{name: "a file that cannot be read", files: map[string]string{filepath.Join(state, layout.StateConfigDir, "dir.yaml", "x"): "hostname: a\n"}, why: "cannot read"},
		{name: "a file too large to read", files: map[string]string{filepath.Join(state, layout.StateConfigDir, "big.yaml"): "#" + strings.Repeat("x", maxPhaseFile)}, why: "larger than"},
		{name: "a second disk", devs: []blockdev.Device{{Name: "vdb", Size: 1 << 20}}, why: "block device vdb"},
		{name: "a USB stick's partition", devs: []blockdev.Device{{Name: "sda1", Disk: "sda", PartNum: 1, Size: 1 << 30}}, why: "block device sda1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{}
			for k, v := range plain {
				files[k] = v
			}
			for k, v := range tc.files {
				files[k] = v
			}
			for p, c := range files {
				if c != "" {
					writeFile(t, filepath.Join(root, "newroot", p), c)
				}
			}
			in := PhaseInput{NewRoot: filepath.Join(root, "newroot"), ESP: filepath.Join(root, "newroot", "esp"), BootDisk: "vda", Devices: append(append([]blockdev.Device(nil), boot...), tc.devs...)}
			if tc.noESP {
				in.ESP = ""
			}
			idle, why := PhaseIdle(in)
			if idle != tc.idle || !strings.Contains(why, tc.why) {
				t.Errorf("PhaseIdle = %v, %q; want %v, %q", idle, why, tc.idle, tc.why)
			}
		})
	}
}

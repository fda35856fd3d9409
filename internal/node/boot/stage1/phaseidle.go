package stage1

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
)

// PhaseInput is what PhaseIdle looks at.
type PhaseInput struct {
	NewRoot  string            // the assembled root: image defaults, state partition, proc/cmdline
	ESP      string            // where the ESP is mounted ("" when it is not)
	BootDisk string            // kernel name of the disk that holds the slots ("vda")
	Devices  []blockdev.Device // every block device now (blockdev.List)
}

// maxPhaseFile bounds what PhaseIdle reads of one config file; a larger
// file counts as one that may have work.
const maxPhaseFile = 1 << 20

// PhaseIdle reports whether the config's initramfs phase would find
// nothing to do on this boot, with the reason, for a debug line; runHooks
// then does not run it.
//
// The phase acts on init_cmd, kestrel.modules and kestrel.sysctl (k3OS's
// k3os.modules and k3os.sysctls) and nothing else (phases.ApplyInitramfs).
// Running it to find that out cost 0.14 s of a reboot in qemu under TCG
// when /init was a stage-1-only program that ran the phase by starting
// the rootfs's kestrel binary cold. /init is the kestrel binary now and
// runs the phase in-process; what skipping it still saves is a parse of
// every config source and a NoCloud probe of every disk (not measured
// since). PhaseIdle reads the text instead: a source in which none of the
// words init_cmd, modules and sysctl appears cannot set those keys.
//
// It answers "may have work" whenever it cannot tell, so it never skips a
// phase that had work (it may run one that has none):
//   - a file it cannot read, or larger than maxPhaseFile;
//   - a backslash anywhere in a YAML file: a double-quoted key can spell a
//     word with escapes ("init\x5fcmd"). Not on the command line, where
//     the loader's paths have them (initrd=\kestrel\a\initrd) and keys
//     are plain words;
//   - a block device with a medium outside the boot disk: a NoCloud disk
//     may be one (the phase reads every device's filesystem label; stage 1
//     does not). Loop, RAM and device-mapper devices do not count.
//
// The sources are those of config.DefaultLocations and lastgood (the
// copies it falls back to): the image defaults, the kernel command line,
// the ESP's config.yaml, the state partition's config.yaml, config.d and
// last-good. A missing file is no source, as for the config loader.
func PhaseIdle(in PhaseInput) (bool, string) {
	for _, d := range in.Devices {
		if d.Name == in.BootDisk || d.Disk == in.BootDisk || d.Size == 0 ||
			strings.HasPrefix(d.Name, "loop") || strings.HasPrefix(d.Name, "ram") ||
			strings.HasPrefix(d.Name, "zram") || strings.HasPrefix(d.Name, "dm-") {
			continue
		}
		return false, fmt.Sprintf("block device %s may hold a NoCloud datasource", d.Name)
	}
	state := filepath.Join(in.NewRoot, layout.StateMount)
	if work, why := phaseFile(filepath.Join(in.NewRoot, "proc", "cmdline"), false); work {
		return false, why
	}
	files := []string{filepath.Join(in.NewRoot, layout.ConfigDefaults), filepath.Join(state, layout.StateConfigFile)}
	if in.ESP != "" {
		files = append(files, filepath.Join(in.ESP, layout.ESPUserConfig))
	}
	for _, dir := range []string{layout.StateConfigDir, layout.StateLastGoodDir} {
		ents, err := os.ReadDir(filepath.Join(state, dir))
		if err != nil && !os.IsNotExist(err) {
			return false, fmt.Sprintf("cannot list %s: %v", filepath.Join(state, dir), err)
		}
		for _, e := range ents {
			files = append(files, filepath.Join(state, dir, e.Name()))
		}
	}
	for _, f := range files {
		if work, why := phaseFile(f, true); work {
			return false, why
		}
	}
	return true, "no config source has init_cmd, modules or sysctl"
}

// phaseFile reports whether the file at path may give the initramfs phase
// something to do, and why; yaml: a backslash counts.
func phaseFile(path string, yaml bool) (bool, string) {
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false, ""
	}
	if err != nil {
		return true, fmt.Sprintf("cannot read %s: %v", path, err)
	}
	if st.Size() > maxPhaseFile {
		return true, fmt.Sprintf("%s is larger than %d bytes", path, maxPhaseFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return true, fmt.Sprintf("cannot read %s: %v", path, err)
	}
	for _, w := range []string{"init_cmd", "modules", "sysctl", `\`} {
		if w == `\` && !yaml {
			continue
		}
		if bytes.Contains(b, []byte(w)) {
			return true, fmt.Sprintf("%s has %q", path, w)
		}
	}
	return false, ""
}

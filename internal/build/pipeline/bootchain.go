package pipeline

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/ubootab"
)

// espContents returns what goes on the ESP for the image's boot chain:
// host files and generated contents by ESP path. Both chains put slot a's
// kernel and initramfs under /kestrel/a/; systemd-boot adds the loader,
// loader.conf and slot a's BLS entry; the U-Boot script chain adds
// /boot.scr (compiled with mkimage), the A/B state file with slot a good,
// slot a's entry file, the device trees and the boot firmware.
func (o Options) espContents(in inputs, entry bls.Entry, kernel, initrd, work string) (map[string]string, map[string][]byte, error) {
	img := o.Image
	files := map[string]string{
		bls.KernelPath(entry.Slot): kernel,
		bls.InitrdPath(entry.Slot): initrd,
	}
	data := map[string][]byte{}
	if img.Boot.Chain == imagedef.ChainSystemdBoot {
		files[img.Boot.LoaderPath] = filepath.Join(in.bootRoot, "usr/lib/systemd/boot/efi", img.Boot.Loader)
		data[layout.ESPLoaderConf] = bls.LoaderConf()
		data[entry.FileName()] = entry.Render()
		return files, data, nil
	}

	script, err := ubootab.Script(img.Boot.KernelCommand)
	if err != nil {
		return nil, nil, err
	}
	scr, err := mkimageScript(script, img.Arch, work, o.Time)
	if err != nil {
		return nil, nil, err
	}
	data[layout.ESPBootScript] = scr
	data[layout.ESPABState] = ubootab.State{Order: layout.Slots, Slots: map[string]string{entry.Slot: ubootab.Good}}.Render()
	data[ubootab.EntryPath(entry.Slot)] = ubootab.Entry{Version: entry.Version, Cmdline: entry.Cmdline()}.Render()
	if img.Boot.ConfigTxt != "" {
		data["/config.txt"] = []byte(img.Boot.ConfigTxt)
	}
	dtbDir := filepath.Join(in.kernelRoot, "usr/lib/linux-image-"+in.release)
	for _, pattern := range img.Kernel.DTBs {
		matches, err := filepath.Glob(filepath.Join(dtbDir, pattern))
		if err != nil || len(matches) == 0 {
			return nil, nil, fmt.Errorf("kernel.dtbs %q: no device tree in %s matches", pattern, dtbDir)
		}
		for _, m := range matches {
			rel, _ := filepath.Rel(dtbDir, m)
			files[path.Join("/dtbs", filepath.ToSlash(rel))] = m
			if img.Kernel.DTBsAtRoot {
				files["/"+filepath.Base(m)] = m
			}
		}
	}
	for _, fw := range img.Boot.Firmware {
		root := in.firmwareRoots[fw.Package]
		for dst, src := range fw.Files {
			if err := addFirmware(files, dst, filepath.Join(root, src)); err != nil {
				return nil, nil, fmt.Errorf("boot.firmware %s: %w", fw.Package, err)
			}
		}
	}
	return files, data, nil
}

// addFirmware adds the package file src as ESP path dst, or, for a src
// ending in "/*", every regular file of that directory under dst.
func addFirmware(files map[string]string, dst, src string) error {
	dir, ok := strings.CutSuffix(src, "/*")
	if !ok {
		if _, err := os.Stat(src); err != nil {
			return err
		}
		files[dst] = src
		return nil
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var n int
	for _, de := range des {
		if de.Type().IsRegular() {
			files[path.Join(dst, de.Name())] = filepath.Join(dir, de.Name())
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%s: no files", dir)
	}
	return nil
}

// mkimageArch is mkimage's -A name per GOARCH.
var mkimageArch = map[string]string{"arm64": "arm64", "arm": "arm"}

// mkimageScript compiles a U-Boot script with mkimage (u-boot-tools): the
// legacy image header U-Boot's `source` wants.
func mkimageScript(script []byte, arch, work string, t int64) ([]byte, error) {
	a, ok := mkimageArch[arch]
	if !ok {
		return nil, fmt.Errorf("boot script: no U-Boot arch for %q", arch)
	}
	src, out := filepath.Join(work, "boot.cmd"), filepath.Join(work, "boot.scr")
	if err := os.WriteFile(src, script, 0o644); err != nil {
		return nil, fmt.Errorf("boot script: %w", err)
	}
	cmd := exec.Command("mkimage", "-A", a, "-O", "linux", "-T", "script", "-C", "none", "-n", "kestrel A/B", "-d", src, out)
	// mkimage stamps the header with the time unless SOURCE_DATE_EPOCH
	// says otherwise: the image's fixed time keeps the bytes repeatable.
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", t))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("boot script: mkimage (u-boot-tools): %w\n%s", err, msg)
	}
	return os.ReadFile(out)
}

// xzFile writes src compressed with xz (xz-utils, multithreaded) to dst:
// what Raspberry Pi Imager and Etcher take.
func xzFile(src, dst string) error {
	out, err := os.Create(dst + ".partial")
	if err != nil {
		return fmt.Errorf("xz: %w", err)
	}
	defer os.Remove(dst + ".partial")
	cmd := exec.Command("xz", "-c", "-T0", "-6", src)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("xz %s: %w %s", src, err, stderr.String())
	}
	return os.Rename(dst+".partial", dst)
}

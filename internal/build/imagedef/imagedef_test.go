package imagedef

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const validImage = `name: amd64
arch: amd64
debian_arch: amd64
kernel: {flavour: amd64}
boot:
  chain: systemd-boot
  loader: systemd-bootx64.efi
  loader_path: /EFI/BOOT/BOOTX64.EFI
  console: ttyS0,115200
initramfs:
  modules: [virtio_blk]
rootfs:
  modules: [virtio_net]
partitions: {esp_mib: 256, root_mib: 1024, state_mib: 64}
`

func write(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadImage(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{name: "valid", edit: func(s string) string { return s }},
		{name: "unknown key", edit: func(s string) string { return s + "extra: 1\n" }, wantErr: "field extra not found"},
		{name: "misspelt nested key", edit: func(s string) string {
			return strings.Replace(s, "console:", "consle:", 1)
		}, wantErr: "line 9: field consle not found"},
		{name: "bad arch", edit: func(s string) string { return strings.Replace(s, "arch: amd64", "arch: sparc", 1) }, wantErr: "arch \"sparc\""},
		{name: "ESP too small", edit: func(s string) string { return strings.Replace(s, "esp_mib: 256", "esp_mib: 64", 1) }, wantErr: "partitions.esp_mib 64: want >= 100"},
		{name: "ESP size go-diskfs formats wrongly", edit: func(s string) string { return strings.Replace(s, "esp_mib: 256", "esp_mib: 505", 1) }, wantErr: "img.yaml: partitions.esp_mib: 505 MiB"},
		{name: "ESP size go-diskfs formats wrongly, nearest good sizes named", edit: func(s string) string { return strings.Replace(s, "esp_mib: 256", "esp_mib: 259", 1) }, wantErr: "use 258 or 260"},
		{name: "unknown boot chain", edit: func(s string) string { return strings.Replace(s, "chain: systemd-boot", "chain: u-boot", 1) }, wantErr: `boot.chain "u-boot": want systemd-boot or uboot-script`},
		{name: "uboot-script with systemd-boot's loader", edit: func(s string) string {
			return strings.Replace(s, "chain: systemd-boot", "chain: uboot-script\n  kernel_command: booti", 1)
		}, wantErr: "boot.loader, boot.loader_path: only for systemd-boot"},
		{name: "uboot-script without a kernel command", edit: func(s string) string {
			return noLoader(strings.Replace(s, "chain: systemd-boot", "chain: uboot-script", 1))
		}, wantErr: `boot.kernel_command "": want booti`},
		{name: "uboot-script SD image", edit: func(s string) string {
			return noLoader(strings.Replace(s, "chain: systemd-boot", "chain: uboot-script\n  kernel_command: bootz", 1)) + "board: {sd_image: true}\n"
		}},
		{name: "firmware without files", edit: func(s string) string {
			return noLoader(strings.Replace(s, "chain: systemd-boot", "chain: uboot-script\n  kernel_command: bootz\n  firmware: [{package: u-boot-rpi}]", 1))
		}, wantErr: "boot.firmware[0]: package and files required"},
		{name: "cmdline word with space", edit: func(s string) string {
			return strings.Replace(s, "  console: ttyS0,115200\n", "  console: ttyS0,115200\n  cmdline: [\"a b\"]\n", 1)
		}, wantErr: "not one word"},
		{name: "bad compression", edit: func(s string) string {
			return strings.Replace(s, "initramfs:\n", "initramfs:\n  compression: xz\n", 1)
		}, wantErr: "initramfs.compression"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := LoadImage(write(t, "img.yaml", tt.edit(validImage)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if img.Initramfs.Compression != "lz4" || img.Rootfs.Compression != "xz" {
				t.Errorf("defaults not filled: %+v %+v", img.Initramfs, img.Rootfs)
			}
		})
	}
}

func TestLoadVersions(t *testing.T) {
	const debian = `debian:
  suite: bookworm
  kernel_abi: 6.1.0-50
  kernel_version: 6.1.176-1
  systemd-boot-efi: 252.39-1~deb12u2
  busybox-static: 1:1.35.0-4+deb12u1+b1
`
	tests := []struct {
		name, data, wantErr string
	}{
		{name: "other owners' sections are left alone", data: "k3s:\n  version: v1.33.7+k3s1\nkestrel: 0.1.0\n" + debian},
		{name: "no kestrel", data: debian, wantErr: `no "kestrel" section`},
		{name: "unknown key in debian", data: "kestrel: 0.1.0\n" + debian + "  kernel_abbi: x\n", wantErr: "field kernel_abbi not found"},
		{name: "fsck.fat with its glibc", data: "kestrel: 0.1.0\n" + debian + "  dosfstools: 4.2-1\n  libc6: 2.36-9+deb12u14\n"},
		{name: "dosfstools without libc6", data: "kestrel: 0.1.0\n" + debian + "  dosfstools: 4.2-1\n", wantErr: "debian.dosfstools and debian.libc6: give both or neither"},
		{name: "libc6 without dosfstools", data: "kestrel: 0.1.0\n" + debian + "  libc6: 2.36-9+deb12u14\n", wantErr: "debian.dosfstools and debian.libc6: give both or neither"},
		{name: "missing pin", data: "kestrel: 0.1.0\n" + strings.Replace(debian, "  kernel_version: 6.1.176-1\n", "", 1), wantErr: "debian.kernel_version: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := LoadVersions(write(t, "versions.yaml", tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			img := Image{Kernel: Kernel{Flavour: "armmp"}}
			if got := v.KernelPackage(img); got != "linux-image-6.1.0-50-armmp" {
				t.Errorf("kernel package %q", got)
			}
			if got := v.KernelRelease(img); got != "6.1.0-50-armmp" {
				t.Errorf("kernel release %q", got)
			}
		})
	}
}

// TestRepositoryFiles loads the real definitions and versions file.
func TestRepositoryFiles(t *testing.T) {
	defs, _ := filepath.Glob("../../../images/*.yaml")
	if len(defs) == 0 {
		t.Fatal("no images/*.yaml")
	}
	for _, d := range defs {
		if _, err := LoadImage(d); err != nil {
			t.Error(err)
		}
	}
	if _, err := LoadVersions("../../../versions.yaml"); err != nil {
		t.Error(err)
	}
}

// noLoader drops systemd-boot's loader lines from a definition.
func noLoader(s string) string {
	return regexp.MustCompile(`(?m)^  loader.*\n`).ReplaceAllString(s, "")
}

package coldplug

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeTree writes a module tree (list, modules.dep, modules.alias) and a
// sysfs with the given device modaliases.
func fakeTree(t *testing.T, list []string, devices map[string]string) (Options, string) {
	t.Helper()
	root, sys := t.TempDir(), t.TempDir()
	kdir := filepath.Join(root, "lib", "modules", "6.1.0-test")
	os.MkdirAll(kdir, 0o755)
	var dep strings.Builder
	for _, m := range []string{"virtio_ring", "virtio", "virtio_net", "virtio_blk", "e1000e", "nf_tables", "efivarfs", "jbd2"} {
		dep.WriteString("kernel/" + m + ".ko:\n")
	}
	dep.WriteString("kernel/drivers/acpi/button.ko:\nkernel/drivers/input/evdev.ko:\n")
	dep.WriteString("kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n")
	dep.WriteString("kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz\n")
	os.WriteFile(filepath.Join(kdir, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(kdir, "modules.alias"), []byte(`# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000002v* virtio_blk
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias acpi*:PNP0C0C:* button
alias acpi*:LNXPWRBN:* button
alias input:b*v*p*e*-e*k*r*a*m*l*s*f*w* evdev
alias fs-ext4 ext4
alias nft-set nf_tables
alias fs-efivarfs efivarfs
`), 0o644)
	os.MkdirAll(filepath.Join(root, "usr", "lib", "kestrel"), 0o755)
	os.WriteFile(filepath.Join(root, "usr", "lib", "kestrel", "modules"), []byte(strings.Join(list, "\n")+"\n"), 0o644)
	for dev, alias := range devices {
		addDevice(t, sys, dev, alias)
	}
	return Options{Root: root, KVer: "6.1.0-test", SysRoot: sys}, sys
}

func addDevice(t *testing.T, sys, dev, alias string) {
	d := filepath.Join(sys, dev)
	os.MkdirAll(d, 0o755)
	if err := os.WriteFile(filepath.Join(d, "modalias"), []byte(alias+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestColdplug(t *testing.T) {
	list := []string{"virtio_ring", "virtio", "virtio_pci", "virtio_net", "virtio_blk", "e1000e", "button", "evdev", "ext4", "nf_tables", "efivarfs"}
	o, sys := fakeTree(t, list, map[string]string{
		"bus/pci/devices/0000:00:02.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"bus/acpi/devices/LNXPWRBN:00": "acpi:LNXPWRBN:",
		"bus/pci/devices/0000:00:1f.0": "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00", // no driver in the list
	})
	var mu sync.Mutex
	var order []string
	o.DryRun = func(name, _ string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, name)
		// Binding a driver makes new devices appear, as in the kernel.
		switch name {
		case "virtio_pci":
			addDevice(t, sys, "bus/virtio/devices/virtio0", "virtio:d00000001v00001AF4")
		case "button":
			addDevice(t, sys, "class/input/input2", "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw")
		}
	}
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	if !l.IsDriver("virtio-net") || l.IsDriver("ext4") || l.IsDriver("virtio_ring") {
		t.Error("IsDriver misclassifies")
	}
	got, err := l.Coldplug(false)
	if err != nil {
		t.Fatal(err)
	}
	// The PCI and ACPI matches, then what they made appear.
	sort.Strings(got)
	if want := []string{"button", "evdev", "virtio_net", "virtio_pci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Coldplug = %v, want %v", got, want)
	}
	if want := []string{"virtio_ring", "virtio", "virtio_blk", "e1000e", "ext4", "nf_tables", "efivarfs"}; !reflect.DeepEqual(l.Pending(), want) {
		t.Errorf("Pending = %v", l.Pending())
	}
	n, err := l.LoadRest()
	if n != 7 || err != nil || len(l.Pending()) != 0 {
		t.Errorf("LoadRest = %d, %v; pending %v", n, err, l.Pending())
	}
	if len(order) != len(list) {
		t.Errorf("loaded %d modules in all: %v", len(order), order)
	}
}

// TestHold: held drivers stay out of Coldplug, even for devices present
// from the start, and load at the next Coldplug after Release.
func TestHold(t *testing.T) {
	list := []string{"virtio_ring", "virtio", "virtio_pci", "virtio_net", "button", "evdev", "nf_tables"}
	o, sys := fakeTree(t, list, map[string]string{
		"bus/pci/devices/0000:00:02.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"bus/acpi/devices/LNXPWRBN:00": "acpi:LNXPWRBN:",
		"class/input/input1":           "input:b0011v0001p0001eAB41-e0,1,4,11,14,k71,ramlsfw",
	})
	var mu sync.Mutex
	var loaded []string
	o.DryRun = func(name, _ string) {
		mu.Lock()
		defer mu.Unlock()
		loaded = append(loaded, name)
		if name == "virtio_pci" {
			addDevice(t, sys, "bus/virtio/devices/virtio0", "virtio:d00000001v00001AF4")
		}
	}
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	l.Hold(InputDriver)
	got, err := l.Coldplug(false)
	sort.Strings(got)
	if want := []string{"virtio_net", "virtio_pci"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("held Coldplug = %v, %v; want %v (no button, no evdev)", got, err, want)
	}
	l.Release()
	got, err = l.Coldplug(false)
	sort.Strings(got)
	if want := []string{"button", "evdev", "virtio_net", "virtio_pci"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Coldplug after Release = %v, %v; want %v", got, err, want)
	}
	if want := []string{"virtio_ring", "virtio", "nf_tables"}; !reflect.DeepEqual(l.Pending(), want) {
		t.Errorf("Pending = %v, want %v", l.Pending(), want)
	}
}

func TestInputDriver(t *testing.T) {
	for path, want := range map[string]bool{
		"kernel/drivers/input/evdev.ko":               true,
		"kernel/drivers/hid/usbhid/usbhid.ko":         true,
		"kernel/drivers/hid/hid-generic.ko.xz":        true,
		"kernel/drivers/acpi/button.ko":               true,
		"kernel/drivers/acpi/button.ko.zst":           true,
		"kernel/drivers/acpi/video.ko":                false,
		"kernel/drivers/net/virtio_net.ko":            false,
		"kernel/drivers/net/usb/r8152.ko":             false,
		"kernel/drivers/watchdog/i6300esb.ko":         false,
		"kernel/drivers/net/ethernet/intel/e1000e.ko": false,
		"": false,
	} {
		if got := InputDriver(path); got != want {
			t.Errorf("InputDriver(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestColdplugAllTakesNonDrivers(t *testing.T) {
	o, _ := fakeTree(t, []string{"virtio_ring", "virtio", "virtio_pci", "virtio_blk", "e1000e", "jbd2", "ext4"}, map[string]string{
		"bus/pci/devices/0000:00:02.0": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
	})
	o.DryRun = func(string, string) {}
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.Coldplug(true)
	sort.Strings(got)
	if want := []string{"ext4", "virtio_pci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Coldplug(true) = %v, want %v (no virtio device yet, no e1000e hardware)", got, want)
	}
}

func TestLoadNow(t *testing.T) {
	o, _ := fakeTree(t, []string{"virtio_ring", "virtio", "virtio_pci", "jbd2", "ext4", "efivarfs"}, map[string]string{
		"bus/pci/devices/0000:00:02.0": "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
	})
	var mu sync.Mutex
	var order []string
	o.DryRun = func(name, params string) { mu.Lock(); order = append(order, name+" "+params); mu.Unlock() }
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	// squashfs is not on the list: skipped. ext4 twice: loaded once,
	// after its dependency, both with async_probe.
	if err := l.LoadNow("squashfs", "ext4", "ext4"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"jbd2 " + AsyncProbe, "ext4 " + AsyncProbe}; !reflect.DeepEqual(order, want) {
		t.Fatalf("LoadNow loaded %q, want %q", order, want)
	}
	got, _ := l.Coldplug(true)
	sort.Strings(got)
	// Coldplug reports everything loaded, and did not load ext4 or jbd2
	// again; the driver it loads gets no parameters.
	if want := []string{"efivarfs", "ext4", "jbd2", "virtio_pci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after LoadNow, Coldplug(true) = %v, want %v", got, want)
	}
	if want := []string{"efivarfs ", "virtio_pci "}; !reflect.DeepEqual(slices.Sorted(slices.Values(order[2:])), want) {
		t.Errorf("Coldplug(true) loaded %q, want %q", order[2:], want)
	}
}

func TestSkip(t *testing.T) {
	o, _ := fakeTree(t, []string{"virtio_ring", "virtio", "virtio_pci", "jbd2", "ext4", "efivarfs", "nf_tables"}, nil)
	var mu sync.Mutex
	var loaded []string
	o.DryRun = func(name, _ string) { mu.Lock(); loaded = append(loaded, name); mu.Unlock() }
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	l.Skip("efivarfs", "nf-tables")
	l.Coldplug(true)
	if n, _ := l.LoadRest(); n != 4 {
		t.Errorf("LoadRest loaded %d modules, want 4", n)
	}
	sort.Strings(loaded)
	if want := []string{"ext4", "jbd2", "virtio", "virtio_pci", "virtio_ring"}; !reflect.DeepEqual(loaded, want) {
		t.Errorf("loaded %v, want %v (efivarfs and nf_tables skipped)", loaded, want)
	}
}

func TestParseUevent(t *testing.T) {
	msg := []byte("add@/devices/pci0000:00/0000:00:02.0/virtio0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:02.0/virtio0\x00SUBSYSTEM=virtio\x00MODALIAS=virtio:d00000001v00001AF4\x00SEQNUM=1234\x00")
	if got := parseUevent(msg); got != "virtio:d00000001v00001AF4" {
		t.Errorf("parseUevent(add) = %q", got)
	}
	rm := []byte("remove@/devices/x\x00ACTION=remove\x00MODALIAS=virtio:d00000001v00001AF4\x00")
	if got := parseUevent(rm); got != "" {
		t.Errorf("parseUevent(remove) = %q", got)
	}
	bind := []byte("bind@/devices/x\x00ACTION=bind\x00DRIVER=virtio_net\x00")
	if got := parseUevent(bind); got != "" {
		t.Errorf("parseUevent(bind) = %q", got)
	}
}

func TestColdplugWithoutAliases(t *testing.T) {
	o, _ := fakeTree(t, []string{"virtio_pci", "e1000e", "ext4"}, nil)
	os.Remove(filepath.Join(o.Root, "lib", "modules", "6.1.0-test", "modules.alias"))
	o.DryRun = func(string, string) {}
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := l.Coldplug(false)
	sort.Strings(got)
	if want := []string{"e1000e", "ext4", "virtio_pci"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Coldplug without modules.alias = %v, want the whole list", got)
	}
}

func TestForCPU(t *testing.T) {
	o, sys := fakeTree(t, []string{"virtio_pci", "sha256_ssse3", "crc32c_intel", "sha256_arm", "ext4"}, nil)
	kdir := filepath.Join(o.Root, "lib", "modules", o.KVer)
	// The aliases Debian's 6.1 modules carry (modinfo): SSSE3, AVX, AVX2
	// for sha256-ssse3, SSE4.2 for crc32c-intel; sha256-arm has none.
	f, err := os.OpenFile(filepath.Join(kdir, "modules.alias"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`alias crypto-sha256 sha256_ssse3
alias cpu:type:x86,ven*fam*mod*:feature:*0089* sha256_ssse3
alias cpu:type:x86,ven*fam*mod*:feature:*009C* sha256_ssse3
alias cpu:type:x86,ven*fam*mod*:feature:*0125* sha256_ssse3
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
alias crypto-sha256 sha256_arm
`)
	f.Close()
	f, err = os.OpenFile(filepath.Join(kdir, "modules.dep"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("kernel/arch/x86/crypto/sha256-ssse3.ko:\nkernel/arch/x86/crypto/crc32c-intel.ko:\nkernel/arch/arm/crypto/sha256-arm.ko:\n")
	f.Close()
	l, err := Open("/usr/lib/kestrel/modules", o)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"sha256_ssse3", "crc32c_intel", "sha256_arm", "virtio_pci", "nf_tables", "sha2_ce"}
	for _, tc := range []struct {
		name, cpu string
		want      []string
	}{
		// qemu64: SSE3, no SSSE3 or SSE4.2.
		{"qemu64", "cpu:type:x86,ven0000fam000Fmod006B:feature:,0000,0001,0002,0003,0004,0005,0006,0007,0008,0009,000B,000C,000D,000E,000F,0010,0011,0013,0017,0018,0019,001A,0080,00B0", []string{"sha256_arm"}},
		// A CPU with SSSE3 and SSE4.2 (and AVX2).
		{"skylake", "cpu:type:x86,ven0000fam0006mod005E:feature:,0000,0001,0080,0089,008C,0094,009C,0125", []string{"sha256_ssse3", "crc32c_intel", "sha256_arm"}},
		// No cpu modalias: only what needs no feature.
		{"none", "", []string{"sha256_arm"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// virtio_pci is a driver for other hardware, nf_tables and
			// sha2_ce are not on the list: never returned.
			if got := l.ForCPU(tc.cpu, names...); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ForCPU = %q, want %q", got, tc.want)
			}
		})
	}

	addDevice(t, sys, "devices/system/cpu", "cpu:type:x86,ven0000fam0006mod005E:feature:,0089")
	if got, want := CPUAlias(sys), "cpu:type:x86,ven0000fam0006mod005E:feature:,0089"; got != want {
		t.Errorf("CPUAlias = %q, want %q", got, want)
	}
	if got := CPUAlias(t.TempDir()); got != "" {
		t.Errorf("CPUAlias without the file = %q, want empty", got)
	}
	// Coldplug does not take the CPU's modules: they are ForCPU's.
	var loaded []string
	o.DryRun = func(name, _ string) { loaded = append(loaded, name) }
	l, _ = Open("/usr/lib/kestrel/modules", o)
	l.Coldplug(false)
	if len(loaded) != 0 {
		t.Errorf("Coldplug(false) with only a CPU modalias loaded %q", loaded)
	}
}

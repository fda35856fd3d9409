// Package vm is the one qemu harness every boot test and benchmark uses: it
// boots a Kestrel disk image (or a bare kernel + initramfs) under software
// emulation, records the serial console, lets a test wait for console
// output, run shell commands on the console shell, and send ACPI power
// events through the qemu monitor.
//
// Machines: x86_64 q35 with OVMF; arm64 virt with AAVMF or U-Boot; armv7
// virt with U-Boot; Raspberry Pi 3B and 2B models booting a kernel
// directly with the disk as SD card.
//
// Limits: one serial console (ttyS0 / ttyAMA0) carried over qemu's stdio;
// commands are run through the shell that Kestrel spawns on the console, so
// the image must have the console shell enabled. Every machine has one CPU
// (-smp 1). The accelerator is Config.Accel, or the ACCEL environment
// variable (`make ACCEL=kvm test`), or tcg: KVM hangs on the machines this
// project is built on, so software emulation is the default.
//
// Written here rather than taken from u-root's old pkg/qemu (gone from
// u-root v0.16; its successor hugelgupf/vmtest pulls in its own initramfs
// tooling) because all we need is a process, a pipe and a line buffer.
package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Arch selects the qemu binary and firmware.
type Arch string

const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64"
	ARM   Arch = "arm" // armv7: -M virt,highmem=off -cpu cortex-a15
)

// Firmware boots a Disk.
type Firmware string

const (
	// UEFI is OVMF (amd64) or AAVMF (arm64): the default of those arches.
	UEFI Firmware = "uefi"
	// UBoot is Debian's u-boot-qemu build for the virt machine (qemu_arm,
	// qemu_arm64), passed as -bios: the default of ARM.
	UBoot Firmware = "uboot"
)

// Raspberry Pi machines (Config.Board). qemu's models boot a kernel
// directly (Kernel, Initrd, Append and DTB given) with the disk as the SD
// card; there is no PCI, so no virtio NIC, watchdog or extra drives.
const (
	Raspi3B = "raspi3b" // arm64
	Raspi2B = "raspi2b" // armv7
)

// Config describes one machine.
type Config struct {
	Arch Arch
	// Disk is the raw image to boot through UEFI firmware. It is used as the
	// backing file of a qcow2 overlay in Dir, so the image itself is never
	// written; reuse the same Dir to boot the same disk again (a "reboot").
	Disk string
	// DiskSize is the virtual size of the overlay (e.g. "3G"); larger than
	// the image to exercise growing the state partition. Empty: image size.
	DiskSize string
	// Kernel and Initrd boot directly (no firmware) when set; without a
	// Board, the Disk is then not attached.
	Kernel, Initrd, Append string
	// Firmware that boots the Disk; "" is the arch's default.
	Firmware Firmware
	// Board is a Raspberry Pi machine (Raspi3B, Raspi2B) instead of the
	// generic one; DTB is then the device tree given to the kernel.
	Board, DTB string
	// CDROM is an ISO attached as a CD (q35's AHCI), USB a raw image
	// attached as a USB stick on an xHCI controller (written to a
	// snapshot, so the file stays as it is). With either, Disk may be ""
	// (no virtio disk) or a blank disk to install to.
	CDROM, USB string
	// ExtraDrives are attached as further virtio disks (e.g. a NoCloud disk).
	ExtraDrives []string
	// HostFwd forwards a loopback TCP port to a guest port ("tcp::2222-:22").
	HostFwd []string
	// ExtraNICs adds this many more virtio NICs (eth1, eth2, ... in the
	// guest), each on its own restricted user-mode network (no host
	// bridge, no way out): for static address, VLAN and bond tests.
	ExtraNICs int
	// Watchdog adds an i6300esb watchdog that resets the machine (so,
	// with -no-reboot, ends qemu) when it fires.
	Watchdog bool
	// Memory in MiB; 0 means 768.
	Memory int
	// CPU is the CPU model under TCG ("max": every feature qemu
	// emulates, SSSE3 to AVX2 on x86_64); "" is the arch's default
	// (qemu64, cortex-a72, cortex-a15). KVM always runs the host's.
	CPU string
	// ICount makes the guest clock count instructions under TCG (qemu's
	// -icount shift=0): each guest instruction takes 1 ns of guest time,
	// as on a CPU that runs 10^9 a second, however fast the host is, how
	// busy it is and how long qemu takes to translate code it has not run
	// before; idle time (waiting for a timer or the disk) passes in real
	// time. Boot times become repeatable to a few milliseconds, and code
	// is charged for the instructions it runs rather than for its first
	// translation. Not a model of a real CPU's speed: no caches, every
	// instruction the same price. TCG only, and not with a Board.
	ICount bool
	// Accel is qemu's accelerator, "tcg" or "kvm"; empty means the ACCEL
	// environment variable, and tcg when that is empty too.
	Accel string
	// Dir holds the overlay disk, firmware variables and console log.
	Dir string
	// Log, when set, receives a copy of the console as it arrives.
	Log io.Writer
}

// VM is a running qemu.
type VM struct {
	cfg     Config
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	monitor string

	mu      sync.Mutex
	console bytes.Buffer
	cursor  int // Expect/Run consume console output from here on
	changed chan struct{}
	done    chan struct{}
	exitErr error
	seq     int
}

// Start boots the machine described by cfg.
func Start(cfg Config) (*VM, error) {
	if cfg.Memory == 0 {
		cfg.Memory = 768
	}
	if cfg.Arch == "" {
		cfg.Arch = AMD64
	}
	if cfg.Accel == "" {
		cfg.Accel = os.Getenv("ACCEL")
	}
	if cfg.Accel == "" {
		cfg.Accel = "tcg"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("vm dir: %w", err)
	}
	args, err := qemuArgs(cfg)
	if err != nil {
		return nil, err
	}
	v := &VM{cfg: cfg, changed: make(chan struct{}, 1), done: make(chan struct{}), monitor: filepath.Join(cfg.Dir, "monitor.sock")}
	args = append(args, "-monitor", "unix:"+v.monitor+",server=on,wait=off")
	v.cmd = exec.Command(qemuBinary(cfg.Arch), args...)
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	v.cmd.Stderr = v.cmd.Stdout
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", v.cmd.Path, err)
	}
	go v.pump(out)
	return v, nil
}

func qemuBinary(a Arch) string {
	switch a {
	case ARM64:
		return "qemu-system-aarch64"
	case ARM:
		return "qemu-system-arm"
	}
	return "qemu-system-x86_64"
}

func qemuArgs(cfg Config) ([]string, error) {
	if cfg.Board != "" {
		return raspiArgs(cfg)
	}
	args := []string{"-smp", "1", "-nodefaults", "-display", "none",
		"-serial", "stdio", "-no-reboot", "-m", strconv.Itoa(cfg.Memory)}
	switch cfg.Accel {
	case "tcg":
		args = append(args, "-accel", "tcg")
		if cfg.CPU != "" {
			args = append(args, "-cpu", cfg.CPU)
		}
		if cfg.ICount {
			args = append(args, "-icount", "shift=0")
		}
	case "kvm":
		if cfg.ICount {
			return nil, fmt.Errorf("instruction counting (Config.ICount) needs TCG, not %s", cfg.Accel)
		}
		// The host's CPU as it is: emulating another model under KVM
		// is not possible on arm64 and slower on x86_64.
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		return nil, fmt.Errorf("accelerator %q (Config.Accel or ACCEL): want tcg or kvm", cfg.Accel)
	}
	switch cfg.Arch {
	case AMD64:
		args = append(args, "-M", "q35")
	case ARM64:
		// cortex-a72: -cpu max is 5x slower under TCG.
		args = append(args, "-M", "virt")
		if cfg.Accel == "tcg" && cfg.CPU == "" {
			args = append(args, "-cpu", "cortex-a72")
		}
	case ARM:
		// highmem=off, or the virtio-pci disk never appears.
		args = append(args, "-M", "virt,highmem=off")
		if cfg.Accel == "tcg" && cfg.CPU == "" {
			args = append(args, "-cpu", "cortex-a15")
		}
	default:
		return nil, fmt.Errorf("unknown arch %q", cfg.Arch)
	}
	netdev := "user,id=net0"
	for _, f := range cfg.HostFwd {
		netdev += ",hostfwd=" + f
	}
	args = append(args, "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0")
	for i := 1; i <= cfg.ExtraNICs; i++ {
		// A subnet of its own, so its DHCP lease cannot shadow eth0's.
		args = append(args, "-netdev", fmt.Sprintf("user,id=net%d,restrict=on,net=10.0.%d.0/24", i, 100+i),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d", i))
	}

	fw := cfg.Firmware
	if fw == "" {
		fw = UEFI
		if cfg.Arch == ARM {
			fw = UBoot
		}
	}
	if cfg.Kernel != "" {
		args = append(args, "-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-append", cfg.Append)
	} else if fw == UBoot {
		bios, err := ubootBIOS(cfg.Arch)
		if err != nil {
			return nil, err
		}
		disk, err := overlay(cfg)
		if err != nil {
			return nil, err
		}
		args = append(args, "-bios", bios, "-drive", "if=virtio,format=qcow2,file="+disk)
	} else {
		code, vars, err := firmware(cfg.Arch)
		if err != nil {
			return nil, err
		}
		// A private copy of the variable store: firmware may write it, and
		// AAVMF crashes on a read-only one.
		varsCopy := filepath.Join(cfg.Dir, "efivars.fd")
		if _, err := os.Stat(varsCopy); err != nil {
			if err := copyFile(vars, varsCopy); err != nil {
				return nil, err
			}
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy)
		if cfg.Disk != "" {
			disk, err := overlay(cfg)
			if err != nil {
				return nil, err
			}
			args = append(args, "-drive", "if=virtio,format=qcow2,file="+disk)
		}
		if cfg.CDROM != "" {
			args = append(args, "-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file="+cfg.CDROM, "-device", "ide-cd,drive=cd0")
		}
		if cfg.USB != "" {
			args = append(args, "-device", "qemu-xhci,id=xhci", "-drive", "if=none,id=usb0,format=raw,snapshot=on,file="+cfg.USB,
				"-device", "usb-storage,bus=xhci.0,drive=usb0")
		}
		if cfg.Arch == ARM64 {
			args = append(args, "-boot", "menu=on,splash-time=0")
		}
	}
	if cfg.Watchdog {
		args = append(args, "-device", "i6300esb", "-action", "watchdog=reset")
	}
	for _, d := range cfg.ExtraDrives {
		args = append(args, "-drive", "if=virtio,format=raw,readonly=on,file="+d)
	}
	return args, nil
}

// raspiArgs is a Raspberry Pi model: fixed CPUs and memory, the disk as
// the SD card, the kernel booted directly.
func raspiArgs(cfg Config) ([]string, error) {
	if cfg.Kernel == "" || cfg.DTB == "" {
		return nil, fmt.Errorf("board %s: qemu boots it only with Kernel and DTB given", cfg.Board)
	}
	if cfg.Watchdog || cfg.ExtraNICs > 0 || len(cfg.ExtraDrives) > 0 || len(cfg.HostFwd) > 0 {
		return nil, fmt.Errorf("board %s: no PCI: no watchdog, extra NICs, drives or forwarded ports", cfg.Board)
	}
	if cfg.ICount {
		return nil, fmt.Errorf("board %s: no instruction counting (Config.ICount) on the Raspberry Pi machines", cfg.Board)
	}
	disk, err := overlay(cfg)
	if err != nil {
		return nil, err
	}
	serial := []string{"-serial", "stdio"}
	if cfg.Board == Raspi3B {
		// The image's console is the mini UART (ttyS1), qemu's second
		// serial port: the PL011 belongs to Bluetooth in the device tree.
		serial = []string{"-serial", "null", "-serial", "stdio"}
	}
	return append(append([]string{"-accel", "tcg", "-M", cfg.Board, "-display", "none"}, serial...), "-no-reboot",
		"-kernel", cfg.Kernel, "-initrd", cfg.Initrd, "-dtb", cfg.DTB, "-append", cfg.Append,
		"-drive", "if=sd,format=qcow2,file="+disk), nil
}

// ubootBIOS is u-boot-qemu's build for the virt machine of arch.
func ubootBIOS(a Arch) (string, error) {
	p := map[Arch]string{ARM64: "/usr/lib/u-boot/qemu_arm64/u-boot.bin", ARM: "/usr/lib/u-boot/qemu_arm/u-boot.bin"}[a]
	if p == "" {
		return "", fmt.Errorf("no U-Boot for arch %s", a)
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("U-Boot for %s: %w (scripts/deps.sh installs u-boot-qemu)", a, err)
	}
	return p, nil
}

func firmware(a Arch) (code, vars string, err error) {
	candidates := map[Arch][2]string{
		AMD64: {"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		ARM64: {"/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"},
	}[a]
	for _, f := range candidates {
		if _, err := os.Stat(f); err != nil {
			return "", "", fmt.Errorf("firmware for %s: %w (scripts/deps.sh installs it)", a, err)
		}
	}
	return candidates[0], candidates[1], nil
}

// overlay creates (once per Dir) a qcow2 overlay over the raw image, so
// several boots of one test share a disk and the image stays pristine.
func overlay(cfg Config) (string, error) {
	disk := filepath.Join(cfg.Dir, "disk.qcow2")
	if _, err := os.Stat(disk); err == nil {
		return disk, nil
	}
	abs, err := filepath.Abs(cfg.Disk)
	if err != nil {
		return "", err
	}
	args := []string{"create", "-q", "-f", "qcow2", "-b", abs, "-F", "raw", disk}
	if cfg.DiskSize != "" {
		args = append(args, cfg.DiskSize)
	}
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("qemu-img %v: %w: %s", args, err, out)
	}
	return disk, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func (v *VM) pump(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			chunk := bytes.ReplaceAll(buf[:n], []byte("\r"), nil)
			v.mu.Lock()
			v.console.Write(chunk)
			v.mu.Unlock()
			if v.cfg.Log != nil {
				v.cfg.Log.Write(chunk)
			}
			select {
			case v.changed <- struct{}{}:
			default:
			}
		}
		if err != nil {
			break
		}
	}
	v.exitErr = v.cmd.Wait()
	close(v.done)
}

// Console returns everything the machine printed so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

// Expect waits until re matches console output after the cursor, moves the
// cursor past the match and returns the submatches.
func (v *VM) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.After(timeout)
	for {
		v.mu.Lock()
		rest := v.console.String()[v.cursor:]
		if loc := re.FindStringSubmatchIndex(rest); loc != nil {
			m := re.FindStringSubmatch(rest)
			v.cursor += loc[1]
			v.mu.Unlock()
			return m, nil
		}
		v.mu.Unlock()
		select {
		case <-v.changed:
		case <-v.done:
			// One last look: the match may have arrived with the exit.
			v.mu.Lock()
			rest := v.console.String()[v.cursor:]
			v.mu.Unlock()
			if m := re.FindStringSubmatch(rest); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("qemu exited (%v) before %q appeared", v.exitErr, re)
		case <-deadline:
			return nil, fmt.Errorf("%q did not appear within %s", re, timeout)
		}
	}
}

// Run types a command into the console shell and returns its output and
// exit status. Markers are built with shell arithmetic so the echoed command
// line can never match them.
func (v *VM) Run(command string, timeout time.Duration) (string, int, error) {
	v.seq++
	n := 100000 + v.seq
	line := fmt.Sprintf("echo @@B$((%d+1))@@; %s; echo @@E$((%d+1))=$?@@\n", n-1, command, n-1)
	if _, err := io.WriteString(v.stdin, line); err != nil {
		return "", -1, fmt.Errorf("write console: %w", err)
	}
	begin := regexp.MustCompile(fmt.Sprintf(`@@B%d@@\n`, n))
	if _, err := v.Expect(begin, timeout); err != nil {
		return "", -1, fmt.Errorf("run %q: %w", command, err)
	}
	end := regexp.MustCompile(fmt.Sprintf(`(?s)^(.*?)@@E%d=(\d+)@@`, n))
	m, err := v.Expect(end, timeout)
	if err != nil {
		return "", -1, fmt.Errorf("run %q: %w", command, err)
	}
	rc, _ := strconv.Atoi(m[2])
	return m[1], rc, nil
}

// MustRun is Run for commands that must succeed.
func (v *VM) MustRun(command string, timeout time.Duration) (string, error) {
	out, rc, err := v.Run(command, timeout)
	if err != nil {
		return out, err
	}
	if rc != 0 {
		return out, fmt.Errorf("%q exited %d: %s", command, rc, out)
	}
	return out, nil
}

// Send types raw text into the console.
func (v *VM) Send(s string) error {
	_, err := io.WriteString(v.stdin, s)
	return err
}

// Monitor sends one command to the qemu human monitor (e.g.
// "system_powerdown" for the ACPI power button).
func (v *VM) Monitor(command string) error {
	c, err := net.DialTimeout("unix", v.monitor, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qemu monitor: %w", err)
	}
	defer c.Close()
	_, err = io.WriteString(c, command+"\n")
	time.Sleep(200 * time.Millisecond) // let qemu read it before we hang up
	return err
}

// Wait waits for qemu to exit and returns its exit code.
func (v *VM) Wait(timeout time.Duration) (int, error) {
	select {
	case <-v.done:
	case <-time.After(timeout):
		return -1, fmt.Errorf("qemu still running after %s", timeout)
	}
	var ee *exec.ExitError
	if errors.As(v.exitErr, &ee) {
		return ee.ExitCode(), nil
	}
	if v.exitErr != nil {
		return -1, v.exitErr
	}
	return 0, nil
}

// Kill stops qemu at once (a power cut).
func (v *VM) Kill() {
	if v.cmd.Process != nil {
		v.cmd.Process.Kill()
	}
	<-v.done
}

// Fields parses the key=value fields of a console line such as the
// KESTREL-READY marker.
func Fields(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, val, ok := strings.Cut(f, "="); ok {
			m[k] = val
		}
	}
	return m
}

package boottest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/release"
	"github.com/kestrel-os/kestrel/test/vm"
)

const (
	bootTimeout = 4 * time.Minute // OVMF + systemd-boot under TCG is ~17 s, kernel a few more
	cmdTimeout  = 60 * time.Second
)

var readyRE = regexp.MustCompile(layout.ReadyMarker + `[^\n]*\n`) // whole line: the console arrives in chunks

// startVM starts a machine, its console appended to console.log in
// cfg.Dir, without waiting for the ready line (an installer that powers
// off may beat the console shell); the machine is killed at cleanup.
func startVM(t testing.TB, cfg vm.Config) *vm.VM {
	t.Helper()
	log, err := os.OpenFile(filepath.Join(cfg.Dir, "console.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	cfg.Log = log
	m, err := vm.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	return m
}

// bootVM starts a machine on dir's disk and waits for the ready line.
func bootVM(t testing.TB, cfg vm.Config) (*vm.VM, map[string]string) {
	t.Helper()
	m := startVM(t, cfg)
	line, err := m.Expect(readyRE, bootTimeout)
	if err != nil {
		t.Fatalf("boot: %v\n--- console ---\n%s", err, tail(m.Console(), 60))
	}
	// The console shell starts right after the ready line; give it a
	// command to prove it is there before the test types into it. The
	// command also keeps kernel messages off the console, so they cannot
	// land in the middle of a command's output.
	if _, err := m.MustRun("dmesg -n 1", cmdTimeout); err != nil {
		t.Fatalf("console shell: %v\n--- console ---\n%s", err, tail(m.Console(), 40))
	}
	return m, vm.Fields(line[0])
}

// TestBootSlice boots the default image on a disk larger than the image and
// checks what issue 2 promises a user: read-only squashfs root from slot A,
// a state partition that fills the disk, tmpfs /etc and /run, cgroup2 with
// controllers, /var surviving a reboot, and a clean poweroff.
func TestBootSlice(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	cfg := vm.Config{Disk: img.Disk, DiskSize: "3G", Dir: dir}

	m, ready := bootVM(t, cfg)
	if ready["slot"] != "a" {
		t.Errorf("ready line names slot %q, want a: %v", ready["slot"], ready)
	}
	if ready["version"] != "0.0.0-test" {
		t.Errorf("ready line names version %q, want 0.0.0-test", ready["version"])
	}

	run := func(cmd string) string {
		t.Helper()
		out, err := m.MustRun(cmd, cmdTimeout)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}

	// The entry carries the root's verity parameters, and the image trusts
	// the tests' release key (baked into the rootfs's /etc).
	verityParams, _ := img.Manifest["verity"].(map[string]any)
	if cmdline := run("cat /proc/cmdline"); verityParams == nil || !strings.Contains(cmdline, "kestrel.verity.roothash="+fmt.Sprint(verityParams["root_hash"])) {
		t.Errorf("kernel command line lacks the manifest's verity root hash %v: %s", verityParams, cmdline)
	}
	pub, err := release.LoadPublicKey(testKeys(t).Public)
	if err != nil {
		t.Fatal(err)
	}
	if keys := run("ls " + layout.ReleaseKeysDir); keys != release.KeyID(pub)+".pub" {
		t.Errorf("%s holds %q, want the tests' key %s.pub", layout.ReleaseKeysDir, keys, release.KeyID(pub))
	}

	// Stage 2 runs the initramfs's kestrel, exec'd again from memory
	// (stage1.SwitchRoot), named init as a boot from /sbin/init would be.
	if exe, comm := run("readlink /proc/1/exe"), run("cat /proc/1/comm"); exe != layout.Init || comm != "init" {
		t.Errorf("PID 1 runs %q named %q, want the initramfs's %s named init", exe, comm, layout.Init)
	}

	// qemu64 has neither SSSE3 nor SSE4.2: the kernel's generic code, and
	// no module loaded for features the CPU lacks (TestVerityRoot boots a
	// CPU that has them).
	assertHashDrivers(t, m, "sha256-generic", "crc32c-generic")
	if mods := run("ls -d /sys/module/sha256_ssse3 /sys/module/crc32c_intel 2>/dev/null || true"); mods != "" {
		t.Errorf("modules loaded for CPU features qemu64 lacks: %s", mods)
	}

	mounts := parseMounts(run("cat /proc/mounts"))
	root, ok := mounts["/"]
	if !ok || root.fstype != "squashfs" || !root.has("ro") {
		t.Errorf("/ is %+v, want a read-only squashfs", root)
	}
	if dev := filepath.Base(root.source); dev != "" {
		if strings.HasPrefix(dev, "dm-") { // the verity device: its one slave is the partition
			dev = run("ls /sys/class/block/" + dev + "/slaves")
		}
		if got := run("grep PARTNAME /sys/class/block/" + dev + "/uevent"); got != "PARTNAME="+layout.PartRootA {
			t.Errorf("/ comes from %s with %q, want PARTNAME=%s", dev, got, layout.PartRootA)
		}
	}
	for _, p := range []string{"/etc", "/run", "/tmp"} {
		if mounts[p].fstype != "tmpfs" {
			t.Errorf("%s is %+v, want tmpfs", p, mounts[p])
		}
	}
	if st := mounts[layout.StateMount]; st.fstype != "ext4" || !st.has("rw") {
		t.Errorf("%s is %+v, want read-write ext4", layout.StateMount, st)
	}
	if esp := mounts[layout.ESPMount]; esp.fstype != "vfat" || !esp.has("rw") {
		t.Errorf("%s is %+v, want the ESP as read-write vfat (boot counting writes it)", layout.ESPMount, esp)
	}
	if cg := mounts["/sys/fs/cgroup"]; cg.fstype != "cgroup2" {
		t.Errorf("/sys/fs/cgroup is %+v, want cgroup2", cg)
	}
	controllers := strings.Fields(run("cat /sys/fs/cgroup/cgroup.controllers"))
	delegated := strings.Fields(run("cat /sys/fs/cgroup/cgroup.subtree_control"))
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if !contains(controllers, c) || !contains(delegated, c) {
			t.Errorf("cgroup controller %s: available %v, delegated %v", c, controllers, delegated)
		}
	}
	// sshd, started before the ready line at the lowest CPU weight
	// (supervisor.LowPriority), runs in its own cgroup at the default
	// weight after it.
	if procs, weight := run("cat /sys/fs/cgroup/sshd/cgroup.procs"), strings.TrimSpace(run("cat /sys/fs/cgroup/sshd/cpu.weight")); procs == "" || weight != "100" {
		t.Errorf("sshd's cgroup after ready: processes %q, cpu.weight %q; want sshd there at weight 100", procs, weight)
	} else if pid := strings.Fields(procs)[0]; run("readlink /proc/"+pid+"/exe") != layout.Init || run("cat /proc/"+pid+"/comm") != "kestrel" {
		// sshd runs PID 1's binary, in memory since stage 1 (sshdSpec).
		t.Errorf("sshd (pid %s) runs %q named %q, want the initramfs's %s named kestrel", pid, run("readlink /proc/"+pid+"/exe"), run("cat /proc/"+pid+"/comm"), layout.Init)
	}

	// The state partition ends where the disk's usable area ends (the GPT
	// backup header takes the last 33 sectors), and ext4 was grown with it.
	stateDev := filepath.Base(mounts[layout.StateMount].source)
	diskDev := strings.TrimSpace(run("basename $(readlink -f /sys/class/block/" + stateDev + "/..)"))
	diskSectors := atoi(t, run("cat /sys/class/block/"+diskDev+"/size"))
	partEnd := atoi(t, run("cat /sys/class/block/"+stateDev+"/start")) + atoi(t, run("cat /sys/class/block/"+stateDev+"/size"))
	if gap := diskSectors - partEnd; gap < 33 || gap > 2048+33 {
		t.Errorf("state partition ends at sector %d of %d: not grown to the disk end", partEnd, diskSectors)
	}
	fsKiB := atoi(t, strings.Fields(run("df -k " + layout.StateMount + " | tail -n 1"))[1])
	partKiB := atoi(t, run("cat /sys/class/block/"+stateDev+"/size")) / 2
	if fsKiB < partKiB*9/10 {
		t.Errorf("ext4 on state is %d KiB of a %d KiB partition: not grown online", fsKiB, partKiB)
	}

	token := "kestrel-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	run("mkdir -p /var/lib/boottest && echo " + token + " > /var/lib/boottest/token && sync")

	// A first boot has no random seed: stage 2 saves one once the CRNG is
	// ready (randomseed.Warm collects jitter at nice 19 meanwhile).
	if out, err := m.MustRun("until [ -s "+layout.RandomSeed+" ]; do sleep 0.5; done; stat -c '%s %a' "+layout.RandomSeed+"; sync", 2*time.Minute); err != nil || strings.TrimSpace(out) != "32 600" {
		t.Errorf("random seed after the first boot: %q, %v; want 32 bytes, mode 600", out, err)
	}

	// Power off from the CLI: qemu must end with status 0.
	m.Send("kestrel poweroff\n")
	code, err := m.Wait(2 * time.Minute)
	if err != nil || code != 0 {
		t.Fatalf("poweroff: qemu exit %d, %v\n%s", code, err, tail(m.Console(), 30))
	}

	// Second boot of the same disk.
	m2, ready2 := bootVM(t, cfg)
	if got, err := m2.MustRun("cat /var/lib/boottest/token", cmdTimeout); err != nil || strings.TrimSpace(got) != token {
		t.Errorf("/var after reboot: %q, %v; want %q", got, err, token)
	}
	// Stage 1 credited the seed: the CRNG was ready before stage 2.
	crng, _ := m2.MustRun("dmesg | grep 'crng init done' || true", cmdTimeout)
	var crngAt float64
	if _, err := fmt.Sscanf(strings.TrimSpace(crng), "[%f]", &crngAt); err != nil {
		t.Errorf("second boot: no 'crng init done' in dmesg (%v): %q", err, crng)
	} else if k, s1 := num(t, ready2["kernel"]), num(t, ready2["stage1"]); crngAt > k+s1 {
		t.Errorf("second boot: CRNG ready at %.3f s, after stage 1 ended (%.3f s): the seed was not credited", crngAt, k+s1)
	}
	dmesg, _ := m2.MustRun("dmesg | grep -i 'EXT4-fs' || true", cmdTimeout)
	if strings.Contains(dmesg, "recovery") || strings.Contains(dmesg, "orphan") {
		t.Errorf("second boot needed ext4 journal recovery:\n%s", dmesg)
	}

	// The ACPI power button powers off cleanly too, once PID 1 watches it
	// (its drivers load after the ready line).
	if out, err := m2.MustRun("until kestrel status | grep -q 'power button:.*watched on'; do sleep 0.2; done; kestrel status | grep 'power button'", 2*time.Minute); err != nil {
		t.Fatalf("power button never watched: %v\n%s", err, out)
	}
	if err := m2.Monitor("system_powerdown"); err != nil {
		t.Fatal(err)
	}
	if code, err := m2.Wait(2 * time.Minute); err != nil || code != 0 {
		t.Fatalf("power button: qemu exit %d, %v\n%s", code, err, tail(m2.Console(), 30))
	}
}

// TestRescueOnCorruptRoot zeroes the start of root A: stage 1 must say what
// it looked for and found, and leave a working shell on the console.
func TestRescueOnCorruptRoot(t *testing.T) {
	t.Parallel()
	img := buildImage(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "corrupt.img")
	if err := corruptPartition(img.Disk, disk, layout.PartRootA); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Start(vm.Config{Disk: disk, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	if _, err := m.Expect(regexp.MustCompile(`(?i)rescue`), bootTimeout); err != nil {
		t.Fatalf("no rescue message: %v\n%s", err, tail(m.Console(), 40))
	}
	console := m.Console()
	if !strings.Contains(console, layout.PartRootA) {
		t.Errorf("stage 1 did not name the partition it looked for (%s):\n%s", layout.PartRootA, tail(console, 40))
	}
	if strings.Contains(console, "Kernel panic") {
		t.Errorf("kernel panicked:\n%s", tail(console, 40))
	}
	out, err := m.MustRun("echo rescue-shell-$((6*7))", cmdTimeout)
	if err != nil || !strings.Contains(out, "rescue-shell-42") {
		t.Errorf("rescue shell did not run a command: %q, %v\n%s", out, err, tail(m.Console(), 20))
	}
}

type mount struct {
	source, fstype string
	opts           []string
}

func (m mount) has(opt string) bool { return contains(m.opts, opt) }

// parseMounts keeps the last mount of each mount point, as the kernel shows it.
func parseMounts(s string) map[string]mount {
	res := map[string]mount{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		res[f[1]] = mount{source: f[0], fstype: f[2], opts: strings.Split(f[3], ",")}
	}
	return res
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

package boottest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
	"github.com/kestrel-os/kestrel/internal/node/k3s/service"
	"github.com/kestrel-os/kestrel/test/vm"
)

// The k3s boot tests run the TEST STAND-IN for k3s (test/k3s-standin), built
// here and put into a separate test image (out/test-standin) with the
// builder's -k3s standin; it is never part of a release image. Each test
// gives the VM its config as config.yaml on the ESP of a copy of that image.

const (
	testVersion = "0.0.0-test"
	healthWait  = 3 * time.Minute
)

// imageOpts selects a test image variant.
type imageOpts struct {
	Name    string // output directory under out/
	K3s     string // -k3s of the builder: none, standin, kubelet
	Version string // release version; testVersion when empty
	Bundle  bool   // also `make bundle` (the signed release bundle)
	// Target is the image definition, images/<Target>.yaml; "" is amd64.
	// The stand-in is built for its arch.
	Target string
	ISO    bool // `make iso` instead of `make image` (the image and the ISO)
	// UpgradeImage also runs `make upgrade-image` (the OCI upgrade image).
	UpgradeImage bool
}

var (
	variantsMu sync.Mutex
	variants   = map[string]*variantBuild{}
)

type variantBuild struct {
	once sync.Once
	img  *Image
	err  error
}

// buildImageWith builds a test image variant once per test binary with
// `make image`; for K3s "standin" it first builds the k3s stand-in
// (static) and hands it to the builder as K3S_BINARY; for "kubelet" the
// same with test/k3s-kubelet, after scripts/k8s-node-bins.sh.
func buildImageWith(t testing.TB, o imageOpts) *Image {
	t.Helper()
	needTools(t)
	variantsMu.Lock()
	b := variants[o.Name]
	if b == nil {
		b = &variantBuild{}
		variants[o.Name] = b
	}
	variantsMu.Unlock()
	b.once.Do(func() {
		root := repoRoot()
		out := filepath.Join(root, "out", o.Name)
		env := os.Environ()
		if o.Version == "" {
			o.Version = testVersion
		}
		if o.Target == "" {
			o.Target = "amd64"
		}
		// KESTREL_TEST_REUSE_IMAGES=1 takes an image already built in out/
		// as it is (while iterating on a test, not on the image).
		if os.Getenv("KESTREL_TEST_REUSE_IMAGES") == "1" {
			if img, err := readManifest(out, o.Version, o.Target); err == nil {
				if _, err := os.Stat(img.Disk); err == nil {
					b.img = img
					return
				}
			}
		}
		if o.K3s == "standin" || o.K3s == "kubelet" {
			pkg := "./test/k3s-standin"
			if o.K3s == "kubelet" { // the stand-in that runs upstream containerd + kubelet
				pkg = "./test/k3s-kubelet"
				script := exec.Command("bash", "scripts/k8s-node-bins.sh")
				script.Dir, script.Stdout, script.Stderr = root, os.Stderr, os.Stderr
				if err := script.Run(); err != nil {
					b.err = fmt.Errorf("scripts/k8s-node-bins.sh: %w", err)
					return
				}
			}
			bin := filepath.Join(out, "k3s-standin")
			build := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
			build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
			if goarch, ok := targetGOARCH[o.Target]; ok {
				build.Env = append(build.Env, goarch...)
			}
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				b.err = fmt.Errorf("build the k3s stand-in: %w", err)
				return
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				b.err = err
				return
			}
			sum := sha256.Sum256(data)
			// The stand-in is not the pinned k3s: name its sha256 so the
			// builder takes it deliberately.
			env = append(env, "K3S_BINARY="+bin, "K3S_BINARY_SHA256="+hex.EncodeToString(sum[:]))
		}
		if o.K3s == "" {
			o.K3s = "none"
		}
		args := append(makeImageArgs(t, o.Version, out), "K3S="+o.K3s, "ARCH="+o.Target)
		if o.ISO {
			args[2] = "iso"
		}
		if o.Bundle {
			args = append(args, "bundle")
		}
		if o.UpgradeImage {
			args = append(args, "upgrade-image")
		}
		cmd := exec.Command("make", args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("make image K3S=%s: %w", o.K3s, err)
			return
		}
		b.img, b.err = readManifest(out, o.Version, o.Target)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.img
}

// targetGOARCH is the Go environment of a target's binaries.
var targetGOARCH = map[string][]string{
	"arm64": {"GOARCH=arm64"}, "rpi3": {"GOARCH=arm64"}, "rpi4": {"GOARCH=arm64"},
	"armv7": {"GOARCH=arm", "GOARM=7"}, "rpi2": {"GOARCH=arm", "GOARM=7"},
}

// withESPConfig copies the image's disk into dir and puts configYAML on its
// ESP as layout.ESPUserConfig, where a user would after flashing.
func withESPConfig(t testing.TB, img *Image, dir, configYAML string) string {
	t.Helper()
	disk := filepath.Join(dir, "disk.img")
	if err := copyDisk(img.Disk, disk); err != nil {
		t.Fatal(err)
	}
	writeESPFile(t, disk, layout.ESPUserConfig, []byte(configYAML))
	return disk
}

// guest is the console of a booted VM, with what the k3s tests read.
type guest struct{ console }

var base64Line = regexp.MustCompile(`^[A-Za-z0-9+/=]+$`)

// readFile returns a guest file's bytes. PID 1 writes to the same console
// as the shell, so the file travels as base64 with its sha256 and is read
// again when a console message got in between.
func (g guest) readFile(path string) ([]byte, bool) {
	g.t.Helper()
	for try := 0; try < 4; try++ {
		out, rc, err := g.m.Run(fmt.Sprintf("base64 %s && sha256sum %s", path, path), cmdTimeout)
		if err != nil {
			g.t.Fatal(err)
		}
		if rc != 0 {
			return nil, false
		}
		var b64, sum string
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSpace(l)
			if f := strings.Fields(l); len(f) == 2 && f[1] == path && len(f[0]) == 64 {
				sum = f[0]
			} else if base64Line.MatchString(l) {
				b64 += l
			}
		}
		data, err := base64.StdEncoding.DecodeString(b64)
		if got := sha256.Sum256(data); err == nil && hex.EncodeToString(got[:]) == sum {
			return data, true
		}
	}
	g.t.Fatalf("could not read %s intact over the console", path)
	return nil, false
}

func (g guest) readJSON(path string, v any) bool {
	g.t.Helper()
	data, ok := g.readFile(path)
	if !ok {
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		g.t.Fatalf("%s: %v\n%s", path, err, data)
	}
	return true
}

// waitHealth polls the boot-health record until it is no longer pending.
func (g guest) waitHealth(within time.Duration) boothealth.Record {
	g.t.Helper()
	deadline := time.Now().Add(within)
	var last boothealth.Record
	for time.Now().Before(deadline) {
		if g.readJSON(layout.BootHealth, &last) && last.State != boothealth.Pending {
			return last
		}
		time.Sleep(2 * time.Second)
	}
	g.t.Fatalf("boot health still %q after %v\n--- console ---\n%s", last.String(), within, tail(g.m.Console(), 40))
	return last
}

func (g guest) status() statusJSON {
	g.t.Helper()
	g.run("kestrel status --json > /tmp/status.json")
	var st statusJSON
	g.readJSON("/tmp/status.json", &st)
	return st
}

type statusJSON struct {
	Services   []supervisor.Status `json:"services"`
	Warnings   []string            `json:"warnings"`
	BootHealth *boothealth.Record  `json:"boot_health"`
}

func (s statusJSON) service(name string) (supervisor.Status, bool) {
	for _, sv := range s.Services {
		if sv.Name == name {
			return sv, true
		}
	}
	return supervisor.Status{}, false
}

// standinRecord is test/k3s-standin's record.json.
type standinRecord struct {
	Standin      string             `json:"standin"`
	StartCount   int                `json:"start_count"`
	Argv         []string           `json:"argv"`
	Role         string             `json:"role"`
	Env          []string           `json:"env"`
	Files        map[string]*string `json:"files"`
	Checks       []check            `json:"checks"`
	ChecksPassed bool               `json:"checks_passed"`
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// expectK3s is what the node config must turn into, computed on the host
// with the same translation (itself tested against golden files); the
// test adds literal expectations of its own.
func expectK3s(t *testing.T, configYAML string) k3sconfig.Output {
	t.Helper()
	doc, err := config.Parse("config.yaml", []byte(configYAML))
	if doc == nil { // unknown keys leave a document, as at boot
		t.Fatal(err)
	}
	r, err := config.Merge(doc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := k3sconfig.Translate(service.FromConfig(r.Config, testVersion, "a"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bootK3s boots the stand-in image with configYAML on the ESP, waits for
// the boot-health verdict and returns the guest and the verdict.
func bootK3s(t *testing.T, configYAML string) (guest, boothealth.Record, string) {
	img := buildImageWith(t, imageOpts{Name: "test-standin", K3s: "standin"})
	if img.Manifest["k3s"] == nil {
		t.Fatalf("test image has no k3s in its manifest: %v", img.Manifest)
	}
	dir := t.TempDir()
	t.Cleanup(func() { // keep the console of a failed boot next to the image
		if t.Failed() {
			logs := filepath.Join(img.Dir, "logs")
			os.MkdirAll(logs, 0o755)
			if data, err := os.ReadFile(filepath.Join(dir, "console.log")); err == nil {
				os.WriteFile(filepath.Join(logs, t.Name()+".console.log"), data, 0o644)
				t.Logf("console: %s", filepath.Join(logs, t.Name()+".console.log"))
			}
		}
	})
	disk := withESPConfig(t, img, dir, configYAML)
	m, ready := bootVM(t, vm.Config{Disk: disk, DiskSize: "3G", Dir: dir})
	if ready["version"] != testVersion {
		t.Errorf("ready line: %v", ready)
	}
	g := guest{console{t, m}}
	return g, g.waitHealth(healthWait), dir
}

// checkStarted asserts what every healthy stand-in boot shows: the argv,
// environment and files are what the config says, every environment check
// passed, the boot is good, status and logs show k3s.
func checkStarted(t *testing.T, g guest, h boothealth.Record, configYAML string, wantArgv []string, wantConfig []string, wantEnv []string) standinRecord {
	t.Helper()
	want := expectK3s(t, configYAML)
	if h.State != boothealth.Good {
		t.Errorf("boot health %q, want good\n--- console ---\n%s", h.String(), tail(g.m.Console(), 60))
	}
	var rec standinRecord
	if !g.readJSON("/var/lib/rancher/k3s-standin/record.json", &rec) {
		t.Fatalf("the stand-in left no record\n--- k3s log ---\n%s", g.run("kestrel logs k3s || true"))
	}
	if !strings.Contains(strings.ToLower(rec.Standin), "stand-in") {
		t.Errorf("record does not come from the stand-in: %q", rec.Standin)
	}
	if wantArgv0 := "/usr/bin/k3s"; len(rec.Argv) == 0 || rec.Argv[0] != wantArgv0 || !slices.Equal(rec.Argv[1:], wantArgv) || !slices.Equal(rec.Argv[1:], want.Argv[1:]) {
		t.Errorf("k3s argv %q, want /usr/bin/k3s %q (translation says %q)", rec.Argv, wantArgv, want.Argv[1:])
	}
	if rec.Role != want.Role {
		t.Errorf("role %s, want %s", rec.Role, want.Role)
	}
	for _, e := range append(slices.Clone(want.Env), wantEnv...) {
		if !slices.Contains(rec.Env, e) {
			t.Errorf("k3s environment lacks %s: %q", e, rec.Env)
		}
	}
	got := rec.Files[k3sconfig.ConfigPath]
	if got == nil || *got != string(want.ConfigYAML) {
		t.Errorf("%s on the node:\n%v\nwant:\n%s", k3sconfig.ConfigPath, deref(got), want.ConfigYAML)
	}
	for _, line := range wantConfig {
		if got == nil || !strings.Contains(*got, line+"\n") {
			t.Errorf("%s lacks line %q:\n%s", k3sconfig.ConfigPath, line, deref(got))
		}
	}
	reg := rec.Files[k3sconfig.RegistriesPath]
	if (reg == nil) != (want.RegistriesYAML == nil) || reg != nil && *reg != string(want.RegistriesYAML) {
		t.Errorf("%s on the node:\n%v\nwant:\n%s", k3sconfig.RegistriesPath, deref(reg), want.RegistriesYAML)
	}
	if !rec.ChecksPassed || len(rec.Checks) == 0 {
		t.Errorf("environment checks did not all pass:")
	}
	for _, c := range rec.Checks {
		if !c.OK {
			t.Errorf("  check %s FAIL: %s", c.Name, c.Detail)
		}
	}

	st := g.status()
	if sv, ok := st.service("k3s"); !ok || sv.State != supervisor.Running {
		t.Errorf("kestrel status: k3s is %+v, want running", sv)
	}
	if st.BootHealth == nil || st.BootHealth.State != boothealth.Good {
		t.Errorf("kestrel status --json boot_health %+v, want good", st.BootHealth)
	}
	if text := g.run("kestrel status"); !regexp.MustCompile(`boot health:\s+good: k3s ` + want.Role + ` healthy`).MatchString(text) {
		t.Errorf("kestrel status does not say the boot is good:\n%s", text)
	}
	if logs := g.run("kestrel logs -n 200 k3s"); !strings.Contains(logs, "k3s-standin") || !strings.Contains(logs, "environment checks passed") {
		t.Errorf("kestrel logs k3s does not show the stand-in's output:\n%s", logs)
	}
	return rec
}

func deref(s *string) string {
	if s == nil {
		return "<absent>"
	}
	return *s
}

// poweroff powers the node off from the CLI; k3s must stop on SIGTERM
// (no KILL) and qemu must exit 0.
func poweroff(t *testing.T, g guest) {
	t.Helper()
	g.m.Send("kestrel poweroff\n")
	code, err := g.m.Wait(2 * time.Minute)
	if err != nil || code != 0 {
		t.Fatalf("poweroff: qemu exit %d, %v\n%s", code, err, tail(g.m.Console(), 30))
	}
	console := g.m.Console()
	if !regexp.MustCompile(`service k3s: pid \d+ ended`).MatchString(console) {
		t.Errorf("console does not show k3s stopping:\n%s", tail(console, 30))
	}
	if strings.Contains(console, "did not stop within") {
		t.Errorf("a service needed SIGKILL at poweroff:\n%s", tail(console, 30))
	}
}

const serverConfig = `# k3s boot test: server
kestrel:
  environment:
    HTTPS_PROXY: http://proxy.example:3128
    NO_PROXY: 127.0.0.1,localhost,10.0.0.0/8
  registries:
    mirrors:
      docker.io:
        endpoint: ["https://mirror.example.com"]
  k3s:
    role: server
    node_name: edge-01
    labels:
      topology.kubernetes.io/zone: hall-a
    taints: ["dedicated=edge:NoSchedule"]
    args: ["--disable=traefik", "--write-kubeconfig-mode=0640"]
    health_timeout: 2m
`

// TestK3sServer boots the stand-in as a server, checks what it was given
// and found, then makes it crash: the supervisor restarts it with growing
// delays, visible in `kestrel status`; then makes it hang: poweroff kills
// it after SIGTERM went unheard and still powers off cleanly.
func TestK3sServer(t *testing.T) {
	t.Parallel()
	g, h, _ := bootK3s(t, serverConfig)
	checkStarted(t, g, h, serverConfig,
		[]string{"server", "--disable=traefik", "--write-kubeconfig-mode=0640"},
		[]string{"node-name: edge-01", "  - kestrel.io/slot=a", "  - kestrel.io/version=" + testVersion, "  - topology.kubernetes.io/zone=hall-a", "  - dedicated=edge:NoSchedule"},
		[]string{"HTTPS_PROXY=http://proxy.example:3128", "NO_PROXY=127.0.0.1,localhost,10.0.0.0/8"})

	// Persistent places: the node password directory is bound from /var.
	if out := g.run("grep ' /etc/rancher/node ' /proc/self/mountinfo | wc -l"); out == "0" {
		t.Errorf("/etc/rancher/node is not a bind mount from the state partition")
	}

	// State and the binds from it are nosuid,nodev (the stand-in, run
	// from the rootfs, answered health from a root-owned socket above);
	// the boot-health record is root's alone.
	mountinfo, _ := g.readFile("/proc/1/mountinfo")
	found := 0
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && (f[4] == "/state" || f[4] == "/var" || f[4] == "/home") {
			found++
			if o := "," + f[5] + ","; !strings.Contains(o, ",nosuid,") || !strings.Contains(o, ",nodev,") {
				t.Errorf("%s is mounted %s, want nosuid,nodev", f[4], f[5])
			}
		}
	}
	if found != 3 {
		t.Errorf("found %d of /state, /var, /home in the mount table:\n%s", found, mountinfo)
	}
	if out := g.run("ls -l /run/kestrel/boot-health"); !strings.HasPrefix(out, "-rw------- ") {
		t.Errorf("boot-health: %s, want mode 0600", out)
	}

	// Crash: the stand-in reads its mode file at each start; from now on
	// it exits at once. Killing the running one starts the loop.
	g.run("echo crash > /var/lib/rancher/k3s-standin/mode && kill $(pidof k3s)")
	type sample struct {
		restarts int
		delay    time.Duration
	}
	var seen []sample
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && len(seen) < 4 {
		sv, _ := g.status().service("k3s")
		if sv.State == supervisor.Backoff && !sv.NextStart.IsZero() {
			s := sample{sv.Restarts, sv.NextStart.Sub(sv.Since)}
			if len(seen) == 0 || seen[len(seen)-1].restarts != s.restarts {
				seen = append(seen, s)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(seen) < 3 {
		t.Fatalf("saw %d distinct backoffs of the crashing stand-in, want at least 3: %+v\n%s", len(seen), seen, g.run("kestrel status"))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].restarts <= seen[i-1].restarts || seen[i].delay <= seen[i-1].delay {
			t.Errorf("restart delays do not grow: %+v", seen)
		}
	}
	text := g.run("kestrel status")
	if !regexp.MustCompile(`k3s\s+(backoff|running)\s+\S+\s+[1-9]\d*\s`).MatchString(text) {
		t.Errorf("kestrel status does not show k3s restarting:\n%s", text)
	}
	if logs := g.run("kestrel logs k3s"); !strings.Contains(logs, "crashing as told") {
		t.Errorf("kestrel logs k3s lacks the crashes:\n%s", tail(logs, 20))
	}
	t.Logf("backoffs of the crashing stand-in: %+v", seen)

	// Hang: the next start ignores SIGTERM; poweroff must KILL it after
	// the supervisor's stop timeout and still end cleanly.
	g.run("echo hang > /var/lib/rancher/k3s-standin/mode")
	deadline = time.Now().Add(90 * time.Second)
	for {
		out, _, _ := g.m.Run("tail -n 1 /var/lib/rancher/k3s-standin/events.log", cmdTimeout)
		if sv, _ := g.status().service("k3s"); sv.State == supervisor.Running && strings.Contains(out, " start ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in did not start again to hang:\n%s", g.run("kestrel status"))
		}
		time.Sleep(time.Second)
	}
	g.m.Send("kestrel poweroff\n")
	code, err := g.m.Wait(2 * time.Minute)
	if err != nil || code != 0 {
		t.Fatalf("poweroff with a hanging k3s: qemu exit %d, %v\n%s", code, err, tail(g.m.Console(), 30))
	}
	if !regexp.MustCompile(`service k3s: pid \d+ did not stop within \S+, killing`).MatchString(g.m.Console()) {
		t.Errorf("console does not show the hanging k3s being killed:\n%s", tail(g.m.Console(), 30))
	}
}

const agentConfig = `# k3s boot test: agent
kestrel:
  k3s:
    server_url: https://10.0.2.2:6443
    token: K10agenttest::server:secret
    labels:
      role.example.com/edge: "true"
`

// TestK3sAgent boots the stand-in as an agent (role derived from the
// server URL) and powers off: k3s stops on SIGTERM.
func TestK3sAgent(t *testing.T) {
	t.Parallel()
	g, h, _ := bootK3s(t, agentConfig)
	checkStarted(t, g, h, agentConfig,
		[]string{"agent"},
		[]string{"server: https://10.0.2.2:6443", "token: K10agenttest::server:secret", "  - role.example.com/edge=true"},
		nil)
	poweroff(t, g)
}

const legacyConfig = `# k3s boot test: a k3OS config, unchanged
k3os:
  server_url: https://10.0.2.2:6443
  token: K10legacy::server:secret
  labels:
    region: eu-west
  taints:
    - edge=true:NoExecute
  k3s_args:
    - agent
    - --node-ip=10.0.2.15
  environment:
    K3S_STANDIN_NOTE: from-k3os
`

// TestK3sLegacyConfig boots the stand-in from a k3OS config: role, server,
// token, labels, taints, args and environment come from the k3os: keys.
func TestK3sLegacyConfig(t *testing.T) {
	t.Parallel()
	g, h, _ := bootK3s(t, legacyConfig)
	checkStarted(t, g, h, legacyConfig,
		[]string{"agent", "--node-ip=10.0.2.15"},
		[]string{"server: https://10.0.2.2:6443", "token: K10legacy::server:secret", "  - region=eu-west", "  - edge=true:NoExecute"},
		[]string{"K3S_STANDIN_NOTE=from-k3os"})
}

const unhealthyConfig = `# k3s boot test: a k3s that never becomes healthy
kestrel:
  environment:
    K3S_STANDIN_MODE: unhealthy
  k3s:
    health_timeout: 20s
`

// TestK3sNeverHealthy: a stand-in that answers 503 forever makes the boot
// NOT good once the configured timeout has passed, and status says so.
func TestK3sNeverHealthy(t *testing.T) {
	t.Parallel()
	g, h, _ := bootK3s(t, unhealthyConfig)
	if h.State != boothealth.NotGood || !strings.Contains(h.Detail, "not healthy within 20s") {
		t.Errorf("boot health %q, want not good within 20s", h.String())
	}
	if sv, _ := g.status().service("k3s"); sv.State != supervisor.Running {
		t.Errorf("k3s is %+v: an unhealthy k3s keeps running", sv)
	}
	text := g.run("kestrel status")
	if !strings.Contains(text, "boot health:") || !strings.Contains(text, "NOT GOOD: k3s server not healthy within 20s") {
		t.Errorf("kestrel status does not say the boot is not good:\n%s", text)
	}
	if !strings.Contains(g.m.Console(), "boot NOT good") {
		t.Errorf("console does not say the boot is not good")
	}
	var rec standinRecord
	if g.readJSON("/var/lib/rancher/k3s-standin/record.json", &rec); !bytes.Contains([]byte(strings.Join(rec.Env, "\n")), []byte("K3S_STANDIN_MODE=unhealthy")) {
		t.Errorf("the stand-in did not get its mode from kestrel.environment: %q", rec.Env)
	}
}

// Package boottest holds the tests that build real Kestrel images with the
// real builder and boot them in qemu (software emulation). They share one
// image build per `go test` run and one harness (test/vm).
//
// They need qemu, OVMF and the builder's host tools (scripts/deps.sh). When
// those are missing they fail under CI (CI=true) and skip elsewhere, naming
// what is missing. -short skips them.
//
// Every boot test calls t.Parallel(): under TCG a one-vCPU guest keeps one
// host core busy, so on a two-core machine two tests at a time (go test's
// -parallel defaults to GOMAXPROCS) take about half the wall time of one
// after the other. Each test boots its own copy-on-write overlay of an
// image, forwards ports it picked free, and shares image builds through
// sync.Once (buildImageWith); the builder's caches take concurrent runs
// (temporary files renamed into place). Benchmarks stay sequential.
package boottest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kestrel-os/kestrel/internal/release"
)

// repoRoot is two levels up from this package.
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// Image is what the builder wrote for one arch, read from its JSON manifest.
type Image struct {
	Dir       string
	Disk      string
	Kernel    string
	Initrd    string
	Rootfs    string // the squashfs alone
	Partition string // the root partition image: squashfs + dm-verity tree
	Release   string // the signed release manifest (internal/release)
	Baseline  string // minimal-init initramfs for the boot-time baseline
	Manifest  map[string]any
}

// Keys is the release key pair of the tests: every test image trusts the
// public key and is signed with the private one, so that a test can sign a
// second release (an upgrade) that the booted image accepts.
type Keys struct {
	Private, Public string // key files (internal/release formats)
}

var (
	keysOnce sync.Once
	keys     Keys
	keysErr  error
)

// testKeys returns the tests' key pair, generated once into out/test-keys
// and reused by later runs (images already built there trust it).
func testKeys(t testing.TB) Keys {
	t.Helper()
	keysOnce.Do(func() {
		dir := filepath.Join(repoRoot(), "out", "test-keys")
		keys = Keys{Private: filepath.Join(dir, release.PrivateKeyFile), Public: filepath.Join(dir, release.PublicKeyFile)}
		if _, err := os.Stat(keys.Private); err == nil {
			return
		}
		_, _, keysErr = release.GenerateKeys(dir)
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return keys
}

// makeImageArgs are the `make image` arguments of a test image of version
// in out: signed with the tests' key and trusting it.
func makeImageArgs(t testing.TB, version, out string) []string {
	k := testKeys(t)
	return []string{"-C", repoRoot(), "image", "VERSION=" + version, "OUT=" + out, "SIGN_KEY=" + k.Private, "TRUSTED_KEYS=" + k.Public}
}

var (
	buildOnce sync.Once
	built     *Image
	buildErr  error
)

// needTools skips (or fails under CI) when the host lacks the boot tools.
func needTools(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boot tests are skipped with -short")
	}
	var missing []string
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mksquashfs", "mkfs.ext4", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		missing = append(missing, "ovmf")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing %v: run scripts/deps.sh", missing)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// buildImage builds the default amd64 image once per test binary with the
// same command `make image` runs.
func buildImage(t testing.TB) *Image {
	t.Helper()
	needTools(t)
	buildOnce.Do(func() {
		root := repoRoot()
		out := filepath.Join(root, "out", "test")
		cmd := exec.Command("make", makeImageArgs(t, "0.0.0-test", out)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("make image: %w", err)
			return
		}
		built, buildErr = readManifest(out, "0.0.0-test", "amd64")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func readManifest(dir, version, arch string) (*Image, error) {
	path := filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.json", version, arch))
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("builder manifest: %w", err)
	}
	img := &Image{Dir: dir, Manifest: map[string]any{}}
	if err := json.Unmarshal(b, &img.Manifest); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	img.Disk = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.img", version, arch))
	img.Kernel = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.vmlinuz", version, arch))
	img.Initrd = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.initrd", version, arch))
	img.Rootfs = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.squashfs", version, arch))
	img.Partition = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.rootfs", version, arch))
	img.Release = filepath.Join(dir, fmt.Sprintf("kestrel-%s-%s.release.json", version, arch))
	img.Baseline = filepath.Join(dir, fmt.Sprintf("baseline-%s.initrd", arch))
	return img, nil
}

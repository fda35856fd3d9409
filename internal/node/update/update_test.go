package update

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/release"
	"github.com/kestrel-os/kestrel/internal/verity"
)

// disk is the slots' partitions as loop devices, described by a sysfs
// tree of the shape blockdev reads (this host's loop driver does not scan
// GPT partitions, and partx-added ones carry no PARTNAME), an ESP as a
// plain directory, and a host root laid out as the node's.
type disk struct {
	host  string // the node's root: dev/ links to the loop devices, boot/efi the ESP
	sys   string
	rootB string // device path of root-b under host
}

// newDisk makes the disk, or skips when the host cannot (not root, no loop).
func newDisk(t *testing.T) *disk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	d := &disk{host: t.TempDir(), sys: t.TempDir()}
	os.MkdirAll(filepath.Join(d.host, "dev"), 0o755)
	for i, part := range []string{layout.PartRootA, layout.PartRootB} {
		img := filepath.Join(t.TempDir(), part+".img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(img, 16<<20)
		out, err := exec.Command("losetup", "-f", "--show", img).Output()
		if err != nil {
			t.Skipf("losetup: %v", err)
		}
		loop := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
		name := fmt.Sprintf("vdx%d", i+2)
		dir := filepath.Join(d.sys, "devices/virtual/block/vdx", name)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "uevent"), []byte(fmt.Sprintf("MAJOR=7\nMINOR=%d\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%d\nPARTNAME=%s\n", i, name, i+2, part)), 0o644)
		os.WriteFile(filepath.Join(dir, "size"), []byte(fmt.Sprint(16<<20/512)), 0o644)
		os.MkdirAll(filepath.Join(d.sys, "class/block"), 0o755)
		os.Symlink(dir, filepath.Join(d.sys, "class/block", name))
		if err := os.Symlink(loop, filepath.Join(d.host, "dev", name)); err != nil {
			t.Fatal(err)
		}
		if part == layout.PartRootB {
			d.rootB = filepath.Join(d.host, "dev", name)
		}
	}
	esp := filepath.Join(d.host, layout.ESPMount)
	e := bls.Entry{Slot: "a", Version: "1.0.0", Options: []string{"console=ttyS0", "quiet"}}
	os.MkdirAll(filepath.Join(esp, layout.ESPEntriesDir), 0o755)
	os.WriteFile(filepath.Join(esp, e.FileName()), e.Render(), 0o644)
	for _, f := range []string{bls.KernelPath("a"), bls.InitrdPath("a")} {
		os.MkdirAll(filepath.Join(esp, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(esp, f), []byte("slot a "+f), 0o644)
	}
	// Something in root-b that a refused upgrade must leave alone.
	if err := os.WriteFile(d.rootB, bytes.Repeat([]byte("old-b"), 1000), 0); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *disk) node() Node {
	return Node{Host: d.host, Sys: d.sys, Slot: "a", Version: "1.0.0", Arch: runtime.GOARCH,
		Chain: bootslot.BLS{ESP: filepath.Join(d.host, layout.ESPMount), Booted: "a"}}
}

// fingerprint hashes root-b's whole partition and every file on the ESP
// (names and contents): what "nothing was written" is checked against.
func (d *disk) fingerprint(t *testing.T) string {
	t.Helper()
	h := sha256.New()
	f, err := os.Open(d.rootB)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(h, f)
	f.Close()
	filepath.WalkDir(filepath.Join(d.host, layout.ESPMount), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			data, _ := os.ReadFile(p)
			fmt.Fprintf(h, "%s %x\n", p, sha256.Sum256(data))
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// fixture is a signed release of small parts: a root image with a real
// dm-verity tree (over random data standing in for a squashfs).
type fixture struct {
	dir   string // release directory (release.json + parts)
	files map[string]string
	m     *release.Manifest
	key   ed25519.PrivateKey
	pub   ed25519.PublicKey
}

func newFixture(t *testing.T, version, arch string) *fixture {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	dir := t.TempDir()
	f := &fixture{dir: dir, key: key, pub: pub, files: map[string]string{}}
	data := filepath.Join(t.TempDir(), "squashfs")
	buf := make([]byte, 3<<20+123)
	rand.Read(buf)
	os.WriteFile(data, buf, 0o644)
	vp, err := verity.Build(data, filepath.Join(dir, release.PartRootfs))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, release.PartKernel), []byte("kernel "+version), 0o644)
	os.WriteFile(filepath.Join(dir, release.PartInitrd), []byte("initrd "+version), 0o644)
	f.m = &release.Manifest{Format: release.Format, Version: version, Arch: arch, Verity: vp}
	for _, name := range []string{release.PartKernel, release.PartInitrd, release.PartRootfs} {
		p, err := release.NewPart(name, filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		f.m.Parts = append(f.m.Parts, p)
		f.files[name] = filepath.Join(dir, name)
	}
	env, err := release.Sign(f.m, key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, release.ManifestFile), env, 0o644)
	return f
}

func (f *fixture) bundle(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := release.WriteBundle(&b, f.m, f.key, f.files); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestApply writes a release into slot b of a real GPT disk (loop device):
// the partition holds the root image, the ESP the kernel and initramfs,
// and slot b's entry has three tries and boots next, with the release's
// verity parameters and the running entry's other options.
func TestApply(t *testing.T) {
	d := newDisk(t)
	f := newFixture(t, "1.1.0", runtime.GOARCH)
	rel, err := release.OpenDir(f.dir, []ed25519.PublicKey{f.pub})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Apply(context.Background(), d.node(), rel, Options{Out: &out})
	if err != nil {
		t.Fatalf("Apply: %v\n%s", err, out.String())
	}
	if res.Slot != "b" || res.Version != "1.1.0" {
		t.Errorf("result %+v", res)
	}
	want, _ := os.ReadFile(f.files[release.PartRootfs])
	got := make([]byte, len(want))
	dev, _ := os.Open(d.rootB)
	io.ReadFull(dev, got)
	dev.Close()
	if !bytes.Equal(got, want) {
		t.Error("root-b does not hold the root image")
	}
	esp := filepath.Join(d.host, layout.ESPMount)
	if k, _ := os.ReadFile(filepath.Join(esp, bls.KernelPath("b"))); string(k) != "kernel 1.1.0" {
		t.Errorf("slot b kernel %q", k)
	}
	slots, _ := d.node().Chain.Slots()
	if slots[1].State != bootslot.Trying || slots[1].TriesLeft != bootslot.DefaultTries || !slots[1].Next || slots[1].Version != "1.1.0" {
		t.Errorf("slot b: %+v", slots[1])
	}
	opts := strings.Join(slots[1].Options, " ")
	if !strings.Contains(opts, "console=ttyS0 quiet ") || !strings.Contains(opts, verity.CmdlineRootHash+"="+f.m.Verity.RootHash) {
		t.Errorf("slot b options %q", opts)
	}
	for _, l := range []string{"step 1/4", "root image 100%", "step 2/4", "step 3/4", "step 4/4"} {
		if !strings.Contains(out.String(), l) {
			t.Errorf("progress lacks %q:\n%s", l, out.String())
		}
	}
}

// TestRefusedBeforeAnyWrite: every bad release, and every release the
// policy refuses, leaves root-b and the ESP exactly as they were.
func TestRefusedBeforeAnyWrite(t *testing.T) {
	d := newDisk(t)
	good := newFixture(t, "1.1.0", runtime.GOARCH)
	keys := []ed25519.PublicKey{good.pub}
	bundle := good.bundle(t)
	head := bytes.Index(bundle, []byte("}")) // inside the signed envelope
	flip := func(b []byte, at int) []byte { c := bytes.Clone(b); c[at] ^= 0x40; return c }
	partStart := func(name string) int {
		off := len(bundle)
		for i := len(good.m.Parts) - 1; i >= 0; i-- {
			off -= int(good.m.Parts[i].Size)
			if good.m.Parts[i].Name == name {
				return off
			}
		}
		t.Fatalf("no part %s", name)
		return 0
	}
	other := newFixture(t, "1.1.0", runtime.GOARCH) // another key
	arm := newFixture(t, "1.1.0", "riscv64")
	armKeys := []ed25519.PublicKey{arm.pub}

	// An HTTP server that dies half-way through the bundle.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bundle)))
		w.Write(bundle[:len(bundle)/2])
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close()
	})}
	go srv.Serve(l)
	defer srv.Close()

	before := d.fingerprint(t)
	stage := filepath.Join(d.host, "var/lib/kestrel/upgrade-staging")
	os.MkdirAll(stage, 0o700)
	for _, tc := range []struct {
		name   string
		bundle []byte // served from a file; empty: use src
		src    string
		keys   []ed25519.PublicKey
		policy Options
		node   func(n Node) Node
		want   string
	}{
		{name: "byte flipped in the manifest", bundle: flip(bundle, head-10), keys: keys, want: ""},
		{name: "byte flipped in the kernel", bundle: flip(bundle, partStart(release.PartKernel)+1), keys: keys, want: "vmlinuz"},
		{name: "byte flipped in the initramfs", bundle: flip(bundle, partStart(release.PartInitrd)+1), keys: keys, want: "initrd"},
		{name: "byte flipped in the root image", bundle: flip(bundle, len(bundle)-5), keys: keys, want: "rootfs"},
		{name: "truncated", bundle: bundle[:len(bundle)-100], keys: keys, want: ""},
		{name: "signed by another key", bundle: other.bundle(t), keys: keys, want: ""},
		{name: "HTTP dies mid-stream", src: "http://" + l.Addr().String() + "/b", keys: keys, want: ""},
		{name: "another arch", bundle: arm.bundle(t), keys: armKeys, want: "riscv64"},
		{name: "the running version", bundle: bundle, keys: keys, node: func(n Node) Node { n.Version = "1.1.0"; return n }, want: "already running"},
		{name: "a release this node rolled back from", bundle: bundle, keys: keys, node: func(n Node) Node {
			os.MkdirAll(filepath.Join(n.Host, filepath.Dir(badrelease.Path)), 0o755)
			os.WriteFile(filepath.Join(n.Host, badrelease.Path), []byte(`[{"version":"1.1.0","slot":"b"}]`), 0o644)
			t.Cleanup(func() { os.Remove(filepath.Join(n.Host, badrelease.Path)) })
			return n
		}, want: "rolled back from release 1.1.0"},
		{name: "a downgrade", bundle: bundle, keys: keys, node: func(n Node) Node { n.Version = "2.0.0"; return n }, want: "downgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == "" {
				src = filepath.Join(t.TempDir(), "bundle")
				os.WriteFile(src, tc.bundle, 0o644)
			}
			n := d.node()
			if tc.node != nil {
				n = tc.node(n)
			}
			rel, err := release.OpenBundle(context.Background(), src, tc.keys, stage)
			if err == nil {
				_, err = Apply(context.Background(), n, rel, tc.policy)
				rel.Close()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if got := d.fingerprint(t); got != before {
				t.Fatalf("root-b or the ESP changed (%v)", err)
			}
			if des, _ := os.ReadDir(stage); len(des) != 0 {
				t.Errorf("staging left %d entries", len(des))
			}
		})
	}
}

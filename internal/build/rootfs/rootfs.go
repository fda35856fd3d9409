// Package rootfs assembles Kestrel's read-only root filesystem as a
// directory tree on the host and packs it into a squashfs image with
// mksquashfs (squashfs-tools).
//
// The tree holds the kestrel binary (as /usr/bin/kestrel and /sbin/init),
// busybox-static with a symlink per applet, the overlay/ files, the CA
// bundle, os-release rendered from its template, the empty mount points
// stage 1 and stage 2 mount over, and whatever the caller adds (kernel
// modules). Everything in the squashfs belongs to root (-all-root) and
// carries one fixed timestamp, so the same tree gives the same bytes.
//
// Limits: no device nodes, no xattrs/capabilities, no per-file ownership
// (a file that must belong to another user has to be chowned at run time);
// go-diskfs's squashfs writer is deliberately not used, it corrupts trees
// past a few hundred entries.
package rootfs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/kestrel-os/kestrel/internal/layout"
)

// MountPoints are the empty directories the rootfs carries so that stage 1
// and stage 2 can mount over them on a read-only root.
var MountPoints = []string{
	"/proc", "/sys", "/dev", "/run", "/tmp", "/var", "/home", "/root",
	layout.StateMount, layout.ESPMount, "/etc", "/mnt",
}

// privateFiles are overlay files whose mode git cannot carry.
var privateFiles = map[string]os.FileMode{"/etc/shadow": 0o600}

// Spec is what goes into the tree.
type Spec struct {
	// Kestrel is the host path of the kestrel binary for the target.
	Kestrel string
	// Busybox is the host path of a static busybox for the target.
	Busybox string
	// Applets are busybox applet paths ("/bin/ls", "/usr/bin/env"), as
	// `busybox --list-full` prints them; each becomes a symlink to
	// /bin/busybox unless the path is already taken (kestrel's /sbin/init).
	Applets []string
	// Overlay is a directory copied verbatim over the tree; its
	// etc/os-release is a text/template rendered with OSRelease.
	Overlay string
	// CABundle is the host path of the PEM CA bundle installed as
	// /etc/ssl/certs/ca-certificates.crt.
	CABundle string
	// OSRelease fills the os-release template.
	OSRelease OSRelease
}

// OSRelease are the fields of the os-release template.
type OSRelease struct {
	Version string // Kestrel release, e.g. 0.1.0
	Arch    string // target name, e.g. amd64
	Kernel  string // kernel release, e.g. 6.1.0-50-amd64
}

// CABundlePath is where the CA bundle goes in the rootfs (the path Go's
// crypto/x509, curl and k3s look at first on Linux).
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// Assemble builds the tree in dir, which must not exist or be empty.
func Assemble(spec Spec, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	for _, mp := range MountPoints {
		perm := os.FileMode(0o755)
		switch mp {
		case "/tmp":
			perm = 0o777 | os.ModeSticky
		case "/root":
			perm = 0o700
		}
		if err := mkdir(dir, mp, perm); err != nil {
			return err
		}
	}
	if spec.Overlay != "" {
		if err := copyTree(spec.Overlay, dir); err != nil {
			return fmt.Errorf("rootfs: overlay %s: %w", spec.Overlay, err)
		}
		if err := renderOSRelease(dir, spec.OSRelease); err != nil {
			return err
		}
		// git keeps no permission bits but x: restore the ones that matter.
		for name, perm := range privateFiles {
			if err := os.Chmod(filepath.Join(dir, name), perm); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("rootfs: %w", err)
			}
		}
	}
	if err := CopyFile(spec.Kestrel, filepath.Join(dir, layout.KestrelBin), 0o755); err != nil {
		return fmt.Errorf("rootfs: kestrel: %w", err)
	}
	if err := symlink(dir, layout.SbinInit, layout.KestrelBin); err != nil {
		return err
	}
	if err := CopyFile(spec.Busybox, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return fmt.Errorf("rootfs: busybox: %w", err)
	}
	for _, a := range spec.Applets {
		a = path.Clean("/" + a)
		if a == "/bin/busybox" || a == "/linuxrc" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, a)); err == nil {
			continue // kestrel owns it (e.g. /sbin/init)
		}
		if err := symlink(dir, a, "/bin/busybox"); err != nil {
			return err
		}
	}
	if spec.CABundle != "" {
		if err := CopyFile(spec.CABundle, filepath.Join(dir, CABundlePath), 0o644); err != nil {
			return fmt.Errorf("rootfs: CA bundle: %w", err)
		}
	}
	return nil
}

// renderOSRelease executes the overlay's etc/os-release as a template.
func renderOSRelease(dir string, v OSRelease) error {
	p := filepath.Join(dir, layout.OSRelease)
	src, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return fmt.Errorf("rootfs: overlay has no %s template", layout.OSRelease)
	}
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	tmpl, err := template.New("os-release").Option("missingkey=error").Parse(string(src))
	if err != nil {
		return fmt.Errorf("rootfs: os-release template: %w", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, v); err != nil {
		return fmt.Errorf("rootfs: os-release template: %w", err)
	}
	return os.WriteFile(p, out.Bytes(), 0o644)
}

// BusyboxApplets runs `busybox --list-full` and returns the applet paths.
// The binary must be runnable on the host: for a foreign-arch target pass
// the host's busybox-static of the same Debian version (same applet set).
func BusyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	var applets []string
	for _, l := range strings.Fields(string(out)) {
		applets = append(applets, "/"+l)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full: no applets", busybox)
	}
	return applets, nil
}

// SquashOptions tune mksquashfs.
type SquashOptions struct {
	// Compression is "xz" or "zstd".
	Compression string
	// BCJ is the xz branch filter for executables ("x86", "arm",
	// "armthumb"); empty for none. Ignored for zstd.
	BCJ string
	// Time is the fixed timestamp of every inode and of the filesystem.
	Time int64
}

// BlockSize is the squashfs block size, mksquashfs's default and the
// kernel's default readahead (read_ahead_kb 128). Squashfs decompresses
// a whole block to serve any page of it, and the kernel reads a file in
// readahead windows of 128 KiB, and an executable's page faults in
// windows around the fault: with 1 MiB blocks most windows decompressed
// the same block again. Measured under qemu with instruction counting
// (test/vm's ICount): a cold read of the 12 MiB kestrel binary through
// dm-verity took 1.82 s with 1 MiB blocks, 0.60 s with 256 KiB and
// 0.43 s with 128 KiB; the boot's ready line came 0.12 s sooner (medians
// of 3). The cost is size: the zstd -19 rootfs grew from 8.8 to 9.5 MiB
// (256 KiB: 9.2). Smaller blocks are slower again: stage 2's start took
// 0.54 s with 64 KiB and 0.58 s with 32 KiB, against 0.49 s.
const BlockSize = "128K"

// args returns mksquashfs's arguments after source and destination.
func (o SquashOptions) args() []string {
	t := strconv.FormatInt(o.Time, 10)
	args := []string{"-noappend", "-all-root", "-no-progress", "-quiet",
		"-mkfs-time", t, "-all-time", t, "-b", BlockSize, "-comp", o.Compression}
	switch o.Compression {
	case "xz":
		if o.BCJ != "" {
			args = append(args, "-Xbcj", o.BCJ)
		}
	case "zstd":
		args = append(args, "-Xcompression-level", "19")
	}
	return args
}

// Squash packs dir into the squashfs image out. When cacheDir is not
// empty, an image of an identical tree made with identical options is
// reused from there instead of running mksquashfs again.
func Squash(dir, out string, opts SquashOptions, cacheDir string) error {
	var cached string
	if cacheDir != "" {
		digest, err := TreeDigest(dir)
		if err != nil {
			return err
		}
		key := sha256.Sum256([]byte(digest + "\x00" + strings.Join(opts.args(), " ")))
		cached = filepath.Join(cacheDir, hex.EncodeToString(key[:12])+".squashfs")
		if _, err := os.Stat(cached); err == nil {
			now := time.Now()
			os.Chtimes(cached, now, now) // most recently used: kept longest
			return CopyFile(cached, out, 0o644)
		}
	}
	args := append([]string{dir, out}, opts.args()...)
	cmd := exec.Command("mksquashfs", args...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mksquashfs %s: %w\n%s", dir, err, msg)
	}
	if cached != "" {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			return fmt.Errorf("squashfs cache: %w", err)
		}
		if err := CopyFile(out, cached, 0o644); err != nil {
			return fmt.Errorf("squashfs cache: %w", err)
		}
		pruneCache(cacheDir, squashCacheKeep)
	}
	return nil
}

// squashCacheKeep is how many squashfs images the cache keeps: a few
// versions and targets, not every build ever made.
const squashCacheKeep = 6

// pruneCache removes all but the keep most recently used images.
func pruneCache(dir string, keep int) {
	entries, _ := filepath.Glob(filepath.Join(dir, "*.squashfs"))
	type aged struct {
		path string
		mod  time.Time
	}
	var files []aged
	for _, e := range entries {
		if st, err := os.Stat(e); err == nil {
			files = append(files, aged{e, st.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].mod.After(files[j].mod) })
	for i := keep; i < len(files); i++ {
		os.Remove(files[i].path)
	}
}

// TreeDigest hashes what mksquashfs -all-root would store of a tree: every
// path, its type and permission bits, symlink targets and file contents.
func TreeDigest(dir string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", dir, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("digest %s: %w", dir, err)
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s\x00%o\x00", rel, st.Mode())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return "", fmt.Errorf("digest %s: %w", dir, err)
			}
			io.WriteString(h, target)
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return "", fmt.Errorf("digest %s: %w", dir, err)
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("digest %s: %w", dir, err)
			}
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mkdir(root, name string, perm os.FileMode) error {
	p := filepath.Join(root, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	// Chmod after MkdirAll: the umask must not strip the sticky bit of /tmp.
	if err := os.Chmod(p, perm); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

func symlink(root, name, target string) error {
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Symlink(target, p); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return nil
}

// CopyFile copies src to dst with mode perm, creating parents, through a
// temporary file so that a reader never sees half a file.
func CopyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name()) // fails harmlessly after the rename
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(out.Name(), perm); err != nil {
		return err
	}
	return os.Rename(out.Name(), dst)
}

// copyTree copies src's files, directories and symlinks into dst, keeping
// permission bits; a top-level README.md is left out.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "README.md" {
			return nil // documents the overlay, is not part of it
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return mkdir(dst, rel, info.Mode().Perm()|info.Mode()&fs.ModeSticky)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			return CopyFile(p, target, info.Mode().Perm())
		}
		return fmt.Errorf("%s: unsupported file type %v", p, info.Mode().Type())
	})
}

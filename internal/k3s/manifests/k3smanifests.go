// Package manifests delivers the upgrade controller to k3s: its
// manifests (manifests/upgrade-controller/*.yaml) and, when the build
// ships it, its container image, in two steps:
//
//   - on the build host, Ship copies the manifests into the rootfs tree at
//     ShippedDir, with the controller image reference stamped in (the
//     builder puts the image, a docker-archive, at ShippedImageDir);
//   - on the node, Install copies the manifests into k3s's auto-deploy
//     directory (K3sDir) when the node is a k3s server, and InstallImage
//     the image into k3s's airgap image directory (ImagesDir) on every k3s
//     node, unless the config turns the controller off
//     (kestrel.k3s.upgrade_controller: false); then they remove the copies
//     they placed there before.
//
// Copies are named Prefix+<name> so that k3s's Addon objects (named after
// the file's base name) cannot collide with other manifests. What was
// placed is recorded, with each file's sha256, in RecordFile on the state
// partition; removal touches only recorded files whose content is still
// what was written. A file the operator edited is left in place (and
// reported), and so is anything kestrel did not write. As with k3s's own
// packaged manifests, a "<file>.skip" next to a copy's name keeps it from
// being (re)written.
//
// Limits: k3s's data dir is assumed to be the default /var/lib/rancher/k3s
// (a --data-dir in kestrel.k3s.args is not followed); whether removing a
// manifest also deletes its objects from the cluster is k3s's business
// (recent k3s releases delete the Addon's objects, older ones leave them),
// and a removed image stays in containerd until pruned; only *.yaml
// manifests and *.tar images are shipped, flat (no subdirectories); a
// copy of 1 MiB or more (the image) whose size and mtime are as recorded
// is taken as unchanged without hashing, and a shipped file with a
// SumSuffix sidecar is not hashed either, so normal boots read neither.
package manifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
)

// Paths, absolute on the node (joined to a root in the functions below).
const (
	// ShippedDir holds the manifests in the read-only rootfs.
	ShippedDir = "/usr/share/kestrel/manifests/upgrade-controller"
	// K3sDir is k3s's auto-deploy directory on servers.
	K3sDir = "/var/lib/rancher/k3s/server/manifests"
	// ImagesDir is k3s's airgap image directory (imported at start).
	ImagesDir = "/var/lib/rancher/k3s/agent/images"
	// ShippedImageDir holds the controller image (a docker-archive,
	// image.tar) in the rootfs, when the build put it there.
	ShippedImageDir = "/usr/share/kestrel/images/upgrade-controller"
	// ImageName is the controller image's file name in ShippedImageDir.
	ImageName = "image.tar"
	// RecordFile lists the copies Install and InstallImage placed (on the
	// state partition, so it survives reboots and upgrades).
	RecordFile = "/var/lib/kestrel/k3s-manifests.json"
	// Prefix starts the name of every copy placed in K3sDir or ImagesDir.
	Prefix = "kestrel-upgrade-controller-"
	// ImagePlaceholder is the controller image reference in the
	// repository's Deployment; Ship replaces it with the build's.
	ImagePlaceholder = "kestrel/upgrade-controller:dev"
)

// Ship copies srcDir/*.yaml into rootDir+ShippedDir, replacing
// ImagePlaceholder with image (when image is not empty). It fails when
// srcDir has no manifest or, with an image given, no manifest names the
// placeholder: a renamed placeholder must not ship a stale reference.
func Ship(srcDir, rootDir, image string) error {
	names, err := files(srcDir, ".yaml")
	if err != nil {
		return fmt.Errorf("ship manifests: %w", err)
	}
	if len(names) == 0 {
		return fmt.Errorf("ship manifests: no *.yaml in %s", srcDir)
	}
	dst := filepath.Join(rootDir, ShippedDir)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("ship manifests: %w", err)
	}
	stamped := false
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(srcDir, n))
		if err != nil {
			return fmt.Errorf("ship manifests: %w", err)
		}
		if image != "" && bytes.Contains(data, []byte(ImagePlaceholder)) {
			data = bytes.ReplaceAll(data, []byte(ImagePlaceholder), []byte(image))
			stamped = true
		}
		if err := os.WriteFile(filepath.Join(dst, n), data, 0o644); err != nil {
			return fmt.Errorf("ship manifests: %w", err)
		}
	}
	if image != "" && !stamped {
		return fmt.Errorf("ship manifests: no manifest in %s names the image %s to stamp", srcDir, ImagePlaceholder)
	}
	return nil
}

// Enabled says whether a node with config c gets the manifests: it runs
// k3s as a server and kestrel.k3s.upgrade_controller is not false. A nil
// config is the defaults (a server, manifests on).
func Enabled(c *config.Config) bool {
	return ImageEnabled(c) && (c == nil || c.Kestrel.K3sSettings().Role == "server")
}

// ImageEnabled says whether a node with config c imports the shipped
// controller image: kestrel.k3s.upgrade_controller is not false. Agents
// import it too, since the controller's pod may be scheduled on any node.
func ImageEnabled(c *config.Config) bool {
	if c == nil {
		return true
	}
	k := c.Kestrel.K3sSettings()
	return k.UpgradeController == nil || *k.UpgradeController
}

// Apply is the stage-2 network-up step (cmd/kestrel wires it as a hook,
// before k3s starts): Install(root, Enabled(cfg())) and
// InstallImage(root, ImageEnabled(cfg())). An image without k3s is left
// alone, and so are k3s's directories when cfg returns nil (no merged
// config: better to change nothing than to act on defaults the operator
// may have overridden).
func Apply(root string, cfg func() *config.Config) error {
	if _, err := os.Stat(filepath.Join(root, fetch.RootfsBinary)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c := cfg()
	if c == nil {
		return fmt.Errorf("k3s manifests: no merged config, %s and %s left as they are", K3sDir, ImagesDir)
	}
	return errors.Join(Install(root, Enabled(c)), InstallImage(root, ImageEnabled(c)))
}

// Install brings root+K3sDir in line with enabled: when enabled, every
// shipped manifest is written there as Prefix+<name> (unless a .skip file
// says otherwise) and copies of manifests no longer shipped are removed;
// when not, every copy Install placed earlier is removed. Only files
// recorded in RecordFile with unchanged content are ever removed or
// overwritten.
func Install(root string, enabled bool) error {
	return place(root, manifests, enabled)
}

// InstallImage does what Install does for the controller image shipped in
// ShippedImageDir (when the build put one there) and k3s's airgap image
// directory ImagesDir, which k3s imports from when it starts.
func InstallImage(root string, enabled bool) error {
	return place(root, image, enabled)
}

// A kind of shipped file and where its copies go.
type kind struct {
	what     string
	src, dst string // node paths
	ext      string
	required bool // an enabled node with none shipped is an error
}

var (
	manifests = kind{what: "k3s manifests", src: ShippedDir, dst: K3sDir, ext: ".yaml", required: true}
	image     = kind{what: "controller image", src: ShippedImageDir, dst: ImagesDir, ext: ".tar"}
)

// record is RecordFile's content: node path of each copy placed -> what
// was written.
type record struct {
	Files map[string]entry `json:"files"`
}

// entry is one copy: its sha256, and its size and mtime when written, so
// that a large copy (at least statTrust bytes) whose size and mtime did
// not change is not hashed again at every boot.
type entry struct {
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
}

// statTrust is the size from which a copy with its recorded size and
// mtime counts as unchanged without being hashed. Small files are always
// hashed: file times are coarse, and a test (or a quick operator) can
// rewrite one within the same tick.
const statTrust = 1 << 20

// SumSuffix names the sidecar of a shipped file holding its sha256
// (`sha256sum` format), written by the builder (WriteSum) so that the node
// need not hash a large shipped file at every boot.
const SumSuffix = ".sha256"

func place(root string, k kind, enabled bool) error {
	p := func(s string) string { return filepath.Join(root, s) }
	rec, err := readRecord(p(RecordFile))
	if err != nil {
		return fmt.Errorf("%s: %w", k.what, err)
	}
	want := map[string]string{} // node path of the copy -> node path of the source
	if enabled {
		names, err := files(p(k.src), k.ext)
		if err != nil {
			return fmt.Errorf("%s: %w", k.what, err)
		}
		if len(names) == 0 && k.required {
			return fmt.Errorf("%s: none shipped in %s", k.what, k.src)
		}
		for _, n := range names {
			want[path.Join(k.dst, Prefix+n)] = path.Join(k.src, n)
		}
	}

	var errs []error
	// Remove what was placed and is no longer wanted.
	for _, n := range sortedKeys(rec.Files) {
		if _, keep := want[n]; keep || path.Dir(n) != k.dst {
			continue
		}
		switch cur, err := copySum(p(n), rec.Files[n]); {
		case errors.Is(err, fs.ErrNotExist):
			delete(rec.Files, n)
		case err != nil:
			errs = append(errs, err)
		case cur != rec.Files[n].SHA256:
			errs = append(errs, fmt.Errorf("%s was changed since kestrel wrote it: left in place", p(n)))
			delete(rec.Files, n)
		default:
			if err := os.Remove(p(n)); err != nil {
				errs = append(errs, err)
			} else {
				delete(rec.Files, n)
			}
		}
	}
	// Write what is wanted.
	for _, n := range sortedKeys(want) {
		if _, err := os.Stat(p(n) + ".skip"); err == nil {
			continue // left as it is, still recorded if it was ours
		}
		sum, err := sourceSum(p(want[n]))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur, err := copySum(p(n), rec.Files[n])
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
			continue
		case cur == sum:
			if err := rec.put(n, p(n), sum); err != nil {
				errs = append(errs, err)
			}
			continue
		case cur != rec.Files[n].SHA256:
			errs = append(errs, fmt.Errorf("%s exists and is not what kestrel wrote there: left in place (remove it, or add %s.skip)", p(n), path.Base(n)))
			continue
		}
		if err := copyFile(p(want[n]), p(n), sum); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := rec.put(n, p(n), sum); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writeRecord(p(RecordFile), rec); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", k.what, err)
	}
	return nil
}

func readRecord(file string) (record, error) {
	rec := record{Files: map[string]entry{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", file, err)
	}
	if rec.Files == nil {
		rec.Files = map[string]entry{}
	}
	for n := range rec.Files {
		dir := path.Dir(n)
		if dir != K3sDir && dir != ImagesDir || !strings.HasPrefix(path.Base(n), Prefix) || path.Clean(n) != n {
			return rec, fmt.Errorf("%s: unexpected entry %q", file, n)
		}
	}
	return rec, nil
}

func writeRecord(file string, rec record) error {
	if len(rec.Files) == 0 {
		if err := os.Remove(file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(file, append(data, '\n'), 0o644, atomicfile.NoChown, atomicfile.NoChown)
}

// files lists dir's regular files named *ext, sorted; a missing dir has
// none.
func files(dir, ext string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ext) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// copyFile streams src to dst through a temporary file renamed into place
// (mode 0644), checking that what was copied has sha256 sum.
func copyFile(src, dst, sum string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("copy %s to %s: its content has sha256 %s, want %s (changed while copied, or a wrong %s)", src, dst, got, sum, SumSuffix)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return err
	}
	return nil
}

// put records the copy at file (node path n) with sum.
func (r record) put(n, file, sum string) error {
	fi, err := os.Stat(file)
	if err != nil {
		return err
	}
	r.Files[n] = entry{SHA256: sum, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	return nil
}

// copySum is the sha256 of a copy: the recorded one when the copy is large
// and its size and mtime are as recorded, else hashed.
func copySum(file string, e entry) (string, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	if e.SHA256 != "" && fi.Size() >= statTrust && fi.Size() == e.Size && fi.ModTime().UnixNano() == e.MtimeNs {
		return e.SHA256, nil
	}
	return fileSum(file)
}

// sourceSum is the sha256 of a shipped file: its SumSuffix sidecar's when
// the builder wrote one (the rootfs is read-only), else hashed.
func sourceSum(file string) (string, error) {
	data, err := os.ReadFile(file + SumSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return fileSum(file)
	}
	if err != nil {
		return "", err
	}
	if f := strings.Fields(string(data)); len(f) > 0 && len(f[0]) == 64 {
		if _, err := hex.DecodeString(f[0]); err == nil {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("%s%s: not a sha256 line", file, SumSuffix)
}

// WriteSum writes file's SumSuffix sidecar (on the build host).
func WriteSum(file string) error {
	sum, err := fileSum(file)
	if err != nil {
		return err
	}
	return os.WriteFile(file+SumSuffix, []byte(sum+"  "+filepath.Base(file)+"\n"), 0o644)
}

func fileSum(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

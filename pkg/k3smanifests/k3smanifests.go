// Package k3smanifests delivers the upgrade controller's manifests
// (manifests/upgrade-controller/*.yaml) to k3s, in two steps:
//
//   - on the build host, Ship copies them into the rootfs tree at
//     ShippedDir, with the controller image reference stamped in;
//   - on the node, Install copies them into k3s's auto-deploy directory
//     (K3sDir) when the node is a k3s server and the config does not turn
//     them off (kestrel.k3s.upgrade_controller: false), and otherwise
//     removes the copies it placed there before.
//
// Installed files are named Prefix+<name> so that k3s's Addon objects
// (named after the file's base name) cannot collide with other manifests.
// What Install wrote is recorded, with each file's sha256, in RecordFile
// on the state partition; removal touches only recorded files whose
// content is still what Install wrote. A file the operator edited is left
// in place (and reported), and so is anything Install did not write. As
// with k3s's own packaged manifests, a "<file>.skip" next to an installed
// name keeps Install from (re)writing that file.
//
// Limits: k3s's data dir is assumed to be the default /var/lib/rancher/k3s
// (a --data-dir in kestrel.k3s.args is not followed); whether removing a
// file also deletes its objects from the cluster is k3s's business (recent
// k3s releases delete the Addon's objects, older ones leave them); only
// *.yaml files are shipped, flat (no subdirectories).
package k3smanifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kestrel-os/kestrel/pkg/atomicfile"
	"github.com/kestrel-os/kestrel/pkg/config"
	"github.com/kestrel-os/kestrel/pkg/k3sfetch"
)

// Paths, absolute on the node (joined to a root in the functions below).
const (
	// ShippedDir holds the manifests in the read-only rootfs.
	ShippedDir = "/usr/share/kestrel/manifests/upgrade-controller"
	// K3sDir is k3s's auto-deploy directory on servers.
	K3sDir = "/var/lib/rancher/k3s/server/manifests"
	// RecordFile lists what Install placed in K3sDir (on the state
	// partition, so it survives reboots and upgrades).
	RecordFile = "/var/lib/kestrel/k3s-manifests.json"
	// Prefix starts the name of every file Install places in K3sDir.
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
	names, err := yamlFiles(srcDir)
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
	if c == nil {
		return true
	}
	k := c.Kestrel.K3sSettings()
	if k.UpgradeController != nil && !*k.UpgradeController {
		return false
	}
	return k.Role == "server"
}

// Apply is the stage-2 network-up step (cmd/kestrel wires it as a
// hook): Install(root, Enabled(cfg())). An image without k3s is left
// alone, and so is the k3s directory when cfg returns nil (no merged
// config: better to change nothing than to act on defaults the operator
// may have overridden).
func Apply(root string, cfg func() *config.Config) error {
	if _, err := os.Stat(filepath.Join(root, k3sfetch.RootfsBinary)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c := cfg()
	if c == nil {
		return fmt.Errorf("k3s manifests: no merged config, %s left as it is", K3sDir)
	}
	return Install(root, Enabled(c))
}

// record is RecordFile's content: installed name -> sha256 of what was
// written.
type record struct {
	Files map[string]string `json:"files"`
}

// Install brings root+K3sDir in line with enabled: when enabled, every
// shipped manifest is written there as Prefix+<name> (unless a .skip file
// says otherwise) and copies of manifests no longer shipped are removed;
// when not, every copy Install placed earlier is removed. Only files
// recorded in RecordFile with unchanged content are ever removed or
// overwritten.
func Install(root string, enabled bool) error {
	dir := filepath.Join(root, K3sDir)
	recPath := filepath.Join(root, RecordFile)
	rec, err := readRecord(recPath)
	if err != nil {
		return err
	}
	want := map[string][]byte{}
	if enabled {
		src := filepath.Join(root, ShippedDir)
		names, err := yamlFiles(src)
		if err != nil {
			return fmt.Errorf("k3s manifests: %w", err)
		}
		if len(names) == 0 {
			return fmt.Errorf("k3s manifests: none shipped in %s", src)
		}
		for _, n := range names {
			data, err := os.ReadFile(filepath.Join(src, n))
			if err != nil {
				return fmt.Errorf("k3s manifests: %w", err)
			}
			want[Prefix+n] = data
		}
	}

	var errs []error
	next := record{Files: map[string]string{}}
	// Remove what was placed and is no longer wanted.
	for _, n := range sortedKeys(rec.Files) {
		if _, keep := want[n]; keep {
			continue
		}
		p := filepath.Join(dir, n)
		switch cur, err := fileSum(p); {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
			next.Files[n] = rec.Files[n]
		case cur != rec.Files[n]:
			errs = append(errs, fmt.Errorf("%s was changed since kestrel wrote it: left in place", p))
		default:
			if err := os.Remove(p); err != nil {
				errs = append(errs, err)
				next.Files[n] = rec.Files[n]
			}
		}
	}
	// Write what is wanted.
	if len(want) > 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("k3s manifests: %w", err)
		}
	}
	for _, n := range sortedKeys(want) {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p + ".skip"); err == nil {
			if old, placed := rec.Files[n]; placed {
				next.Files[n] = old // still ours, left as it is
			}
			continue
		}
		sum := sha256Hex(want[n])
		cur, err := fileSum(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
			continue
		case cur == sum:
			next.Files[n] = sum
			continue
		case cur != rec.Files[n]:
			errs = append(errs, fmt.Errorf("%s exists and is not what kestrel wrote there: left in place (remove it, or add %s.skip)", p, n))
			continue
		}
		if err := atomicfile.Write(p, want[n], 0o644, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			errs = append(errs, err)
			continue
		}
		next.Files[n] = sum
	}
	if err := writeRecord(recPath, next); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("k3s manifests: %w", err)
	}
	return nil
}

func readRecord(path string) (record, error) {
	rec := record{Files: map[string]string{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("k3s manifests: %w", err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("k3s manifests: %s: %w", path, err)
	}
	if rec.Files == nil {
		rec.Files = map[string]string{}
	}
	for n := range rec.Files {
		if !strings.HasPrefix(n, Prefix) || n != filepath.Base(n) {
			return rec, fmt.Errorf("k3s manifests: %s: unexpected entry %q", path, n)
		}
	}
	return rec, nil
}

func writeRecord(path string, rec record) error {
	if len(rec.Files) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o644, atomicfile.NoChown, atomicfile.NoChown)
}

// yamlFiles lists dir's regular *.yaml files, sorted; a missing dir has
// none.
func yamlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".yaml") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func fileSum(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return sha256Hex(data), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

package k3sservice

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/pkg/atomicfile"
	"github.com/kestrel-os/kestrel/pkg/k3sfetch"
)

// Where manifests come from and go to.
const (
	// ShippedManifestsDir holds the manifests the image ships for k3s's
	// auto-deploy (the upgrade controller), read-only in the rootfs.
	ShippedManifestsDir = "/usr/lib/kestrel/k3s/manifests"
	// ServerManifestsDir is k3s's auto-deploy directory (on the state
	// partition through /var).
	ServerManifestsDir = "/var/lib/rancher/k3s/server/manifests"
)

// placeManifests copies the shipped *.yaml/*.yml/*.json manifests into
// k3s's auto-deploy directory when the node is a server and enabled is
// true, and removes the copies when it is false (so turning
// kestrel.k3s.upgrade_controller off takes the file away; what k3s already
// deployed stays, as k3s leaves it). Agents deploy nothing. It returns the
// names it placed.
func placeManifests(root, role string, enabled bool) ([]string, error) {
	src := filepath.Join(root, ShippedManifestsDir)
	entries, err := os.ReadDir(src)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	dst := filepath.Join(root, ServerManifestsDir)
	var placed []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !isManifest(name) {
			continue
		}
		target := filepath.Join(dst, name)
		if role != "server" || !enabled {
			if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
				return placed, fmt.Errorf("manifests: %w", err)
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return placed, fmt.Errorf("manifests: %w", err)
		}
		if err := atomicfile.Write(target, data, 0o600, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			return placed, fmt.Errorf("manifests: %w", err)
		}
		placed = append(placed, name)
	}
	return placed, nil
}

func isManifest(name string) bool {
	for _, ext := range []string{".yaml", ".yml", ".json"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// linkAirgapImages makes each image tarball the rootfs carries
// (k3sfetch.RootfsAirgapDir) visible in k3s's import directory
// (k3sfetch.AgentImagesDir) as a symlink, so the state partition holds no
// copy and an OS upgrade brings its own images. Links into the rootfs
// directory whose target is gone (left by an older release) are removed.
// It returns the names it linked.
func linkAirgapImages(root string) ([]string, error) {
	src := filepath.Join(root, k3sfetch.RootfsAirgapDir)
	dst := filepath.Join(root, k3sfetch.AgentImagesDir)
	if old, err := os.ReadDir(dst); err == nil {
		for _, e := range old {
			p := filepath.Join(dst, e.Name())
			t, err := os.Readlink(p)
			if err != nil || !strings.HasPrefix(t, k3sfetch.RootfsAirgapDir+"/") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, t)); os.IsNotExist(err) {
				os.Remove(p)
			}
		}
	}
	entries, err := os.ReadDir(src)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("airgap images: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("airgap images: %w", err)
	}
	var linked []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		target := filepath.Join(k3sfetch.RootfsAirgapDir, e.Name()) // as seen on the node
		link := filepath.Join(dst, e.Name())
		if t, err := os.Readlink(link); err == nil && t == target {
			linked = append(linked, e.Name())
			continue
		}
		if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
			return linked, fmt.Errorf("airgap images: %w", err)
		}
		if err := os.Symlink(target, link); err != nil {
			return linked, fmt.Errorf("airgap images: %w", err)
		}
		linked = append(linked, e.Name())
	}
	return linked, nil
}

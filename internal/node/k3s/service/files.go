package service

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/k3s/fetch"
)

// linkAirgapImages makes each image tarball the rootfs carries
// (k3sfetch.RootfsAirgapDir) visible in k3s's import directory
// (k3sfetch.AgentImagesDir) as a symlink, so the state partition holds no
// copy and an OS upgrade brings its own images. Links into the rootfs
// directory whose target is gone (left by an older release) are removed.
// It returns the names it linked.
func linkAirgapImages(root string) ([]string, error) {
	src := filepath.Join(root, fetch.RootfsAirgapDir)
	dst := filepath.Join(root, fetch.AgentImagesDir)
	if old, err := os.ReadDir(dst); err == nil {
		for _, e := range old {
			p := filepath.Join(dst, e.Name())
			t, err := os.Readlink(p)
			if err != nil || !strings.HasPrefix(t, fetch.RootfsAirgapDir+"/") {
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
		target := filepath.Join(fetch.RootfsAirgapDir, e.Name()) // as seen on the node
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

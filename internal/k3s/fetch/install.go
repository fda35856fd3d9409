package fetch

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Where k3s goes in the rootfs. The rootfs is read-only at run time, so the
// airgap images tarball is stored under /usr and stage 2 links it into
// AgentImagesDir (on the state partition), where k3s imports it at start.
const (
	RootfsBinary    = "/usr/bin/k3s"
	RootfsAirgapDir = "/usr/lib/kestrel/k3s/images"
	AgentImagesDir  = "/var/lib/rancher/k3s/agent/images"
)

// RootfsLinks are the multi-call names k3s answers to; each is a symlink to
// k3s next to it.
var RootfsLinks = []string{"kubectl", "crictl", "ctr"}

// Install copies res into the rootfs tree at root: the binary to
// root/usr/bin/k3s (0755), the kubectl, crictl and ctr symlinks, and the
// airgap images tarball, when there is one, under RootfsAirgapDir. It
// re-hashes the binary while copying and refuses it when it no longer has
// res.SHA256 (changed between Fetch and Install).
func Install(res Result, root string) error {
	if res.Binary == "" {
		return fmt.Errorf("k3s install: no binary in result")
	}
	dst := filepath.Join(root, RootfsBinary)
	if err := copyFile(res.Binary, dst, 0o755); err != nil {
		return fmt.Errorf("k3s install: %w", err)
	}
	if sum, err := fileSHA256(dst); err != nil {
		return fmt.Errorf("k3s install: %w", err)
	} else if sum != res.SHA256 {
		os.Remove(dst)
		return fmt.Errorf("k3s install: %s changed since it was verified (sha256 %s, verified %s)", res.Binary, sum, res.SHA256)
	}
	for _, name := range RootfsLinks {
		link := filepath.Join(filepath.Dir(dst), name)
		if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("k3s install: %w", err)
		}
		if err := os.Symlink("k3s", link); err != nil {
			return fmt.Errorf("k3s install: %w", err)
		}
	}
	if res.AirgapImages != "" {
		d := filepath.Join(root, RootfsAirgapDir, filepath.Base(res.AirgapImages))
		if err := copyFile(res.AirgapImages, d, 0o644); err != nil {
			return fmt.Errorf("k3s install airgap images: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

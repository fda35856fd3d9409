package pipeline

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/release"
)

// ReleaseManifest is the release manifest of a build (internal/release):
// its kernel, initrd and rootfs partition image as the build manifest
// records them, and the rootfs's verity parameters. Board is the image
// definition's name.
func ReleaseManifest(m *Manifest) (*release.Manifest, error) {
	rm := &release.Manifest{Format: release.Format, Version: m.Version, Arch: m.Arch, Board: m.Target, Verity: m.Verity}
	kinds := map[string]string{release.PartKernel: "kernel", release.PartInitrd: "initrd", release.PartRootfs: "rootfs"}
	for _, name := range release.PartNames {
		a, ok := m.artifact(kinds[name])
		if !ok {
			return nil, fmt.Errorf("release %s-%s: the build lists no %s", m.Version, m.Target, kinds[name])
		}
		rm.Parts = append(rm.Parts, release.Part{Name: name, Size: a.Size, SHA256: a.SHA256})
	}
	if err := rm.Validate(); err != nil {
		return nil, fmt.Errorf("release %s-%s: %w", m.Version, m.Target, err)
	}
	return rm, nil
}

func (m *Manifest) artifact(kind string) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Kind == kind {
			return a, true
		}
	}
	return Artifact{}, false
}

// trustedKeys reads the public key files to bake into the images and
// returns their contents by file name (<key id>.pub, so that two keys
// never collide whatever their files were called).
func trustedKeys(files []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range files {
		pub, err := release.LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("trusted release key: %w", err)
		}
		out[release.KeyID(pub)+".pub"] = release.MarshalPublicKey(pub)
	}
	return out, nil
}

// addTrustedKeys puts the keys at layout.ReleaseKeysDir under root.
func addTrustedKeys(root string, keys map[string][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	dir := filepath.Join(root, layout.ReleaseKeysDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range keys {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// keyPath is a key file' paths inside an image.
func keyPath(name string) string { return path.Join(layout.ReleaseKeysDir, name) }

// signRelease signs the build's release manifest with the private key
// file and writes the envelope to out.
func signRelease(m *Manifest, keyFile, out string) error {
	key, err := release.LoadPrivateKey(keyFile)
	if err != nil {
		return fmt.Errorf("sign release: %w", err)
	}
	rm, err := ReleaseManifest(m)
	if err != nil {
		return err
	}
	env, err := release.Sign(rm, key)
	if err != nil {
		return fmt.Errorf("sign release: %w", err)
	}
	if err := os.WriteFile(out, env, 0o644); err != nil {
		return fmt.Errorf("sign release: %w", err)
	}
	return nil
}

// BundleOptions say which build to bundle.
type BundleOptions struct {
	OutDir, Version, Target string
	// Key is the private key file that signs the bundle's manifest.
	Key string
	// Out is the bundle's path (default <OutDir>/kestrel-<v>-<target>.bundle).
	Out string
}

// BundleName is a bundle's file name.
func BundleName(version, target string) string { return Prefix(version, target) + ".bundle" }

// Bundle writes the signed bundle (internal/release) of the image build
// kestrel-<v>-<target> in o.OutDir, then opens it as a node would (with
// the key's public half) to check it. It returns the bundle's path.
func Bundle(o BundleOptions) (string, error) {
	buildFile := filepath.Join(o.OutDir, Prefix(o.Version, o.Target)+".json")
	data, err := os.ReadFile(buildFile)
	if err != nil {
		return "", fmt.Errorf("bundle: %w (run kestrel-build image first)", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("bundle: %s: %w", buildFile, err)
	}
	rm, err := ReleaseManifest(&m)
	if err != nil {
		return "", fmt.Errorf("bundle: %s: %w", buildFile, err)
	}
	key, err := release.LoadPrivateKey(o.Key)
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	files := map[string]string{}
	for name, kind := range map[string]string{release.PartKernel: "kernel", release.PartInitrd: "initrd", release.PartRootfs: "rootfs"} {
		a, _ := m.artifact(kind)
		files[name] = filepath.Join(o.OutDir, a.Path)
	}
	out := o.Out
	if out == "" {
		out = filepath.Join(o.OutDir, BundleName(o.Version, o.Target))
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = release.WriteBundle(tmp, rm, key, files)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("bundle %s: %w", out, err)
	}
	r, err := release.OpenBundle(context.Background(), tmp.Name(), []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, "")
	if err != nil {
		return "", fmt.Errorf("bundle: check: %w", err)
	}
	r.Close()
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}
	return out, nil
}

package upgradeimage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Verify reads an upgrade image's release layer, checks every artifact
// against manifest.json (size and sha256, nothing missing, nothing extra)
// and returns the manifest. It reads the layers as pulled, so it verifies
// what a node would receive. When sink is not nil it is called for each
// verified-to-be-listed file with its content stream (to extract it); sink
// must consume or ignore the reader before returning.
func Verify(img v1.Image, sink func(name string, r io.Reader) error) (Manifest, error) {
	layers, err := img.Layers()
	if err != nil {
		return Manifest{}, fmt.Errorf("upgrade image: layers: %w", err)
	}
	prefix := strings.TrimPrefix(ReleaseDir, "/") + "/"
	for i := len(layers) - 1; i >= 0; i-- {
		m, found, err := verifyLayer(layers[i], prefix, sink)
		if err != nil {
			return Manifest{}, fmt.Errorf("upgrade image: layer %d: %w", i, err)
		}
		if found {
			return m, nil
		}
	}
	return Manifest{}, fmt.Errorf("upgrade image: no %s/%s in any layer", ReleaseDir, ManifestName)
}

func verifyLayer(l v1.Layer, prefix string, sink func(string, io.Reader) error) (Manifest, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return Manifest{}, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var m *Manifest
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, false, err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if !strings.HasPrefix(name+"/", prefix) || hdr.Typeflag == tar.TypeDir {
			continue
		}
		base := strings.TrimPrefix(name, prefix)
		if hdr.Typeflag != tar.TypeReg {
			return Manifest{}, false, fmt.Errorf("%s is not a regular file", name)
		}
		if base == ManifestName {
			var mm Manifest
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&mm); err != nil {
				return Manifest{}, false, fmt.Errorf("%s: %w", ManifestName, err)
			}
			if mm.Format != ManifestFormat {
				return Manifest{}, false, fmt.Errorf("%s: format %d, this build reads %d", ManifestName, mm.Format, ManifestFormat)
			}
			m = &mm
			continue
		}
		if m == nil {
			return Manifest{}, false, fmt.Errorf("%s comes before %s", name, ManifestName)
		}
		want, ok := m.File(base)
		if !ok {
			return Manifest{}, false, fmt.Errorf("%s is not listed in %s", name, ManifestName)
		}
		if seen[base] {
			return Manifest{}, false, fmt.Errorf("%s appears twice", name)
		}
		seen[base] = true
		h := sha256.New()
		var r io.Reader = io.TeeReader(tr, h)
		if sink != nil {
			if err := sink(base, r); err != nil {
				return Manifest{}, false, fmt.Errorf("%s: %w", name, err)
			}
		}
		if _, err := io.Copy(io.Discard, r); err != nil { // whatever sink left
			return Manifest{}, false, fmt.Errorf("%s: %w", name, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); hdr.Size != want.Size || got != want.SHA256 {
			return Manifest{}, false, fmt.Errorf("%s: %d bytes sha256 %s, manifest says %d bytes sha256 %s", name, hdr.Size, got, want.Size, want.SHA256)
		}
	}
	if m == nil {
		return Manifest{}, false, nil
	}
	for _, f := range m.Files {
		if !seen[f.Name] {
			return Manifest{}, false, fmt.Errorf("%s lists %s, which is not in the layer", ManifestName, f.Name)
		}
	}
	return *m, true, nil
}

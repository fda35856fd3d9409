package upgradeimage

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// WriteLayout writes idx as an OCI image layout in dir (which must not
// exist, or be empty), its index.json naming it tag
// (org.opencontainers.image.ref.name), as `skopeo copy oci:dir:tag` and
// `crane push --index` expect.
func WriteLayout(dir, tag string, idx v1.ImageIndex) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("upgrade image: layout %s is not empty", dir)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("upgrade image: layout %s: %w", dir, err)
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{AnnotationRefName: tag}))
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return fmt.Errorf("upgrade image: layout %s: %w", dir, err)
	}
	return nil
}

// WriteArchive writes idx as an OCI layout packed in one tar file at path
// (an "oci-archive", as skopeo calls it). The layout is assembled in a
// temporary directory next to path, then removed.
func WriteArchive(path, tag string, idx v1.ImageIndex) error {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".oci-layout-*")
	if err != nil {
		return fmt.Errorf("upgrade image: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := WriteLayout(tmp, tag, idx); err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(path), ".oci-archive-*")
	if err != nil {
		return fmt.Errorf("upgrade image: %w", err)
	}
	defer os.Remove(out.Name())
	if err := tarDir(out, tmp); err != nil {
		out.Close()
		return fmt.Errorf("upgrade image: archive %s: %w", path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("upgrade image: archive %s: %w", path, err)
	}
	if err := os.Chmod(out.Name(), 0o644); err != nil { // CreateTemp made it 0600
		return fmt.Errorf("upgrade image: archive %s: %w", path, err)
	}
	if err := os.Rename(out.Name(), path); err != nil {
		return fmt.Errorf("upgrade image: archive %s: %w", path, err)
	}
	return nil
}

// tarDir packs dir's regular files and directories, sorted, root-owned,
// with zero mtimes, so the archive is reproducible.
func tarDir(w io.Writer, dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case fi.IsDir():
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX}); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), Format: tar.FormatPAX}); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %v in layout", p, fi.Mode())
		}
	}
	return tw.Close()
}

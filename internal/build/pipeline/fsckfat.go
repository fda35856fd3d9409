package pipeline

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/build/rootfs"
	"github.com/kestrel-os/kestrel/internal/layout"
)

// installFsckFAT puts fsck.fat from an unpacked dosfstools into the rootfs
// at dir (layout.FsckFAT) with exactly the files of an unpacked libc6 it
// loads: its ELF interpreter and its DT_NEEDED libraries, then theirs. It
// returns the bytes added.
//
// The libraries are looked up in the multiarch directories
// (lib/<triplet>, usr/lib/<triplet>), which Debian's loader searches
// without an ld.so.cache; the rootfs has none. Symlinks on the way (the
// loader's /lib64 name) are kept as links. Deliberately not a general
// dependency resolver: no RPATH/RUNPATH, no $ORIGIN, no dlopen'ed
// libraries. glibc's iconv modules are not shipped: fsck.fat then says on
// stderr that it uses its built-in code page 850 table, which is all it
// needs to print short names.
func installFsckFAT(dosfstoolsRoot, libcRoot, dir string) (int64, error) {
	n, err := installWithLibs(filepath.Join(dosfstoolsRoot, "sbin/fsck.fat"), layout.FsckFAT, []string{libcRoot}, dir)
	if err != nil {
		return 0, fmt.Errorf("fsck.fat: %w", err)
	}
	return n, nil
}

// installWithLibs copies the ELF program bin to the in-image path target
// under dir with exactly the files of the unpacked packages libRoots it
// loads, as installFsckFAT describes; a library is taken from the first
// root that holds it, the ELF interpreter from the last (glibc's). It
// returns the bytes added.
func installWithLibs(bin, target string, libRoots []string, dir string) (int64, error) {
	var added int64
	if err := rootfs.CopyFile(bin, filepath.Join(dir, target), 0o755); err != nil {
		return 0, err
	}
	st, err := os.Stat(bin)
	if err != nil {
		return 0, err
	}
	added += st.Size()

	done := map[string]bool{}  // in-image paths copied
	files := map[string]bool{} // host files they end at: the loader has two names
	type lib struct{ root, path string }
	queue := []string{bin}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		interp, needed, err := elfDeps(obj)
		if err != nil {
			return 0, err
		}
		var paths []lib // what obj loads
		if interp != "" {
			paths = append(paths, lib{libRoots[len(libRoots)-1], interp})
		}
		for _, name := range needed {
			var p lib
			var errs []string
			for _, root := range libRoots {
				found, err := findLib(root, name)
				if err == nil {
					p = lib{root, found}
					break
				}
				errs = append(errs, err.Error())
			}
			if p.path == "" {
				return 0, fmt.Errorf("%s needs %s: %s", filepath.Base(obj), name, strings.Join(errs, "; "))
			}
			paths = append(paths, p)
		}
		for _, p := range paths {
			if done[p.path] {
				continue
			}
			done[p.path] = true
			file, n, err := copyResolved(p.root, p.path, dir)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", p.path, err)
			}
			if !files[file] {
				files[file] = true
				added += n
				queue = append(queue, file)
			}
		}
	}
	return added, nil
}

// elfDeps returns the ELF interpreter (PT_INTERP, "" for a library) and
// the DT_NEEDED names of the ELF file at p.
func elfDeps(p string) (interp string, needed []string, err error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return "", nil, fmt.Errorf("%s: interpreter: %w", p, err)
			}
			interp = string(bytes.TrimRight(b, "\x00"))
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", p, err)
	}
	return interp, needed, nil
}

// findLib returns the in-image path of library name in the multiarch
// directories of root; exactly one must hold it.
func findLib(root, name string) (string, error) {
	var found []string
	for _, pattern := range []string{"lib/*-linux-gnu*/", "usr/lib/*-linux-gnu*/"} {
		m, err := filepath.Glob(filepath.Join(root, pattern, name))
		if err != nil {
			return "", err
		}
		found = append(found, m...)
	}
	if len(found) != 1 {
		return "", fmt.Errorf("%d copies in the multiarch directories of %s, want 1", len(found), root)
	}
	rel, _ := filepath.Rel(root, found[0])
	return "/" + filepath.ToSlash(rel), nil
}

// copyResolved copies the in-image path p from root into dir, following
// and recreating symlinks (in the image's terms: an absolute target is
// from root), and returns the host path of the regular file it ends at
// and the bytes copied.
func copyResolved(root, p, dir string) (string, int64, error) {
	for hops := 0; hops < 8; hops++ {
		src := filepath.Join(root, p)
		st, err := os.Lstat(src)
		if err != nil {
			return "", 0, err
		}
		dst := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", 0, err
		}
		if st.Mode()&os.ModeSymlink == 0 {
			if !st.Mode().IsRegular() {
				return "", 0, fmt.Errorf("%s is not a regular file", p)
			}
			if err := rootfs.CopyFile(src, dst, 0o755); err != nil {
				return "", 0, err
			}
			return src, st.Size(), nil
		}
		target, err := os.Readlink(src)
		if err != nil {
			return "", 0, err
		}
		os.Remove(dst)
		if err := os.Symlink(target, dst); err != nil {
			return "", 0, err
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	return "", 0, fmt.Errorf("too many symlinks")
}

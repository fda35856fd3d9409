package stage1

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CopyTree copies the directory tree at from into the existing directory
// to, keeping modes, owners and symlinks. It is for /etc, a few hundred
// small files: no hard links, xattrs or device nodes are carried over.
func CopyTree(from, to string) error {
	return filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		uid, gid := -1, -1
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
		switch {
		case d.IsDir():
			if rel != "." {
				if err := os.Mkdir(dst, info.Mode().Perm()); err != nil && !os.IsExist(err) {
					return err
				}
			}
			if err := os.Chmod(dst, info.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid)); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
			os.Lchown(dst, uid, gid)
			return nil
		case info.Mode().IsRegular():
			if err := copyFile(path, dst, info.Mode()); err != nil {
				return err
			}
		default:
			return nil // sockets, fifos, devices do not belong in /etc
		}
		if uid >= 0 && os.Getuid() == 0 {
			if err := os.Lchown(dst, uid, gid); err != nil {
				return fmt.Errorf("chown %s: %w", dst, err)
			}
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid))
}

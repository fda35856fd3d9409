// Package sftpserver speaks the server side of SFTP version 3
// (draft-ietf-secsh-filexfer-02, the version OpenSSH implements) over a
// pair of streams, so that `sftp` and `scp` (which uses SFTP since OpenSSH
// 9.0) work against a Kestrel node.
//
// It does no access control of its own: it is meant to run in a process
// that already carries the user's uid and gids (the SSH server starts
// `kestrel sftp-server` as the user for the "sftp" subsystem), so the
// kernel enforces permissions. Relative paths are relative to the working
// directory, the user's home.
//
// Limits: version 3 only, plus the posix-rename@openssh.com extension;
// requests are served one at a time in arrival order; no statvfs, hardlink
// or fsync extensions; names are given to the client as the filesystem has
// them (no charset conversion); the long names of directory listings show
// numeric owners.
package sftpserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Packet types.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFstat         = 8
	fxpSetstat       = 9
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpRealpath      = 16
	fxpStat          = 17
	fxpRename        = 18
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// Status codes.
const (
	fxOK               = 0
	fxEOF              = 1
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
	fxFailure          = 4
	fxBadMessage       = 5
	fxOpUnsupported    = 8
)

// Open flags.
const (
	pflagRead   = 0x01
	pflagWrite  = 0x02
	pflagAppend = 0x04
	pflagCreat  = 0x08
	pflagTrunc  = 0x10
	pflagExcl   = 0x20
)

// Attribute flags.
const (
	attrSize        = 0x01
	attrUIDGID      = 0x02
	attrPermissions = 0x04
	attrACModTime   = 0x08
	attrExtended    = 0x80000000
)

const (
	maxPacket  = 256*1024 + 1024 // OpenSSH's limit: 256 KiB of data plus headers
	maxRead    = 256 * 1024
	dirBatch   = 100
	maxHandles = 512
)

// Serve answers SFTP requests read from in on out until in ends (nil) or
// the stream breaks or is malformed (an error).
func Serve(in io.Reader, out io.Writer) error {
	s := &server{out: out, handles: map[string]*handle{}}
	defer s.closeAll()
	for {
		pkt, err := readPacket(in)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.dispatch(pkt); err != nil {
			return err
		}
	}
}

type handle struct {
	f       *os.File
	dir     bool
	path    string
	append  bool
	entries []os.DirEntry // directories: what is left to send
	listed  bool
}

type server struct {
	out     io.Writer
	handles map[string]*handle
	next    uint64
}

func (s *server) closeAll() {
	for _, h := range s.handles {
		h.f.Close()
	}
}

func readPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxPacket {
		return nil, fmt.Errorf("sftp: packet of %d bytes", n)
	}
	pkt := make([]byte, n)
	if _, err := io.ReadFull(r, pkt); err != nil {
		return nil, fmt.Errorf("sftp: short packet: %w", err)
	}
	return pkt, nil
}

// decoder reads fields; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("sftp: malformed packet")

func (d *decoder) u32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.u32()
	if d.err != nil || uint32(len(d.b)) < n {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

// attrs is a decoded ATTRS block.
type attrs struct {
	flags        uint32
	size         uint64
	uid, gid     uint32
	perm         uint32
	atime, mtime uint32
}

func (d *decoder) attrs() attrs {
	a := attrs{flags: d.u32()}
	if a.flags&attrSize != 0 {
		a.size = d.u64()
	}
	if a.flags&attrUIDGID != 0 {
		a.uid, a.gid = d.u32(), d.u32()
	}
	if a.flags&attrPermissions != 0 {
		a.perm = d.u32()
	}
	if a.flags&attrACModTime != 0 {
		a.atime, a.mtime = d.u32(), d.u32()
	}
	if a.flags&attrExtended != 0 {
		for n := d.u32(); n > 0 && d.err == nil; n-- {
			d.str()
			d.str()
		}
	}
	return a
}

// encoder builds a packet.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) str(v string) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }
func (e *encoder) raw(v []byte) { e.u32(uint32(len(v))); e.b = append(e.b, v...) }

func (e *encoder) fileAttrs(fi fs.FileInfo) {
	st, _ := fi.Sys().(*syscall.Stat_t)
	flags := uint32(attrSize | attrPermissions | attrACModTime)
	if st != nil {
		flags |= attrUIDGID
	}
	e.u32(flags)
	e.u64(uint64(fi.Size()))
	if st != nil {
		e.u32(st.Uid)
		e.u32(st.Gid)
		e.u32(st.Mode)
		e.u32(uint32(st.Atim.Sec))
	} else {
		e.u32(unixMode(fi.Mode()))
		e.u32(uint32(fi.ModTime().Unix()))
	}
	e.u32(uint32(fi.ModTime().Unix()))
}

func (s *server) send(e *encoder) error {
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(e.b)))
	if _, err := s.out.Write(append(pkt, e.b...)); err != nil {
		return fmt.Errorf("sftp: write: %w", err)
	}
	return nil
}

func (s *server) status(id, code uint32, msg string) error {
	e := &encoder{}
	e.u8(fxpStatus)
	e.u32(id)
	e.u32(code)
	e.str(msg)
	e.str("")
	return s.send(e)
}

// errStatus maps a filesystem error to a status reply.
func (s *server) errStatus(id uint32, err error) error {
	if err == nil {
		return s.status(id, fxOK, "Success")
	}
	code := uint32(fxFailure)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = fxNoSuchFile
	case errors.Is(err, fs.ErrPermission):
		code = fxPermissionDenied
	case errors.Is(err, io.EOF):
		code = fxEOF
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	return s.status(id, code, err.Error())
}

func (s *server) dispatch(pkt []byte) error {
	typ := pkt[0]
	d := &decoder{b: pkt[1:]}
	if typ == fxpInit {
		d.u32() // the client's version; we answer 3 whatever it is
		e := &encoder{}
		e.u8(fxpVersion)
		e.u32(3)
		e.str("posix-rename@openssh.com")
		e.str("1")
		return s.send(e)
	}
	id := d.u32()
	if d.err != nil {
		return d.err
	}
	reply, err := s.handle(typ, id, d)
	if err != nil {
		return err
	}
	if d.err != nil {
		return s.status(id, fxBadMessage, "malformed request")
	}
	return reply()
}

// handle decodes one request and returns how to answer it; decoding
// errors are checked by the caller before the answer is sent.
func (s *server) handle(typ byte, id uint32, d *decoder) (func() error, error) {
	switch typ {
	case fxpOpen:
		path, pflags, a := d.str(), d.u32(), d.attrs()
		return func() error { return s.open(id, path, pflags, a) }, nil
	case fxpClose:
		hid := d.str()
		return func() error {
			h, ok := s.handles[hid]
			if !ok {
				return s.status(id, fxFailure, "invalid handle")
			}
			delete(s.handles, hid)
			return s.errStatus(id, h.f.Close())
		}, nil
	case fxpRead:
		hid, off, n := d.str(), d.u64(), d.u32()
		return func() error { return s.read(id, hid, off, n) }, nil
	case fxpWrite:
		hid, off, data := d.str(), d.u64(), d.bytes()
		return func() error { return s.write(id, hid, off, data) }, nil
	case fxpLstat, fxpStat:
		path := d.str()
		return func() error {
			stat := os.Stat
			if typ == fxpLstat {
				stat = os.Lstat
			}
			fi, err := stat(path)
			if err != nil {
				return s.errStatus(id, err)
			}
			return s.attrsReply(id, fi)
		}, nil
	case fxpFstat:
		hid := d.str()
		return func() error {
			h, ok := s.handles[hid]
			if !ok {
				return s.status(id, fxFailure, "invalid handle")
			}
			fi, err := h.f.Stat()
			if err != nil {
				return s.errStatus(id, err)
			}
			return s.attrsReply(id, fi)
		}, nil
	case fxpSetstat:
		path, a := d.str(), d.attrs()
		return func() error { return s.errStatus(id, setattrs(path, nil, a)) }, nil
	case fxpFsetstat:
		hid, a := d.str(), d.attrs()
		return func() error {
			h, ok := s.handles[hid]
			if !ok {
				return s.status(id, fxFailure, "invalid handle")
			}
			return s.errStatus(id, setattrs(h.path, h.f, a))
		}, nil
	case fxpOpendir:
		path := d.str()
		return func() error { return s.opendir(id, path) }, nil
	case fxpReaddir:
		hid := d.str()
		return func() error { return s.readdir(id, hid) }, nil
	case fxpRemove:
		path := d.str()
		return func() error {
			if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
				return s.status(id, fxFailure, "is a directory")
			}
			return s.errStatus(id, os.Remove(path))
		}, nil
	case fxpMkdir:
		path, a := d.str(), d.attrs()
		return func() error {
			perm := os.FileMode(0o777)
			if a.flags&attrPermissions != 0 {
				perm = os.FileMode(a.perm & 0o7777)
			}
			return s.errStatus(id, os.Mkdir(path, perm))
		}, nil
	case fxpRmdir:
		path := d.str()
		return func() error { return s.errStatus(id, syscall.Rmdir(path)) }, nil
	case fxpRealpath:
		path := d.str()
		return func() error {
			if path == "" {
				path = "."
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				return s.errStatus(id, err)
			}
			return s.nameReply(id, abs, abs, nil)
		}, nil
	case fxpRename:
		from, to := d.str(), d.str()
		return func() error {
			// SFTP v3 rename does not overwrite.
			if _, err := os.Lstat(to); err == nil {
				return s.status(id, fxFailure, "target exists")
			}
			return s.errStatus(id, os.Rename(from, to))
		}, nil
	case fxpReadlink:
		path := d.str()
		return func() error {
			target, err := os.Readlink(path)
			if err != nil {
				return s.errStatus(id, err)
			}
			return s.nameReply(id, target, target, nil)
		}, nil
	case fxpSymlink:
		// OpenSSH sends the target first, then the link path (the
		// reverse of the draft); clients follow OpenSSH.
		target, link := d.str(), d.str()
		return func() error { return s.errStatus(id, os.Symlink(target, link)) }, nil
	case fxpExtended:
		name := d.str()
		if name == "posix-rename@openssh.com" {
			from, to := d.str(), d.str()
			return func() error { return s.errStatus(id, os.Rename(from, to)) }, nil
		}
		return func() error { return s.status(id, fxOpUnsupported, "unsupported extension "+name) }, nil
	default:
		return func() error { return s.status(id, fxOpUnsupported, "unsupported request "+strconv.Itoa(int(typ))) }, nil
	}
}

func (s *server) addHandle(h *handle) (string, error) {
	if len(s.handles) >= maxHandles {
		h.f.Close()
		return "", errors.New("too many open handles")
	}
	s.next++
	id := strconv.FormatUint(s.next, 10)
	s.handles[id] = h
	return id, nil
}

func (s *server) handleReply(id uint32, hid string) error {
	e := &encoder{}
	e.u8(fxpHandle)
	e.u32(id)
	e.str(hid)
	return s.send(e)
}

func (s *server) open(id uint32, path string, pflags uint32, a attrs) error {
	flags := 0
	switch {
	case pflags&pflagRead != 0 && pflags&pflagWrite != 0:
		flags = os.O_RDWR
	case pflags&pflagWrite != 0:
		flags = os.O_WRONLY
	default:
		flags = os.O_RDONLY
	}
	if pflags&pflagAppend != 0 {
		flags |= os.O_APPEND
	}
	if pflags&pflagCreat != 0 {
		flags |= os.O_CREATE
	}
	if pflags&pflagTrunc != 0 {
		flags |= os.O_TRUNC
	}
	if pflags&pflagExcl != 0 {
		flags |= os.O_EXCL
	}
	perm := os.FileMode(0o666) // the umask applies, as with OpenSSH
	if a.flags&attrPermissions != 0 {
		perm = os.FileMode(a.perm & 0o777)
	}
	f, err := os.OpenFile(path, flags, perm)
	if err != nil {
		return s.errStatus(id, err)
	}
	hid, err := s.addHandle(&handle{f: f, path: path, append: pflags&pflagAppend != 0})
	if err != nil {
		return s.status(id, fxFailure, err.Error())
	}
	return s.handleReply(id, hid)
}

func (s *server) read(id uint32, hid string, off uint64, n uint32) error {
	h, ok := s.handles[hid]
	if !ok || h.dir {
		return s.status(id, fxFailure, "invalid handle")
	}
	buf := make([]byte, min(int(n), maxRead))
	got, err := h.f.ReadAt(buf, int64(off))
	if got == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return s.status(id, fxEOF, "EOF")
		}
		return s.errStatus(id, err)
	}
	e := &encoder{}
	e.u8(fxpData)
	e.u32(id)
	e.raw(buf[:got])
	return s.send(e)
}

func (s *server) write(id uint32, hid string, off uint64, data []byte) error {
	h, ok := s.handles[hid]
	if !ok || h.dir {
		return s.status(id, fxFailure, "invalid handle")
	}
	var err error
	if h.append {
		_, err = h.f.Write(data)
	} else {
		_, err = h.f.WriteAt(data, int64(off))
	}
	return s.errStatus(id, err)
}

func (s *server) opendir(id uint32, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return s.errStatus(id, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return s.status(id, fxFailure, "not a directory")
	}
	hid, err := s.addHandle(&handle{f: f, dir: true, path: path})
	if err != nil {
		return s.status(id, fxFailure, err.Error())
	}
	return s.handleReply(id, hid)
}

func (s *server) readdir(id uint32, hid string) error {
	h, ok := s.handles[hid]
	if !ok || !h.dir {
		return s.status(id, fxFailure, "invalid handle")
	}
	if !h.listed {
		entries, err := h.f.ReadDir(-1)
		if err != nil {
			return s.errStatus(id, err)
		}
		h.entries, h.listed = entries, true
	}
	if len(h.entries) == 0 {
		return s.status(id, fxEOF, "EOF")
	}
	batch := h.entries[:min(dirBatch, len(h.entries))]
	h.entries = h.entries[len(batch):]
	e := &encoder{}
	e.u8(fxpName)
	e.u32(id)
	e.u32(uint32(len(batch)))
	for _, de := range batch {
		fi, err := os.Lstat(filepath.Join(h.path, de.Name()))
		if err != nil {
			fi, err = de.Info()
		}
		e.str(de.Name())
		if err != nil {
			e.str(de.Name())
			e.u32(0)
			continue
		}
		e.str(longName(de.Name(), fi))
		e.fileAttrs(fi)
	}
	return s.send(e)
}

func (s *server) attrsReply(id uint32, fi fs.FileInfo) error {
	e := &encoder{}
	e.u8(fxpAttrs)
	e.u32(id)
	e.fileAttrs(fi)
	return s.send(e)
}

// nameReply answers with one name; attributes are those of fi, or none.
func (s *server) nameReply(id uint32, name, long string, fi fs.FileInfo) error {
	e := &encoder{}
	e.u8(fxpName)
	e.u32(id)
	e.u32(1)
	e.str(name)
	e.str(long)
	if fi != nil {
		e.fileAttrs(fi)
	} else {
		e.u32(0)
	}
	return s.send(e)
}

// setattrs applies a SETSTAT/FSETSTAT: size, owner, mode, times.
func setattrs(path string, f *os.File, a attrs) error {
	if a.flags&attrSize != 0 {
		var err error
		if f != nil {
			err = f.Truncate(int64(a.size))
		} else {
			err = os.Truncate(path, int64(a.size))
		}
		if err != nil {
			return err
		}
	}
	if a.flags&attrUIDGID != 0 {
		var err error
		if f != nil {
			err = f.Chown(int(a.uid), int(a.gid))
		} else {
			err = os.Chown(path, int(a.uid), int(a.gid))
		}
		if err != nil {
			return err
		}
	}
	if a.flags&attrPermissions != 0 {
		mode := fileMode(a.perm)
		var err error
		if f != nil {
			err = f.Chmod(mode)
		} else {
			err = os.Chmod(path, mode)
		}
		if err != nil {
			return err
		}
	}
	if a.flags&attrACModTime != 0 {
		if err := os.Chtimes(path, time.Unix(int64(a.atime), 0), time.Unix(int64(a.mtime), 0)); err != nil {
			return err
		}
	}
	return nil
}

// fileMode converts the permission bits of a Unix mode.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	if m&syscall.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// unixMode is the st_mode of a FileMode, for infos without a Stat_t.
func unixMode(m os.FileMode) uint32 {
	v := uint32(m.Perm())
	switch {
	case m.IsDir():
		v |= syscall.S_IFDIR
	case m&os.ModeSymlink != 0:
		v |= syscall.S_IFLNK
	default:
		v |= syscall.S_IFREG
	}
	return v
}

// longName is the `ls -l` line the client shows.
func longName(name string, fi fs.FileInfo) string {
	uid, gid, nlink := uint32(0), uint32(0), uint64(1)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid, gid, nlink = st.Uid, st.Gid, uint64(st.Nlink)
	}
	mode := "-" + fi.Mode().Perm().String()[1:]
	if fi.IsDir() {
		mode = "d" + mode[1:]
	} else if fi.Mode()&os.ModeSymlink != 0 {
		mode = "l" + mode[1:]
	}
	t := fi.ModTime()
	stamp := t.Format("Jan _2 15:04")
	if time.Since(t) > 180*24*time.Hour || time.Until(t) > time.Hour {
		stamp = t.Format("Jan _2  2006")
	}
	return fmt.Sprintf("%s %4d %-8d %-8d %8d %s %s", mode, nlink, uid, gid, fi.Size(), stamp, name)
}

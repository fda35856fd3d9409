package sshd

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// TestSFTPOverSSH logs in to the in-process server with the Go SSH client
// and drives the "sftp" subsystem (the test binary running ServeSFTP as the
// user, as `kestrel sftp-server` does) with github.com/pkg/sftp's client.
// Each step works on the files the steps before it left in the home.
func TestSFTPOverSSH(t *testing.T) {
	e := setup(t, false)
	c := e.sftpClient(t, "kestrel")
	home := filepath.Join(e.root, "home/kestrel")
	big := make([]byte, 1<<20+12345) // several packets and a partial last one
	rand.Read(big)

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"working directory is the home", func(t *testing.T) {
			wd, err := c.Getwd()
			if err != nil || wd != home {
				t.Errorf("Getwd = %q, %v; want %q", wd, err, home)
			}
		}},
		{"put", func(t *testing.T) {
			f, err := c.Create("up.bin")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.ReadFrom(bytes.NewReader(big)); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(home, "up.bin"))
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("uploaded file differs (%d bytes, %v)", len(got), err)
			}
			fi, _ := os.Stat(filepath.Join(home, "up.bin"))
			if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65534 {
				t.Errorf("uploaded file owned by uid %d, want the user's 65534", uid)
			}
		}},
		{"stat", func(t *testing.T) {
			fi, err := c.Stat("up.bin")
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(len(big)) || !fi.Mode().IsRegular() {
				t.Errorf("Stat: size %d mode %v, want %d, regular", fi.Size(), fi.Mode(), len(big))
			}
			if _, err := c.Stat("no-such-file"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Stat of a missing file: %v, want not exist", err)
			}
		}},
		{"rename", func(t *testing.T) {
			if err := c.Mkdir("sub"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rename("up.bin", "sub/moved.bin"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(home, "up.bin")); !os.IsNotExist(err) {
				t.Errorf("old name still there: %v", err)
			}
		}},
		{"posix rename over an existing file", func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(home, "sub/old"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.PosixRename("sub/moved.bin", "sub/old"); err != nil {
				t.Fatal(err)
			}
		}},
		{"get", func(t *testing.T) {
			f, err := c.Open("sub/old")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got bytes.Buffer
			if _, err := f.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), big) {
				t.Fatalf("downloaded file differs (%d bytes, %v)", got.Len(), err)
			}
		}},
		{"statvfs", func(t *testing.T) {
			vfs, err := c.StatVFS(".")
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(home, &st); err != nil {
				t.Fatal(err)
			}
			if vfs.Bsize != uint64(st.Bsize) || vfs.Blocks != st.Blocks || vfs.Namemax != uint64(st.Namelen) {
				t.Errorf("StatVFS = bsize %d blocks %d namemax %d; statfs(2) says %d %d %d",
					vfs.Bsize, vfs.Blocks, vfs.Namemax, st.Bsize, st.Blocks, st.Namelen)
			}
		}},
		{"the kernel enforces the user's permissions", func(t *testing.T) {
			// etc/ is root's, 0755: the user may not write there.
			_, err := c.Create(filepath.Join(e.root, "etc/evil"))
			if !errors.Is(err, fs.ErrPermission) {
				t.Errorf("create in etc/ as an unprivileged user: %v, want permission denied", err)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, s.run)
	}
}

// sftpClient logs in as user with the test's key and opens the "sftp"
// subsystem.
func (e *env) sftpClient(t *testing.T, user string) *sftp.Client {
	t.Helper()
	pem, err := os.ReadFile(e.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a fresh test server
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSFTPWithOpenSSHClient runs the OpenSSH sftp client in batch mode
// straight against ServeSFTP (sftp -D), without the SSH layer, in a temp
// dir as the server's working directory.
func TestSFTPWithOpenSSHClient(t *testing.T) {
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("sftp client not installed (openssh-client)")
	}
	remote := t.TempDir()
	local := t.TempDir()
	big := make([]byte, 3<<20+12345) // several reads and writes, a partial last one
	rand.Read(big)
	os.WriteFile(filepath.Join(local, "big.bin"), big, 0o640)
	os.WriteFile(filepath.Join(remote, "hello.txt"), []byte("hello\n"), 0o644)

	batch := strings.Join([]string{
		"pwd",
		"put " + filepath.Join(local, "big.bin") + " up.bin",
		"get hello.txt " + filepath.Join(local, "hello.copy"),
		"mkdir sub",
		"rename up.bin sub/moved.bin",
		"chmod 600 sub/moved.bin",
		"symlink sub/moved.bin link",
		"ls -l",
		"ls sub",
		"df .",
		"mkdir gone",
		"rmdir gone",
		"put " + filepath.Join(local, "hello.copy") + " tmp.txt",
		"rm tmp.txt",
		"-get no-such-file " + filepath.Join(local, "x"), // '-': the batch goes on after a failure
		"get sub/moved.bin " + filepath.Join(local, "roundtrip.bin"),
	}, "\n") + "\n"
	bf := filepath.Join(t.TempDir(), "batch")
	os.WriteFile(bf, []byte(batch), 0o644)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sftp", "-D", self, "-b", bf)
	cmd.Dir = remote
	cmd.Env = append(os.Environ(), "KESTREL_SSHD_TEST_SFTP=1")
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}

	if !strings.Contains(out, "Remote working directory: "+remote) {
		t.Errorf("pwd: %s", out)
	}
	got, err := os.ReadFile(filepath.Join(remote, "sub/moved.bin"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("uploaded file differs (%d bytes, %v)", len(got), err)
	}
	if fi, _ := os.Stat(filepath.Join(remote, "sub/moved.bin")); fi.Mode().Perm() != 0o600 {
		t.Errorf("chmod: mode %v", fi.Mode())
	}
	if target, _ := os.Readlink(filepath.Join(remote, "link")); target != "sub/moved.bin" {
		t.Errorf("symlink target %q", target)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "hello.copy")); string(b) != "hello\n" {
		t.Errorf("downloaded %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(local, "roundtrip.bin")); !bytes.Equal(b, big) {
		t.Errorf("round trip differs")
	}
	for _, gone := range []string{"gone", "tmp.txt", "up.bin"} {
		if _, err := os.Lstat(filepath.Join(remote, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still exists", gone)
		}
	}
	for _, want := range []string{"drwx", "hello.txt", "lrwx", "link", "moved.bin", "not found", "Avail"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestSFTPMalformed opens a session with ServeSFTP directly, then feeds it
// a broken packet: one that does not decode ends the session with an
// error (pkg/sftp v1.13.9 panicked on some of these; v1.13.12 is pinned
// for that) instead of hanging or crashing.
func TestSFTPMalformed(t *testing.T) {
	pkt := func(b ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	const fxpInit, fxpVersion, fxpStat = 1, 2, 17
	tests := []struct {
		name    string
		in      []byte // after the init exchange
		wantErr bool
	}{
		{"clean end", nil, false},
		{"oversized length", binary.BigEndian.AppendUint32(nil, 1<<30), true},
		{"truncated", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), true},
		{"missing id", pkt(fxpStat), true},
		{"short string", pkt(fxpStat, 0, 0, 0, 1, 0, 0, 0, 9, 'a'), true},
		{"unknown type", pkt(99, 0, 0, 0, 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			served := make(chan error, 1)
			go func() { served <- ServeSFTP(inR, outW) }()

			if _, err := inW.Write(pkt(fxpInit, 0, 0, 0, 3)); err != nil {
				t.Fatal(err)
			}
			var hdr [5]byte
			if _, err := io.ReadFull(outR, hdr[:]); err != nil || hdr[4] != fxpVersion {
				t.Fatalf("init: reply %x, %v; want type %d", hdr, err, fxpVersion)
			}
			go io.Copy(io.Discard, outR) // the rest of the version packet, and anything after
			inW.Write(tt.in)
			inW.Close()
			if err := <-served; (err != nil) != tt.wantErr {
				t.Errorf("err %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

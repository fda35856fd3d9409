package sftpserver

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary act as the server the OpenSSH client
// starts with `sftp -D`.
func TestMain(m *testing.M) {
	if os.Getenv("SFTPSERVER_TEST_SERVE") == "1" {
		if err := Serve(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runSFTP runs the OpenSSH sftp client in batch mode against Serve, with
// dir as the server's working directory.
func runSFTP(t *testing.T, dir, batch string) string {
	t.Helper()
	if _, err := exec.LookPath("sftp"); err != nil {
		t.Skip("sftp client not installed (openssh-client)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bf := filepath.Join(t.TempDir(), "batch")
	os.WriteFile(bf, []byte(batch), 0o644)
	cmd := exec.Command("sftp", "-D", self, "-b", bf)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SFTPSERVER_TEST_SERVE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	return string(out)
}

func TestWithOpenSSHClient(t *testing.T) {
	remote := t.TempDir()
	local := t.TempDir()
	big := make([]byte, 3<<20+12345) // several reads and writes, a partial last one
	rand.Read(big)
	os.WriteFile(filepath.Join(local, "big.bin"), big, 0o640)
	os.WriteFile(filepath.Join(remote, "hello.txt"), []byte("hello\n"), 0o644)

	out := runSFTP(t, remote, strings.Join([]string{
		"pwd",
		"put " + filepath.Join(local, "big.bin") + " up.bin",
		"get hello.txt " + filepath.Join(local, "hello.copy"),
		"mkdir sub",
		"rename up.bin sub/moved.bin",
		"chmod 600 sub/moved.bin",
		"symlink sub/moved.bin link",
		"ls -l",
		"ls sub",
		"mkdir gone",
		"rmdir gone",
		"put " + filepath.Join(local, "hello.copy") + " tmp.txt",
		"rm tmp.txt",
		"-get no-such-file " + filepath.Join(local, "x"), // '-': the batch goes on after a failure
		"get sub/moved.bin " + filepath.Join(local, "roundtrip.bin"),
	}, "\n")+"\n")

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
	for _, want := range []string{"drwx", "hello.txt", "lrwx", "link", "moved.bin", "not found"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestMalformed feeds broken packets directly.
func TestMalformed(t *testing.T) {
	pkt := func(b ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
		reply   byte // type of the last reply, 0 for none
	}{
		{"empty stream", nil, false, 0},
		{"init", pkt(fxpInit, 0, 0, 0, 3), false, fxpVersion},
		{"oversized length", binary.BigEndian.AppendUint32(nil, maxPacket+1), true, 0},
		{"truncated", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), true, 0},
		{"missing id", pkt(fxpStat), true, 0},
		{"short string", pkt(fxpStat, 0, 0, 0, 1, 0, 0, 0, 9, 'a'), false, fxpStatus},
		{"unknown type", pkt(99, 0, 0, 0, 1), false, fxpStatus},
		{"bad handle", pkt(fxpClose, 0, 0, 0, 1, 0, 0, 0, 1, 'x'), false, fxpStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Serve(bytes.NewReader(tt.in), &out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if tt.reply == 0 {
				if out.Len() != 0 && !tt.wantErr {
					t.Errorf("unexpected reply %x", out.Bytes())
				}
				return
			}
			if out.Len() < 5 || out.Bytes()[4] != tt.reply {
				t.Errorf("reply %x, want type %d", out.Bytes(), tt.reply)
			}
		})
	}
}

// FuzzPacket feeds arbitrary bytes to the packet and attribute decoders
// (the server itself is not fuzzed: it would act on the real filesystem).
func FuzzPacket(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3})
	f.Add([]byte{0, 0, 0, 9, fxpSetstat, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := readPacket(bytes.NewReader(b))
		if err != nil {
			return
		}
		d := &decoder{b: pkt[1:]}
		d.u32()
		d.str()
		d.attrs()
		d.u64()
	})
}

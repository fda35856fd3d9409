package sshd

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// TestPasswordLengthCap calls the password callback with a counting hasher
// in place of SHA-crypt: a password longer than MaxPasswordLen is refused
// without reaching the hasher, so its quadratic cost is never paid.
func TestPasswordLengthCap(t *testing.T) {
	long := strings.Repeat("p", MaxPasswordLen+1)
	hash, err := shacrypt.HashSHA512("open sesame", nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"etc/passwd": "admin:x:0:0::/home/admin:/bin/sh\n",
		"etc/group":  "root:x:0:\n",
		"etc/shadow": "admin:" + hash + ":::::::\n",
	})
	srv, err := New(Config{Root: root, HostKeyDir: filepath.Join(t.TempDir(), "ssh"), PasswordAuth: true, AuthFailureDelay: time.Nanosecond, PermitRootLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	var hashed []int // lengths of the passwords the hasher saw
	srv.verify = func(h, p string) error {
		hashed = append(hashed, len(p))
		return shacrypt.Verify(h, p)
	}

	tests := []struct {
		name       string
		password   string
		wantOK     bool
		wantHashed bool
	}{
		{"right password", "open sesame", true, true},
		{"wrong password", "wrong", false, true},
		{"1024 bytes: hashed", strings.Repeat("p", MaxPasswordLen), false, true},
		{"1025 bytes: refused unhashed", long, false, false},
		{"256 KiB: refused unhashed", strings.Repeat("p", 256<<10), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hashed = nil
			perm, err := srv.checkPassword(connMeta{"admin"}, []byte(tt.password))
			if ok := err == nil && perm != nil; ok != tt.wantOK {
				t.Errorf("accepted %v (%v), want %v", ok, err, tt.wantOK)
			}
			if got := len(hashed) > 0; got != tt.wantHashed {
				t.Errorf("hasher called with %v, want called %v", hashed, tt.wantHashed)
			}
		})
	}
}

// TestLongPasswordOverSSH logs in with the Go SSH client as an account
// whose password really is 1025 bytes long: even the right password is
// refused, and a 1024-byte one still logs in.
func TestLongPasswordOverSSH(t *testing.T) {
	e := setup(t, true)
	for _, tt := range []struct {
		user, password string
		wantOK         bool
	}{
		{"admin", "open sesame", true},
		{"long1024", strings.Repeat("L", MaxPasswordLen), true},
		{"long1025", strings.Repeat("L", MaxPasswordLen+1), false},
	} {
		conn, err := ssh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port), &ssh.ClientConfig{
			User:            tt.user,
			Auth:            []ssh.AuthMethod{ssh.Password(tt.password)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), // a fresh test server
		})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tt.wantOK {
			t.Errorf("%s with a %d-byte password: login err %v, want success %v", tt.user, len(tt.password), err, tt.wantOK)
		}
	}
	if !strings.Contains(e.log.String(), "password of 1025 bytes is longer than 1024") {
		t.Errorf("the log does not say why the long password was refused:\n%s", e.log)
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// connMeta is what the password callback reads of a connection: the user.
type connMeta struct{ user string }

func (c connMeta) User() string        { return c.user }
func (connMeta) SessionID() []byte     { return nil }
func (connMeta) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (connMeta) ServerVersion() []byte { return []byte("SSH-2.0-Kestrel") }
func (connMeta) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (connMeta) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }

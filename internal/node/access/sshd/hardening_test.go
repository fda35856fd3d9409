package sshd

import (
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// keysRoot is a root with a user kestrel (uid 1000), root, and both
// authorized for key; plant then changes the kestrel's files.
func keysRoot(t *testing.T, key ssh.PublicKey) string {
	t.Helper()
	root := t.TempDir()
	line := string(ssh.MarshalAuthorizedKey(key))
	writeFiles(t, root, map[string]string{
		"etc/passwd":                        "root:x:0:0:root:/root:/bin/sh\nkestrel:x:1000:1000::/home/kestrel:/bin/sh\n",
		"etc/group":                         "root:x:0:\nkestrel:x:1000:\n",
		"etc/shadow":                        "root:*:::::::\nkestrel:*:::::::\n",
		"root/.ssh/authorized_keys":         line,
		"home/kestrel/.ssh/authorized_keys": line,
	})
	for _, p := range []string{"home/kestrel", "home/kestrel/.ssh", "home/kestrel/.ssh/authorized_keys"} {
		os.Chown(filepath.Join(root, p), 1000, 1000)
	}
	return root
}

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAuthorizedKeysStrictModes: what a local user can put in place of
// ~/.ssh/authorized_keys (or its parents) neither stalls the server nor
// gets a key accepted from a file the user does not control alone
// (issue 10 items 1 and 4). A FIFO made the old server block forever.
func TestAuthorizedKeysStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	key := newKey(t)
	for _, tc := range []struct {
		name   string
		plant  func(t *testing.T, ssh string)
		wantOK bool
	}{
		{"regular file of the user", func(*testing.T, string) {}, true},
		{"file owned by root", func(t *testing.T, d string) { os.Chown(filepath.Join(d, "authorized_keys"), 0, 0) }, true},
		{"group-writable file", func(t *testing.T, d string) { os.Chmod(filepath.Join(d, "authorized_keys"), 0o620) }, false},
		{"world-writable .ssh", func(t *testing.T, d string) { os.Chmod(d, 0o777) }, false},
		{"group-writable home", func(t *testing.T, d string) { os.Chmod(filepath.Dir(d), 0o770) }, false},
		{"file owned by another user", func(t *testing.T, d string) { os.Chown(filepath.Join(d, "authorized_keys"), 1001, 1001) }, false},
		{"symlink to a key file elsewhere", func(t *testing.T, d string) {
			other := filepath.Join(t.TempDir(), "keys")
			data, _ := os.ReadFile(filepath.Join(d, "authorized_keys"))
			os.WriteFile(other, data, 0o600)
			replace(t, filepath.Join(d, "authorized_keys"), func(p string) error { return os.Symlink(other, p) })
		}, false},
		{".ssh a symlink to root's", func(t *testing.T, d string) {
			root := filepath.Dir(filepath.Dir(filepath.Dir(d)))
			os.RemoveAll(d)
			if err := os.Symlink(filepath.Join(root, "root/.ssh"), d); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"FIFO", func(t *testing.T, d string) {
			replace(t, filepath.Join(d, "authorized_keys"), func(p string) error { return syscall.Mkfifo(p, 0o600) })
		}, false},
		{"/dev/zero device node", func(t *testing.T, d string) {
			replace(t, filepath.Join(d, "authorized_keys"), func(p string) error {
				return syscall.Mknod(p, syscall.S_IFCHR|0o600, int(unixMkdev(1, 5)))
			})
		}, false},
		{"symlink to /dev/zero", func(t *testing.T, d string) {
			replace(t, filepath.Join(d, "authorized_keys"), func(p string) error { return os.Symlink("/dev/zero", p) })
		}, false},
		{"larger than 1 MiB", func(t *testing.T, d string) {
			p := filepath.Join(d, "authorized_keys")
			data, _ := os.ReadFile(p)
			pad := strings.Repeat("# padding\n", maxAuthorizedKeys/10+1)
			os.WriteFile(p, append([]byte(pad), data...), 0o600)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := keysRoot(t, key)
			tc.plant(t, filepath.Join(root, "home/kestrel/.ssh"))
			srv, err := New(Config{Root: root, HostKeyDir: filepath.Join(t.TempDir(), "ssh")})
			if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			srv.cfg.Logf = func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) }
			_, err = srv.checkPublicKey(connMeta{"kestrel"}, key)
			if (err == nil) != tc.wantOK {
				t.Errorf("key accepted: %v (%v), want %v; log:\n%s", err == nil, err, tc.wantOK, log.String())
			}
		})
	}
}

func replace(t *testing.T, p string, make func(string) error) {
	t.Helper()
	os.Remove(p)
	if err := make(p); err != nil {
		t.Fatal(err)
	}
	os.Lchown(p, 1000, 1000)
}

func unixMkdev(major, minor uint32) uint64 {
	return uint64(major)<<8 | uint64(minor)
}

// TestRootLogin: root's shadow entry "*" means "no password", not
// "locked"; key login as any uid-0 account needs PermitRootLogin.
func TestRootLogin(t *testing.T) {
	key := newKey(t)
	for _, permit := range []bool{false, true} {
		root := keysRoot(t, key)
		srv, err := New(Config{Root: root, HostKeyDir: filepath.Join(t.TempDir(), "ssh"), PermitRootLogin: permit})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.checkPublicKey(connMeta{"root"}, key); (err == nil) != permit {
			t.Errorf("PermitRootLogin %v: root key login accepted %v", permit, err == nil)
		}
		if _, err := srv.checkPublicKey(connMeta{"kestrel"}, key); err != nil {
			t.Errorf("PermitRootLogin %v: kestrel refused: %v", permit, err)
		}
	}
}

// TestUnknownUserIsHashed: a password for a name that does not exist, or
// has no password, costs the same hashing as a wrong one for a real
// account, so the timing does not enumerate accounts (issue 10 item 5).
func TestUnknownUserIsHashed(t *testing.T) {
	key := newKey(t)
	root := keysRoot(t, key)
	srv, err := New(Config{Root: root, HostKeyDir: filepath.Join(t.TempDir(), "ssh"), PasswordAuth: true, AuthFailureDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"nosuch", "kestrel", "root"} {
		calls := 0
		srv.verify = func(h, p string) error { calls++; return fmt.Errorf("no") }
		if _, err := srv.checkPassword(connMeta{user}, []byte("guess")); err == nil {
			t.Errorf("%s: password accepted", user)
		}
		if calls != 1 {
			t.Errorf("%s: hasher called %d times, want 1", user, calls)
		}
	}
}

// TestIdleConnectionsDoNotLockOut opens real TCP connections that never
// send a byte, and connections that send a version line and stall, then
// logs in with OpenSSH: it must work while they are all still open
// (issue 10 item 3; the old server had 16 slots held for two minutes).
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	e := setup(t, false)
	addr := fmt.Sprintf("127.0.0.1:%d", e.port)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 16 { // idle: from the client's own address
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	stalled := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	for range 16 { // stalled mid-handshake, from another source
		c, err := stalled.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("SSH-2.0-stall\r\n")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	out, code := e.ssh(t, "", "admin", e.keyOpts(e.clientKey), "echo ok")
	if code != 0 || out != "ok\n" {
		t.Errorf("login with idle and stalled connections open: code %d, output %q", code, out)
	}
}

// TestStartupsDrop is the MaxStartups 10:30:100 rule and the per-source
// limit, with the random draw fixed.
func TestStartupsDrop(t *testing.T) {
	for _, tc := range []struct {
		name         string
		others       int // handshakes in progress from other sources
		mine         int // from this source
		draw         int
		wantAdmitted bool
	}{
		{"below begin", 9, 0, 0, true},
		{"at begin, draw above 30", 10, 0, 30, true},
		{"at begin, draw below 30", 10, 0, 29, false},
		{"halfway: p = 65", 55, 0, 64, false},
		{"halfway: p = 65, high draw", 55, 0, 65, true},
		{"full", 100, 0, 99, false},
		{"per-source limit", 0, maxPerSource, 99, false},
		{"under per-source limit", 0, maxPerSource - 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStartups()
			st.percent = func() int { return tc.draw }
			for i := range tc.others {
				src := fmt.Sprintf("10.0.%d.%d", i/200, i%200)
				st.enterIdle(src)
				st.handshaking++
				st.handshakeBy[src]++
				st.leaveIdle(src)
			}
			for range tc.mine {
				st.handshaking++
				st.handshakeBy["192.0.2.1"]++
			}
			if err := st.enterIdle("192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			err := st.startHandshake("192.0.2.1")
			if (err == nil) != tc.wantAdmitted {
				t.Errorf("admitted %v (%v), want %v", err == nil, err, tc.wantAdmitted)
			}
			if st.idle != 0 {
				t.Errorf("idle count %d after the first bytes", st.idle)
			}
		})
	}
}

// TestIdleDrop is the early drop of connections that have not sent a
// byte, overall and per source, with the random draw fixed.
func TestIdleDrop(t *testing.T) {
	for _, tc := range []struct {
		name         string
		others, mine int // idle connections from other sources, from this one
		draw         int
		wantAdmitted bool
	}{
		{"below idleBegin", idleBegin - 1, 0, 0, true},
		{"halfway, low draw", (idleBegin + maxIdle) / 2, 0, 49, false},
		{"halfway, high draw", (idleBegin + maxIdle) / 2, 0, 50, true},
		{"full", maxIdle, 0, 99, false},
		{"per-source limit", 0, maxIdlePerSource, 99, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newStartups()
			st.percent = func() int { return 99 }
			for i := range tc.others {
				st.idle++
				st.idleBy[fmt.Sprintf("10.1.%d.%d", i/200, i%200)]++
			}
			for range tc.mine {
				st.idle++
				st.idleBy["192.0.2.1"]++
			}
			st.percent = func() int { return tc.draw }
			if err := st.enterIdle("192.0.2.1"); (err == nil) != tc.wantAdmitted {
				t.Errorf("admitted %v (%v), want %v", err == nil, err, tc.wantAdmitted)
			}
		})
	}
}

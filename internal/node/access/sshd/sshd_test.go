package sshd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// TestMain lets the test binary serve the sftp subsystem, as
// `kestrel sftp-server` does on the node.
func TestMain(m *testing.M) {
	if os.Getenv("KESTREL_SSHD_TEST_SFTP") == "1" {
		if err := ServeSFTP(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// env is a root with accounts, a client key pair and a running server.
type env struct {
	root, keyDir, clientKey, otherKey string
	port                              int
	srv                               *Server
	log                               *syncBuf
	reaper                            *reaper.Reaper
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.b, format+"\n", args...)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func keygen(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return string(pub)
}

func setup(t *testing.T, passwordAuth bool) *env {
	return setupWith(t, passwordAuth, nil)
}

func setupWith(t *testing.T, passwordAuth bool, rp *reaper.Reaper) *env {
	t.Helper()
	for _, tool := range []string{"ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs openssh-client)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("sessions switch uid: needs root")
	}
	// Homes must be reachable by the unprivileged test user.
	base, err := os.MkdirTemp("", "sshd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	e := &env{reaper: rp, root: filepath.Join(base, "root"), keyDir: filepath.Join(base, "state/ssh"), log: &syncBuf{}}
	clientDir := t.TempDir()
	e.clientKey = filepath.Join(clientDir, "id")
	e.otherKey = filepath.Join(clientDir, "other")
	pub := keygen(t, e.clientKey)
	keygen(t, e.otherKey)

	var hashes []string
	for _, pw := range []string{"open sesame", strings.Repeat("L", MaxPasswordLen), strings.Repeat("L", MaxPasswordLen+1)} {
		hash, err := shacrypt.HashSHA512(pw, nil)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hash)
	}
	hash := hashes[0]
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"admin:x:0:0::/home/admin:/bin/sh\n" +
			"kestrel:x:65534:65534::/home/kestrel:/bin/sh\n" +
			"locked:x:0:0::/home/locked:/bin/sh\n" +
			"long1024:x:0:0::/home/admin:/bin/sh\n" +
			"long1025:x:0:0::/home/admin:/bin/sh\n",
		"etc/group": "root:x:0:\nnogroup:x:65534:\nwheel:x:10:kestrel\n",
		"etc/shadow": "admin:" + hash + ":::::::\nkestrel:*:::::::\nlocked:!" + hash + ":::::::\n" +
			"long1024:" + hashes[1] + ":::::::\nlong1025:" + hashes[2] + ":::::::\n",
		"home/admin/.ssh/authorized_keys":   pub,
		"home/kestrel/.ssh/authorized_keys": "# comment\n" + pub,
		"home/locked/.ssh/authorized_keys":  pub,
	}
	writeFiles(t, e.root, files)
	os.Chown(filepath.Join(e.root, "home/kestrel"), 65534, 65534)

	// The sftp subsystem is this test binary, copied where the
	// unprivileged user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sftpBin := filepath.Join(base, "sftp-server")
	if data, err := os.ReadFile(self); err != nil || os.WriteFile(sftpBin, data, 0o755) != nil {
		t.Fatalf("copy test binary: %v", err)
	}

	srv, err := New(Config{
		Root: e.root, HostKeyDir: e.keyDir, PasswordAuth: passwordAuth,
		Env:  []string{"http_proxy=http://proxy.invalid:3128", "KESTREL_SSHD_TEST_SFTP=1"},
		Logf: e.log.logf, SFTPServer: []string{sftpBin},
		AuthFailureDelay: time.Millisecond, Reaper: rp,
		PermitRootLogin: true, // the test accounts are uid 0 or nobody
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = l.Addr().(*net.TCPAddr).Port
	e.srv = srv
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", e.log)
		}
	})
	return e
}

// ssh runs the OpenSSH client; extra options come before the destination.
func (e *env) ssh(t *testing.T, stdin string, user string, opts []string, command ...string) (string, int) {
	t.Helper()
	args := []string{"-F", "/dev/null", "-p", fmt.Sprint(e.port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"}
	args = append(args, opts...)
	args = append(args, user+"@127.0.0.1")
	args = append(args, command...)
	cmd := exec.Command("ssh", args...)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8")
	// Files, not buffers: with a reaper, exec.Cmd.Wait is never called.
	dir := t.TempDir()
	in, _ := os.Create(filepath.Join(dir, "in"))
	in.WriteString(stdin)
	in.Seek(0, 0)
	defer in.Close()
	out, _ := os.Create(filepath.Join(dir, "out"))
	defer out.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, out
	exitc, err := e.reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case ex := <-exitc:
		code = ex.Code()
		if ex.Status.Signaled() {
			code = -1
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("ssh %v timed out; output so far: %s", command, b)
	}
	b, _ := os.ReadFile(out.Name())
	return string(b), code
}

func (e *env) keyOpts(key string) []string {
	return []string{"-i", key, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no"}
}

func TestPublicKeySessions(t *testing.T) {
	e := setup(t, false)
	key := e.keyOpts(e.clientKey)
	tests := []struct {
		name     string
		user     string
		opts     []string
		stdin    string
		command  []string
		want     []string
		wantCode int
	}{
		{"echo ok", "admin", nil, "", []string{"echo ok"}, []string{"ok\n"}, 0},
		{"exit status", "admin", nil, "", []string{"exit 7"}, nil, 7},
		{"uid, gid, groups and home of the user", "kestrel", nil, "", []string{"id -u; id -g; id -G; echo $HOME $USER; pwd"},
			[]string{"65534\n65534\n", "10", "/home/kestrel kestrel\n", filepath.Join(e.root, "home/kestrel")}, 0},
		{"configured environment", "admin", nil, "", []string{"echo $http_proxy $PATH"}, []string{"http://proxy.invalid:3128 " + DefaultPath}, 0},
		{"stdin reaches the command", "admin", nil, "line one\nline two\n", []string{"wc -l"}, []string{"2"}, 0},
		{"stderr is forwarded", "admin", nil, "", []string{"echo oops >&2; exit 1"}, []string{"oops"}, 1},
		{"killed by a signal", "admin", nil, "", []string{"kill -TERM $$"}, nil, 255},
		{"exec with a pty", "admin", []string{"-tt"}, "", []string{"tty; echo TERM=$TERM; stty size"}, []string{"/dev/pts/", "TERM="}, 0},
		{"interactive login shell with a pty", "admin", []string{"-tt"}, "echo marker-$((6*7))\nexit 3\n", nil, []string{"marker-42"}, 3},
		{"login shell without a pty", "kestrel", []string{"-T"}, "echo $0; id -u\n", nil, []string{"-sh", "65534"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := e.ssh(t, tt.stdin, tt.user, append(append([]string{}, key...), tt.opts...), tt.command...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q does not contain %q", out, w)
				}
			}
		})
	}
}

// TestUnderReaper runs sessions the way PID 1 does: a reaper collects
// every child with wait4(-1), and the server gets statuses from it.
func TestUnderReaper(t *testing.T) {
	rp := reaper.New(nil)
	e := setupWith(t, false, rp) // runs ssh-keygen with exec.Cmd.Wait: before the loop
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rp.Loop(ctx)
	key := e.keyOpts(e.clientKey)
	for i := 0; i < 3; i++ {
		if out, code := e.ssh(t, "", "admin", key, "echo ok; exit 4"); code != 4 || out != "ok\n" {
			t.Errorf("exec: code %d, output %q", code, out)
		}
	}
	if out, code := e.ssh(t, "", "admin", append(key, "-tt"), "echo pty-ok"); code != 0 || !strings.Contains(out, "pty-ok") {
		t.Errorf("pty exec: code %d, output %q", code, out)
	}
}

// TestSFTPAndSCP copies files with the OpenSSH sftp and scp clients (scp
// speaks SFTP since OpenSSH 9.0); files land with the user's ownership.
func TestSFTPAndSCP(t *testing.T) {
	e := setup(t, false)
	for _, tool := range []string{"sftp", "scp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	local := t.TempDir()
	os.WriteFile(filepath.Join(local, "kubeconfig"), []byte("apiVersion: v1\n"), 0o600)
	common := []string{"-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-i", e.clientKey, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"}

	// scp upload and download as the unprivileged user.
	scp := func(args ...string) {
		t.Helper()
		out, err := exec.Command("scp", append(append(append([]string{}, common...), "-P", fmt.Sprint(e.port)), args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("scp %v: %v\n%s\nserver log:\n%s", args, err, out, e.log)
		}
	}
	scp(filepath.Join(local, "kubeconfig"), "kestrel@127.0.0.1:uploaded")
	uploaded := filepath.Join(e.root, "home/kestrel/uploaded")
	if b, err := os.ReadFile(uploaded); err != nil || string(b) != "apiVersion: v1\n" {
		t.Fatalf("uploaded %q %v", b, err)
	}
	if fi, _ := os.Stat(uploaded); fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("uploaded file owned by uid %d, want the user's 65534", fi.Sys().(*syscall.Stat_t).Uid)
	}
	scp("kestrel@127.0.0.1:uploaded", filepath.Join(local, "back"))
	if b, _ := os.ReadFile(filepath.Join(local, "back")); string(b) != "apiVersion: v1\n" {
		t.Errorf("downloaded %q", b)
	}
	// The kernel enforces the user's permissions.
	out, err := exec.Command("scp", append(append(append([]string{}, common...), "-P", fmt.Sprint(e.port)),
		filepath.Join(local, "kubeconfig"), "kestrel@127.0.0.1:"+filepath.Join(e.root, "etc/evil"))...).CombinedOutput()
	if err == nil {
		t.Errorf("unprivileged upload into etc/ succeeded: %s", out)
	}

	batch := filepath.Join(local, "batch")
	os.WriteFile(batch, []byte("mkdir d\nput "+filepath.Join(local, "kubeconfig")+" d/k\nls -l d\n"), 0o644)
	out, err = exec.Command("sftp", append(append([]string{}, common...), "-P", fmt.Sprint(e.port), "-b", batch, "admin@127.0.0.1")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "k") {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.root, "home/admin/d/k")); err != nil {
		t.Error(err)
	}
}

func TestRefusals(t *testing.T) {
	e := setup(t, false)
	tests := []struct {
		name string
		user string
		opts []string
	}{
		{"key not authorized", "admin", e.keyOpts(e.otherKey)},
		{"unknown user", "nosuch", e.keyOpts(e.clientKey)},
		{"locked account", "locked", e.keyOpts(e.clientKey)},
		{"password auth disabled", "admin", passwordOpts(t, "open sesame")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := e.ssh(t, "", tt.user, tt.opts, "echo ok")
			if code != 255 || strings.Contains(out, "ok\n") {
				t.Errorf("login was not refused: code %d, output %q", code, out)
			}
		})
	}
}

// passwordOpts makes the client answer the password prompt via SSH_ASKPASS.
func passwordOpts(t *testing.T, password string) []string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "askpass")
	os.WriteFile(script, []byte("#!/bin/sh\necho '"+password+"'\n"), 0o755)
	t.Setenv("SSH_ASKPASS", script)
	t.Setenv("SSH_ASKPASS_REQUIRE", "force")
	t.Setenv("DISPLAY", ":0")
	return []string{"-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
		"-o", "NumberOfPasswordPrompts=1"}
}

func TestPasswordAuth(t *testing.T) {
	e := setup(t, true)
	out, code := e.ssh(t, "", "admin", passwordOpts(t, "open sesame"), "echo ok")
	if code != 0 || !strings.Contains(out, "ok\n") {
		t.Errorf("right password: code %d, output %q", code, out)
	}
	for _, tt := range []struct{ user, password string }{
		{"admin", "wrong"},
		{"kestrel", ""},  // no password configured ("*")
		{"kestrel", "*"}, // the placeholder itself is no password
		{"locked", "open sesame"},
	} {
		out, code := e.ssh(t, "", tt.user, passwordOpts(t, tt.password), "echo ok")
		if code != 255 || strings.Contains(out, "ok\n") {
			t.Errorf("%s with password %q: code %d, output %q", tt.user, tt.password, code, out)
		}
	}
	// Keys still work when passwords are enabled.
	if out, code := e.ssh(t, "", "admin", e.keyOpts(e.clientKey), "echo ok"); code != 0 {
		t.Errorf("key login with passwords enabled: %d %q", code, out)
	}
}

func TestHostKeysPersist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh")
	first, err := LoadOrCreateHostKeys(dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 2 || first[0].PublicKey().Type() != "ssh-ed25519" || first[1].PublicKey().Type() != "ecdsa-sha2-nistp256" {
		t.Fatalf("host keys %v", first)
	}
	for _, name := range []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", name, fi.Mode(), err)
		}
		// OpenSSH reads what we wrote.
		if out, err := exec.Command("ssh-keygen", "-l", "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Errorf("ssh-keygen -l %s: %v %s", name, err, out)
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode())
	}
	second, err := LoadOrCreateHostKeys(dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range first {
		if !bytes.Equal(first[i].PublicKey().Marshal(), second[i].PublicKey().Marshal()) {
			t.Errorf("host key %d changed across restarts", i)
		}
	}
	// A corrupt key is moved aside and replaced.
	os.WriteFile(filepath.Join(dir, "ssh_host_ecdsa_key"), []byte("garbage"), 0o600)
	third, err := LoadOrCreateHostKeys(dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ssh_host_ecdsa_key.corrupt")); err != nil {
		t.Errorf("corrupt key not kept aside: %v", err)
	}
	if !bytes.Equal(first[0].PublicKey().Marshal(), third[0].PublicKey().Marshal()) {
		t.Error("the intact ed25519 key changed")
	}
}

// TestHostKeyMatchesClientView checks that the key the client sees is the
// persisted one (what an operator pins in known_hosts).
func TestHostKeyMatchesClientView(t *testing.T) {
	e := setup(t, false)
	out, err := exec.Command("ssh-keyscan", "-p", fmt.Sprint(e.port), "-t", "ed25519", "127.0.0.1").Output()
	if err != nil {
		t.Skipf("ssh-keyscan: %v", err)
	}
	pub, _ := os.ReadFile(filepath.Join(e.keyDir, "ssh_host_ed25519_key.pub"))
	fields := strings.Fields(string(pub))
	if !strings.Contains(string(out), fields[1]) {
		t.Errorf("keyscan %q does not show the persisted key %q", out, fields[1])
	}
}

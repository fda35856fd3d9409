// Package sshd is Kestrel's SSH server, in pure Go on golang.org/x/crypto/ssh,
// because the rootfs is static and ships no OpenSSH.
//
// Users and their credentials come from the account databases under a
// root directory (internal/osfiles/passwd): public-key login against
// ~/.ssh/authorized_keys, and password login, only when enabled, against
// the SHA-crypt hash in /etc/shadow (internal/shacrypt), for passwords of
// at most MaxPasswordLen bytes; unknown and password-less accounts get a
// dummy hash checked, so timing does not tell which names exist. An
// account whose hash starts with '!' is locked for every method, and so is
// every uid-0 account unless Config.PermitRootLogin ("*" in /etc/shadow
// only means "no password"). authorized_keys is read as OpenSSH's
// StrictModes would allow: a regular file of at most 1 MiB, it and its
// parents up to the home owned by the user or root and not group or world
// writable, opened without following links or blocking.
//
// Connections that have not logged in are bounded (startups.go): one that
// sends nothing holds no handshake slot and is dropped after 5 s; at most
// 8 handshakes per source; OpenSSH's MaxStartups 10:30:100 random early
// drop overall; 30 s from accept to login.
//
// Host keys (ed25519 and ECDSA P-256) are generated on first start and
// kept in a directory on the state partition, 0600, so the node's
// identity survives upgrades and reboots.
//
// Sessions run the user's shell with the user's uid, gid, supplementary
// groups and HOME: "shell" requests start a login shell, "exec" requests run
// `shell -c command` and return its exit status (or the signal that killed
// it), with or without a PTY ("pty-req", "window-change" honoured).
//
// The "sftp" subsystem (sftp, and scp since OpenSSH 9.0) runs the command
// Config.SFTPServer names, as the user, like any session; on the node that
// is `kestrel sftp-server`, which calls ServeSFTP (github.com/pkg/sftp).
//
// Limits: no port forwarding, agent forwarding, X11 or other subsystems;
// legacy scp (-O) needs an scp binary on the node; authorized_keys options
// (command=, from=, ...) are not enforced, so keys carrying them are
// refused; no keyboard-interactive auth; no utmp/wtmp records; terminal modes from
// pty-req are not applied. The PTY needs /dev/ptmx and devpts on /dev/pts.
package sshd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
	"github.com/kestrel-os/kestrel/internal/osfiles/passwd"
	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// MaxPasswordLen is the longest password the server hashes, in bytes:
// OpenSSH's MAX_PASSWORD_LEN. SHA-crypt's cost grows with the square of
// the password's length (a 256 KiB one takes minutes), so a longer
// password is refused before it reaches the hasher, even if it is right.
const MaxPasswordLen = 1024

// DefaultPath is the PATH of sessions when Config.Path is empty.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config says where the server finds its users and keys.
type Config struct {
	// Root holds etc/passwd, etc/group, etc/shadow and the home
	// directories ("/" on the node). Shells are run from the real
	// filesystem, not from under Root.
	Root string
	// HostKeyDir keeps the host keys (on the state partition).
	HostKeyDir string
	// PasswordAuth enables password login. Off by default: keys only.
	PasswordAuth bool
	// PermitRootLogin lets uid-0 accounts log in. Off by default, whatever
	// their /etc/shadow entry says ("*" only means "no password").
	PermitRootLogin bool
	// Path is the PATH of sessions; DefaultPath when empty.
	Path string
	// Env is added to every session's environment (KEY=value), e.g. the
	// config's environment section (proxies).
	Env []string
	// Logf receives one line per login, failure and session; nil drops them.
	Logf func(format string, args ...any)
	// AuthFailureDelay slows down password guessing; default one second.
	AuthFailureDelay time.Duration
	// SFTPServer is the argv of the "sftp" subsystem, run as the user with
	// the session's pipes (e.g. /usr/bin/kestrel sftp-server, which calls
	// ServeSFTP on stdin/stdout). Empty: sftp is refused.
	SFTPServer []string
	// Reaper, inside PID 1, collects the sessions' exit statuses (PID 1
	// reaps every child, so exec.Cmd.Wait would race with it). Nil: the
	// server waits for its children itself.
	Reaper *reaper.Reaper
}

// Server is a running SSH server.
type Server struct {
	cfg     Config
	sshCfg  *ssh.ServerConfig
	signers []ssh.Signer
	verify  func(hashed, password string) error // shacrypt.Verify; tests count the calls

	startups *startups // bounds connections not yet authenticated
	dummy    string    // a hash verified for unknown users, as for real ones

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
}

// New loads or creates the host keys and prepares a server.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" || cfg.HostKeyDir == "" {
		return nil, errors.New("sshd: Root and HostKeyDir are required")
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = time.Second
	}
	signers, err := LoadOrCreateHostKeys(cfg.HostKeyDir, cfg.Logf)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		signers:   signers,
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
		startups:  newStartups(),
		verify:    shacrypt.Verify,
	}
	// Unknown and locked users get their password hashed too, against
	// this, so that the answer's timing does not tell which names exist.
	if s.dummy, err = shacrypt.HashSHA512("kestrel-dummy-password", nil); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s.sshCfg = &ssh.ServerConfig{
		PublicKeyCallback: s.checkPublicKey,
		ServerVersion:     "SSH-2.0-Kestrel",
	}
	if cfg.PasswordAuth {
		s.sshCfg.PasswordCallback = s.checkPassword
	}
	for _, k := range signers {
		s.sshCfg.AddHostKey(k)
	}
	return s, nil
}

// HostKeys returns the public host keys, e.g. to print fingerprints on the
// console.
func (s *Server) HostKeys() []ssh.PublicKey {
	var keys []ssh.PublicKey
	for _, k := range s.signers {
		keys = append(keys, k.PublicKey())
	}
	return keys
}

// Serve accepts connections on l until l fails or Close is called.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("sshd: accept: %w", err)
		}
		go s.handleConn(c)
	}
}

// Close stops every listener and drops every connection.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	return nil
}

func (s *Server) handleConn(c net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()

	// Unauthenticated connections are bounded in number and time (see
	// startups.go), so idle or stalled ones cannot lock anybody out nor
	// exhaust PID 1 (as OpenSSH's MaxStartups and LoginGraceTime).
	src := source(c.RemoteAddr())
	if err := s.startups.enterIdle(src); err != nil {
		s.cfg.Logf("sshd: %s: dropped: %v", c.RemoteAddr(), err)
		return
	}
	now := time.Now()
	gc := &gatedConn{Conn: c, st: s.startups, src: src, accepted: now}
	c.SetDeadline(now.Add(versionTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(gc, s.sshCfg)
	gc.done()
	if err != nil {
		s.cfg.Logf("sshd: %s: handshake: %v", c.RemoteAddr(), err)
		return
	}
	c.SetDeadline(time.Time{})
	s.cfg.Logf("sshd: %s: %s logged in (%s)", c.RemoteAddr(), sconn.User(), sconn.Permissions.Extensions["method"])
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleSession(sconn, ch, creqs)
		}()
	}
	wg.Wait()
	s.cfg.Logf("sshd: %s: %s disconnected", c.RemoteAddr(), sconn.User())
}

// account returns the user's passwd entry, refusing locked accounts.
func (s *Server) account(name string) (passwd.User, passwd.Shadow, error) {
	u, err := passwd.LookupUser(s.cfg.Root, name)
	if err != nil {
		return u, passwd.Shadow{}, err
	}
	if u.Name != name { // LookupUser also matches numeric uids
		return u, passwd.Shadow{}, fmt.Errorf("no user %q", name)
	}
	sh, err := passwd.LookupShadow(s.cfg.Root, name)
	if err != nil && !errors.Is(err, passwd.ErrNotFound) {
		return u, sh, err
	}
	if strings.HasPrefix(sh.Hash, "!") {
		return u, sh, fmt.Errorf("account %s is locked", name)
	}
	if u.UID == 0 && !s.cfg.PermitRootLogin {
		return u, sh, fmt.Errorf("account %s has uid 0: root login is off", name)
	}
	return u, sh, nil
}

func (s *Server) checkPublicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	u, _, err := s.account(meta.User())
	if err != nil {
		s.cfg.Logf("sshd: %s: public key for %q refused: %v", meta.RemoteAddr(), meta.User(), err)
		return nil, errors.New("refused")
	}
	path := filepath.Join(s.cfg.Root, u.Home, ".ssh", "authorized_keys")
	data, err := readAuthorizedKeys(filepath.Join(s.cfg.Root, u.Home), u.UID)
	if err != nil {
		s.cfg.Logf("sshd: %s: public key for %q refused: %v", meta.RemoteAddr(), meta.User(), err)
		return nil, errors.New("refused")
	}
	want := key.Marshal()
	for rest := data; len(rest) > 0; {
		k, _, options, next, err := ssh.ParseAuthorizedKey(rest)
		if err != nil {
			break
		}
		rest = next
		if len(options) > 0 {
			continue // options are not enforced, so such keys are not honoured
		}
		if subtle.ConstantTimeCompare(k.Marshal(), want) == 1 {
			return &ssh.Permissions{Extensions: map[string]string{
				"method": "publickey " + ssh.FingerprintSHA256(key),
			}}, nil
		}
	}
	s.cfg.Logf("sshd: %s: public key %s for %q not in %s", meta.RemoteAddr(), ssh.FingerprintSHA256(key), meta.User(), path)
	return nil, errors.New("refused")
}

func (s *Server) checkPassword(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	var err error
	if len(password) > MaxPasswordLen {
		err = fmt.Errorf("password of %d bytes is longer than %d: refused without hashing", len(password), MaxPasswordLen)
	}
	var sh passwd.Shadow
	if err == nil {
		_, sh, err = s.account(meta.User())
		if err != nil || sh.Hash == "" || sh.Hash == "*" {
			// The same work as for a real account: no timing oracle.
			s.verify(s.dummy, string(password))
			if err == nil {
				err = fmt.Errorf("account %s has no password", meta.User())
			}
		} else {
			err = s.verify(sh.Hash, string(password))
		}
	}
	if err != nil {
		s.cfg.Logf("sshd: %s: password for %q refused: %v", meta.RemoteAddr(), meta.User(), err)
		time.Sleep(s.cfg.AuthFailureDelay)
		return nil, errors.New("refused")
	}
	return &ssh.Permissions{Extensions: map[string]string{"method": "password"}}, nil
}

// Host key files, OpenSSH's names, in the order they are offered.
var hostKeyTypes = []struct {
	file string
	gen  func() (crypto.Signer, error)
}{
	{"ssh_host_ed25519_key", func() (crypto.Signer, error) {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}},
	{"ssh_host_ecdsa_key", func() (crypto.Signer, error) {
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}},
}

// LoadOrCreateHostKeys reads the host keys from dir, generating (and
// persisting, 0600 in a 0700 dir, OpenSSH format, with a .pub next to each)
// any that is missing. A key file that does not parse is moved aside to
// NAME.corrupt and replaced, so a damaged file cannot keep a node
// unreachable; logf reports it.
func LoadOrCreateHostKeys(dir string, logf func(string, ...any)) ([]ssh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshd: host key dir %s: %w", dir, err)
	}
	var signers []ssh.Signer
	for _, t := range hostKeyTypes {
		path := filepath.Join(dir, t.file)
		data, err := os.ReadFile(path)
		if err == nil {
			signer, perr := ssh.ParsePrivateKey(data)
			if perr == nil {
				signers = append(signers, signer)
				continue
			}
			logf("sshd: host key %s does not parse (%v): moved to %s.corrupt, generating a new one", path, perr, path)
			if err := os.Rename(path, path+".corrupt"); err != nil {
				return nil, fmt.Errorf("sshd: move aside %s: %w", path, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("sshd: read host key: %w", err)
		}
		key, err := t.gen()
		if err != nil {
			return nil, fmt.Errorf("sshd: generate %s: %w", t.file, err)
		}
		block, err := ssh.MarshalPrivateKey(key, "")
		if err != nil {
			return nil, fmt.Errorf("sshd: encode %s: %w", t.file, err)
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(block), 0o600, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			return nil, fmt.Errorf("sshd: %w", err)
		}
		signer, err := ssh.NewSignerFromSigner(key)
		if err != nil {
			return nil, fmt.Errorf("sshd: %s: %w", t.file, err)
		}
		if err := atomicfile.Write(path+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644, atomicfile.NoChown, atomicfile.NoChown); err != nil {
			return nil, fmt.Errorf("sshd: %w", err)
		}
		logf("sshd: generated host key %s %s", t.file, ssh.FingerprintSHA256(signer.PublicKey()))
		signers = append(signers, signer)
	}
	return signers, nil
}

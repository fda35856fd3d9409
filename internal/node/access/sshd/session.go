package sshd

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/osfiles/passwd"
)

// session is one "session" channel: at most one process.
type session struct {
	srv  *Server
	conn *ssh.ServerConn
	ch   ssh.Channel
	user passwd.User

	mu      sync.Mutex
	env     []string
	term    string
	pty     *pty
	cmd     *exec.Cmd
	started bool
	exited  atomic.Bool
}

// Payloads of the session requests (RFC 4254, section 6).
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

type windowChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

type envRequest struct{ Name, Value string }

type execRequest struct{ Command string }

type signalRequest struct{ Signal string }

func (s *Server) handleSession(conn *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	u, _, err := s.account(conn.User())
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "kestrel sshd: %v\r\n", err)
		return
	}
	sess := &session{srv: s, conn: conn, ch: ch, user: u}
	defer sess.closePTY()
	done := make(chan struct{})
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				sess.kill()
				return
			}
			ok = sess.handle(req, done)
			if req.WantReply {
				req.Reply(ok, nil)
			}
		case <-done:
			// Drain further requests so the client is never blocked.
			go ssh.DiscardRequests(reqs)
			return
		}
	}
}

// handle serves one request and says whether it succeeded. done is closed
// when the started process has ended and its status was sent.
func (s *session) handle(req *ssh.Request, done chan struct{}) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Type {
	case "env":
		var e envRequest
		if ssh.Unmarshal(req.Payload, &e) != nil || !allowedEnv(e.Name) {
			return false
		}
		s.env = append(s.env, e.Name+"="+e.Value)
		return true
	case "pty-req":
		var p ptyRequest
		if ssh.Unmarshal(req.Payload, &p) != nil || s.pty != nil || s.started {
			return false
		}
		pt, err := openPTY(s.user.UID)
		if err != nil {
			s.srv.cfg.Logf("sshd: %s: pty: %v", s.conn.User(), err)
			return false
		}
		pt.resize(p.Cols, p.Rows)
		s.pty, s.term = pt, p.Term
		return true
	case "window-change":
		var w windowChange
		if ssh.Unmarshal(req.Payload, &w) != nil || s.pty == nil {
			return false
		}
		s.pty.resize(w.Cols, w.Rows)
		return true
	case "shell", "exec":
		if s.started {
			return false
		}
		command := ""
		if req.Type == "exec" {
			var e execRequest
			if ssh.Unmarshal(req.Payload, &e) != nil {
				return false
			}
			command = e.Command
		}
		if err := s.start(command, req.Type == "shell", nil, done); err != nil {
			s.srv.cfg.Logf("sshd: %s: %s: %v", s.conn.User(), req.Type, err)
			fmt.Fprintf(s.ch.Stderr(), "kestrel sshd: %v\r\n", err)
			return false
		}
		s.started = true
		return true
	case "signal":
		var sig signalRequest
		if ssh.Unmarshal(req.Payload, &sig) != nil || s.cmd == nil || s.cmd.Process == nil {
			return false
		}
		n := unix.SignalNum("SIG" + sig.Signal)
		if n == 0 {
			return false
		}
		// The process leads its own session: signal the whole group.
		return syscall.Kill(-s.cmd.Process.Pid, n) == nil
	case "subsystem":
		var sub execRequest
		if s.started || ssh.Unmarshal(req.Payload, &sub) != nil || sub.Command != "sftp" || len(s.srv.cfg.SFTPServer) == 0 {
			return false
		}
		if err := s.start("", false, s.srv.cfg.SFTPServer, done); err != nil {
			s.srv.cfg.Logf("sshd: %s: sftp: %v", s.conn.User(), err)
			return false
		}
		s.started = true
		return true
	default: // x11-req, auth-agent-req@openssh.com, ...
		return false
	}
}

// allowedEnv lists what a client may set: locale and terminal only, as
// OpenSSH's default AcceptEnv on Debian.
func allowedEnv(name string) bool {
	return name == "LANG" || name == "TERM" || name == "COLORTERM" || strings.HasPrefix(name, "LC_")
}

// start runs, as the user, the user's shell (a login shell, or -c
// command) or, when subsystem is given, that argv.
func (s *session) start(command string, login bool, subsystem []string, done chan struct{}) error {
	u := s.user
	shell := u.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	// The shell runs from the real filesystem: Root only locates the
	// account databases and homes (it is "/" on the node).
	var cmd *exec.Cmd
	if len(subsystem) > 0 {
		cmd = exec.Command(subsystem[0], subsystem[1:]...)
	} else if login {
		cmd = exec.Command(shell)
		cmd.Args = []string{"-" + filepath.Base(shell)} // argv[0] "-sh": a login shell
	} else {
		cmd = exec.Command(shell, "-c", command)
		cmd.Args[0] = filepath.Base(shell)
	}
	groups, err := supplementaryGroups(s.srv.cfg.Root, u.Name)
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid: true,
		Credential: &syscall.Credential{
			Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups,
		},
	}
	cmd.Dir = "/"
	if fi, err := os.Stat(filepath.Join(s.srv.cfg.Root, u.Home)); err == nil && fi.IsDir() {
		cmd.Dir = filepath.Join(s.srv.cfg.Root, u.Home)
	}
	cmd.Env = append([]string{
		"PATH=" + s.srv.cfg.Path,
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"SHELL=" + shell,
		"SSH_CONNECTION=" + sshConnection(s.conn),
	}, s.srv.cfg.Env...)
	cmd.Env = append(cmd.Env, s.env...)
	if command != "" {
		cmd.Env = append(cmd.Env, "SSH_ORIGINAL_COMMAND="+command)
	}

	if s.pty != nil {
		if s.term != "" {
			cmd.Env = append(cmd.Env, "TERM="+s.term)
		}
		cmd.Env = append(cmd.Env, "SSH_TTY="+s.pty.name)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = s.pty.tty, s.pty.tty, s.pty.tty
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		exitc, err := s.srv.cfg.Reaper.Start(cmd)
		if err != nil {
			return fmt.Errorf("start %s: %w", shell, err)
		}
		s.pty.tty.Close() // the child holds it now
		s.pty.tty = nil
		s.cmd = cmd
		go io.Copy(s.pty.master, s.ch)
		output := make(chan struct{})
		go func() {
			io.Copy(s.ch, s.pty.master) // ends with EIO when the last tty holder exits
			close(output)
		}()
		go func() {
			e := <-exitc
			s.exited.Store(true)
			select { // background jobs may keep the tty: do not wait for them
			case <-output:
			case <-time.After(2 * time.Second):
			}
			s.finish(e)
			close(done)
		}()
		return nil
	}

	// Plain pipes, so that nothing depends on exec.Cmd.Wait (which PID 1
	// must not call: its reaper collects the status).
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinR.Close()
		stdinW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{stdinR, stdinW, outR, outW} {
			f.Close()
		}
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, outW, errW
	exitc, err := s.srv.cfg.Reaper.Start(cmd)
	for _, f := range []*os.File{stdinR, outW, errW} {
		f.Close() // the child's ends
	}
	if err != nil {
		stdinW.Close()
		outR.Close()
		errR.Close()
		return fmt.Errorf("start %s: %w", shell, err)
	}
	s.cmd = cmd
	go func() {
		io.Copy(stdinW, s.ch) // not waited for: a client may keep stdin open
		stdinW.Close()
	}()
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		io.Copy(s.ch, outR)
		outR.Close()
		copies.Done()
	}()
	go func() {
		io.Copy(s.ch.Stderr(), errR)
		errR.Close()
		copies.Done()
	}()
	go func() {
		e := <-exitc
		s.exited.Store(true)
		// As OpenSSH: all output is delivered, until every process that
		// holds the pipes (background jobs too) has closed them.
		copies.Wait()
		s.finish(e)
		close(done)
	}()
	return nil
}

// finish reports how the process ended (RFC 4254, section 6.10).
func (s *session) finish(e reaper.Exit) {
	s.ch.CloseWrite()
	if e.Status.Signaled() {
		name := strings.TrimPrefix(unix.SignalName(e.Status.Signal()), "SIG")
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}{name, e.Status.CoreDump(), "", ""}))
	} else {
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(e.Status.ExitStatus())}))
	}
	s.ch.Close()
}

// kill ends the process of a session whose channel went away.
func (s *session) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil && !s.exited.Load() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGHUP)
	}
}

func (s *session) closePTY() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pty != nil {
		s.pty.close()
	}
}

func sshConnection(c *ssh.ServerConn) string {
	host := func(a string) string {
		h, p, _ := strings.Cut(a, ":")
		if i := strings.LastIndex(a, ":"); i >= 0 {
			h, p = strings.Trim(a[:i], "[]"), a[i+1:]
		}
		return h + " " + p
	}
	return host(c.RemoteAddr().String()) + " " + host(c.LocalAddr().String())
}

// supplementaryGroups returns the gids of the groups that list name.
func supplementaryGroups(root, name string) ([]uint32, error) {
	groups, err := passwd.ReadGroups(filepath.Join(root, passwd.GroupFile))
	if err != nil {
		return nil, err
	}
	var gids []uint32
	for _, g := range groups {
		if slices.Contains(g.Members, name) {
			gids = append(gids, uint32(g.GID))
		}
	}
	return gids, nil
}

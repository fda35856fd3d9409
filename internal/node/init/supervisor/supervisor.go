// Package supervisor runs long-lived services for PID 1: it starts them,
// restarts them with exponential backoff when they exit, logs their
// output to rotated files, stops them with SIGTERM then SIGKILL, and
// reports their state for `kestrel status`.
//
// Backoff: a service that exits before StableAfter is restarted after
// MinBackoff, doubled for each further quick exit up to MaxBackoff; a run
// that lasted StableAfter resets the delay. Each service runs in its own
// process group (or session, for a console service) so stopping it
// signals everything it spawned; with CgroupRoot set, each also gets its
// own cgroup (CLONE_INTO_CGROUP).
//
// Exit statuses come from a reaper.Reaper, because PID 1 reaps every
// child. Limits: no dependencies between services, no readiness
// notification, no one-shot tasks, every service restarts on any exit.
package supervisor

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/kestrel-os/kestrel/internal/node/init/reaper"
	"github.com/kestrel-os/kestrel/internal/node/init/rotlog"
)

// Spec describes a service.
type Spec struct {
	Name string
	Path string // the program, and its argv[0]
	// Exe, if set, is the file exec'd instead of Path, which stays
	// argv[0] (PID 1 runs its own binary as /proc/self/exe this way).
	Exe  string
	Args []string
	Env  []string // nil: a minimal PATH/HOME environment
	Dir  string   // "" is "/"
	// TTY, if set, runs the service on this terminal as a session leader
	// with it as controlling terminal, instead of logging to a file.
	TTY string
}

// Config tunes a Supervisor.
type Config struct {
	Reaper      *reaper.Reaper
	LogDir      string // <LogDir>/<name>.log
	LogMaxSize  int64
	LogKeep     int
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	StableAfter time.Duration
	StopTimeout time.Duration // SIGTERM to SIGKILL
	CgroupRoot  string        // "" disables per-service cgroups
	Now         func() time.Time
	Logf        func(format string, args ...any)
}

// Defaults fills zero fields with the values PID 1 uses.
func (c Config) Defaults() Config {
	if c.LogMaxSize == 0 {
		c.LogMaxSize = 10 << 20
	}
	if c.LogKeep == 0 {
		c.LogKeep = 3
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = time.Minute
	}
	if c.StableAfter == 0 {
		c.StableAfter = 30 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}

// State of a service.
type State string

// Service states.
const (
	Running State = "running"
	Backoff State = "backoff" // waiting to restart
	Stopped State = "stopped"
)

// Status is a service's state as `kestrel status` shows it.
type Status struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	Since     time.Time `json:"since"`               // start of the current state
	NextStart time.Time `json:"next_start,omitzero"` // in Backoff
	LastExit  string    `json:"last_exit,omitempty"`
	// LogError is why the service's output cannot be logged right now
	// (a full state partition); its output is drained and dropped
	// meanwhile, so the service does not block or die of SIGPIPE.
	LogError string `json:"log_error,omitempty"`
}

// Supervisor owns a set of services.
type Supervisor struct {
	cfg      Config
	mu       sync.Mutex
	services map[string]*service

	weightMu sync.Mutex
	low      bool            // LowPriority is on
	lowered  map[string]bool // cgroups given LowWeight
}

// CPU weights (cgroup v2 cpu.weight) of a service's cgroup: LowWeight
// while LowPriority is on, then the kernel's default.
const (
	LowWeight     = 1
	DefaultWeight = 100
)

type service struct {
	spec Spec
	log  *rotlog.Writer // nil for TTY services
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	st       Status
	failures int // consecutive quick exits
	stopOnce sync.Once
}

// New returns a Supervisor.
func New(cfg Config) *Supervisor {
	return &Supervisor{cfg: cfg.Defaults(), services: map[string]*service{}}
}

// Start adds a service and starts it.
func (s *Supervisor) Start(spec Spec) error {
	if spec.Name == "" || spec.Path == "" {
		return fmt.Errorf("service needs a name and a path: %+v", spec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.services[spec.Name]; ok {
		return fmt.Errorf("service %s already exists", spec.Name)
	}
	svc := &service{spec: spec, stop: make(chan struct{}), done: make(chan struct{})}
	if spec.TTY == "" && s.cfg.LogDir != "" {
		// A log that cannot be opened now (a full state partition) does
		// not keep the service from starting: the writer retries.
		svc.log = rotlog.New(filepath.Join(s.cfg.LogDir, spec.Name+".log"), s.cfg.LogMaxSize, s.cfg.LogKeep)
		if err := svc.log.Err(); err != nil {
			s.cfg.Logf("service %s: %v (output dropped until it can be written)", spec.Name, err)
		}
	}
	svc.st = Status{Name: spec.Name, State: Backoff, Since: s.cfg.Now()}
	s.services[spec.Name] = svc
	go s.run(svc)
	return nil
}

// LowPriority(true) makes the services that start from now on, restarts
// included, run at LowWeight: when PID 1 (at the default weight) has work,
// they get about 1% of the CPU, and all of it when PID 1 waits. Stage 2
// turns it on for the boot: on a machine with few CPUs, a service started
// before the ready line (sshd's start, TCG: ~0.15 s of CPU) otherwise
// delays PID 1's DHCP and hooks by as much. LowPriority(false) puts every
// lowered cgroup back to DefaultWeight. It needs per-service cgroups
// (Config.CgroupRoot) with the cpu controller: without them services run
// as they would without it.
func (s *Supervisor) LowPriority(on bool) {
	s.weightMu.Lock()
	defer s.weightMu.Unlock()
	s.low = on
	if on {
		return
	}
	for name := range s.lowered {
		s.setWeight(name, DefaultWeight)
	}
	s.lowered = nil
}

// weigh lowers the cgroup of a service just started while LowPriority is
// on. Otherwise there is nothing to do: LowPriority(false) has put every
// lowered cgroup back, and a new cgroup starts at DefaultWeight.
func (s *Supervisor) weigh(name string) {
	s.weightMu.Lock()
	defer s.weightMu.Unlock()
	if !s.low || !s.setWeight(name, LowWeight) {
		return
	}
	if s.lowered == nil {
		s.lowered = map[string]bool{}
	}
	s.lowered[name] = true
}

// setWeight writes the cgroup's cpu.weight; false when it cannot (no
// cgroups, no cpu controller), which is not an error: the service runs at
// the weight it has.
func (s *Supervisor) setWeight(name string, w int) bool {
	if s.cfg.CgroupRoot == "" {
		return false
	}
	f, err := os.OpenFile(filepath.Join(s.cfg.CgroupRoot, name, "cpu.weight"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return false
	}
	_, err = fmt.Fprintf(f, "%d\n", w)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err == nil
}

// Status returns every service's state, sorted by name.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	var out []Status
	for _, svc := range s.services {
		svc.mu.Lock()
		st := svc.st
		svc.mu.Unlock()
		if svc.log != nil {
			if err := svc.log.Err(); err != nil {
				st.LogError = err.Error()
			}
		}
		out = append(out, st)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stop stops one service and waits until it is gone; it stays stopped.
func (s *Supervisor) Stop(name string) error {
	s.mu.Lock()
	svc, ok := s.services[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no service %s", name)
	}
	svc.stopOnce.Do(func() { close(svc.stop) })
	<-svc.done
	return nil
}

// Replace runs spec in place of the service of the same name: the old
// process is stopped (TERM, then KILL after the stop timeout) and waited
// for, then spec starts with a fresh backoff. A service not running yet
// is simply started. For a service whose configuration changed after it
// started (sshd when the network-up phase turns password login on).
func (s *Supervisor) Replace(spec Spec) error {
	s.mu.Lock()
	_, ok := s.services[spec.Name]
	s.mu.Unlock()
	if ok {
		if err := s.Stop(spec.Name); err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.services, spec.Name)
		s.mu.Unlock()
	}
	return s.Start(spec)
}

// StopAll stops every service in parallel and waits for all of them.
func (s *Supervisor) StopAll() {
	s.mu.Lock()
	var names []string
	for n := range s.services {
		names = append(names, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() { defer wg.Done(); s.Stop(n) }()
	}
	wg.Wait()
}

// Delay returns the backoff before restart number failures (1-based).
func (c Config) Delay(failures int) time.Duration {
	d := c.MinBackoff
	for i := 1; i < failures && d < c.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, c.MaxBackoff)
}

func (s *Supervisor) set(svc *service, f func(st *Status)) {
	svc.mu.Lock()
	f(&svc.st)
	svc.mu.Unlock()
}

func (s *Supervisor) event(svc *service, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if svc.log != nil {
		fmt.Fprintf(svc.log, "%s kestrel: %s\n", s.cfg.Now().Format(time.RFC3339), msg)
	}
	s.cfg.Logf("service %s: %s", svc.spec.Name, msg)
}

func (s *Supervisor) run(svc *service) {
	defer close(svc.done)
	defer func() { // a bug here must not take PID 1 down with it
		if r := recover(); r != nil {
			s.cfg.Logf("service %s: supervisor panic: %v", svc.spec.Name, r)
		}
	}()
	defer func() {
		s.set(svc, func(st *Status) { st.State, st.PID, st.Since, st.NextStart = Stopped, 0, s.cfg.Now(), time.Time{} })
		if svc.log != nil {
			svc.log.Close()
		}
	}()
	for first := true; ; first = false {
		if !first {
			delay := s.cfg.Delay(svc.failures)
			s.set(svc, func(st *Status) {
				st.State, st.PID, st.NextStart, st.Since = Backoff, 0, s.cfg.Now().Add(delay), s.cfg.Now()
			})
			select {
			case <-svc.stop:
				return
			case <-time.After(delay):
			}
			// The backoff is over: its NextStart goes with it, so nobody
			// reads the new count next to the old delay.
			s.set(svc, func(st *Status) { st.Restarts++; st.NextStart = time.Time{} })
		}
		select {
		case <-svc.stop:
			return
		default:
		}
		started := s.cfg.Now()
		cmd, exitc, err := s.start(svc)
		if err != nil {
			svc.failures++
			s.event(svc, "cannot start: %v", err)
			s.set(svc, func(st *Status) { st.LastExit = "start failed: " + err.Error() })
			continue
		}
		pid := cmd.Process.Pid
		s.set(svc, func(st *Status) { st.State, st.PID, st.Since, st.NextStart = Running, pid, started, time.Time{} })
		s.event(svc, "started, pid %d", pid)

		var e reaper.Exit
		stopping := false
		select {
		case e = <-exitc:
		case <-svc.stop:
			stopping = true
			e = s.terminate(svc, pid, exitc)
		}
		cmd.Process.Release()
		s.event(svc, "pid %d ended: %s", pid, e)
		s.set(svc, func(st *Status) { st.LastExit = e.String() })
		if stopping {
			return
		}
		if s.cfg.Now().Sub(started) >= s.cfg.StableAfter {
			svc.failures = 0
		}
		svc.failures++
	}
}

// terminate sends SIGTERM to the service's process group, then SIGKILL
// after StopTimeout, and returns its exit.
func (s *Supervisor) terminate(svc *service, pid int, exitc <-chan reaper.Exit) reaper.Exit {
	syscall.Kill(-pid, syscall.SIGTERM)
	syscall.Kill(pid, syscall.SIGTERM)
	if svc.spec.TTY != "" {
		syscall.Kill(-pid, syscall.SIGHUP) // shells ignore TERM
	}
	select {
	case e := <-exitc:
		syscall.Kill(-pid, syscall.SIGKILL) // stragglers of the group
		return e
	case <-time.After(s.cfg.StopTimeout):
	}
	s.event(svc, "pid %d did not stop within %v, killing", pid, s.cfg.StopTimeout)
	syscall.Kill(-pid, syscall.SIGKILL)
	syscall.Kill(pid, syscall.SIGKILL)
	return <-exitc
}

func (s *Supervisor) start(svc *service) (*exec.Cmd, <-chan reaper.Exit, error) {
	sp := svc.spec
	// newCmd is the command without its SysProcAttr; an exec.Cmd cannot
	// be started twice, so the retry below takes a fresh one.
	newCmd := func() *exec.Cmd {
		cmd := exec.Command(sp.Path, sp.Args...)
		if sp.Exe != "" {
			cmd.Path = sp.Exe
		}
		cmd.Env = sp.Env
		if cmd.Env == nil {
			cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
		}
		cmd.Dir = sp.Dir
		if cmd.Dir == "" {
			cmd.Dir = "/"
		}
		return cmd
	}
	cmd := newCmd()
	attr := &syscall.SysProcAttr{Setpgid: true}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	var pr *os.File
	if sp.TTY != "" {
		t, err := os.OpenFile(sp.TTY, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("open %s: %w", sp.TTY, err)
		}
		closers = append(closers, t)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = t, t, t
		attr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else if svc.log != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, w)
		pr = r
		cmd.Stdout, cmd.Stderr = w, w
	}
	if s.cfg.CgroupRoot != "" {
		dir := filepath.Join(s.cfg.CgroupRoot, sp.Name)
		if err := os.MkdirAll(dir, 0o755); err == nil {
			if fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0); err == nil {
				closers = append(closers, fdCloser(fd))
				attr.UseCgroupFD, attr.CgroupFD = true, fd
			}
		}
	}
	cmd.SysProcAttr = attr
	exitc, err := s.cfg.Reaper.Start(cmd)
	if err != nil && attr.UseCgroupFD {
		// A kernel without clone3 cgroup support: run in PID 1's cgroup.
		attr.UseCgroupFD = false
		stdin, stdout, stderr := cmd.Stdin, cmd.Stdout, cmd.Stderr
		cmd = newCmd()
		cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = stdin, stdout, stderr, attr
		exitc, err = s.cfg.Reaper.Start(cmd)
	}
	if err != nil {
		if pr != nil {
			pr.Close()
		}
		return nil, nil, err
	}
	// Weighed once the child has exec'd (Start returns after the exec):
	// until then it holds copies of every descriptor PID 1 had open, and a
	// child at the lowest weight on a busy CPU held them long enough for
	// the installer's second exclusive open of the disk to fail (EBUSY).
	s.weigh(sp.Name)
	if pr != nil {
		go s.drain(svc, pr)
	}
	return cmd, exitc, nil
}

// drain copies a service's output to its log until the service and its
// children close the pipe. Unlike io.Copy it goes on reading after a
// failed write (a full disk, EIO, a failed rotation): a reader that stops
// makes the service block on a full pipe or die of SIGPIPE, and the
// supervisor restart it in a loop. What cannot be written is dropped; the
// console hears once when logging fails and once when it works again.
func (s *Supervisor) drain(svc *service, pr *os.File) {
	defer pr.Close()
	defer func() {
		if r := recover(); r != nil {
			s.cfg.Logf("service %s: log drain panic: %v", svc.spec.Name, r)
			io.Copy(io.Discard, pr)
		}
	}()
	buf := make([]byte, 32<<10)
	failing := false
	for {
		n, err := pr.Read(buf)
		if n > 0 {
			_, werr := svc.log.Write(buf[:n])
			switch {
			case werr != nil && !failing:
				failing = true
				s.cfg.Logf("service %s: cannot write its log: %v (output dropped until it can)", svc.spec.Name, werr)
			case werr == nil && failing:
				failing = false
				s.cfg.Logf("service %s: log writable again", svc.spec.Name)
			}
		}
		if err != nil {
			return
		}
	}
}

type fdCloser int

func (f fdCloser) Close() error { return syscall.Close(int(f)) }

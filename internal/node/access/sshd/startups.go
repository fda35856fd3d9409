package sshd

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Limits on connections that have not logged in yet, so that a few idle
// or stalled TCP connections cannot lock everyone out (issue 10 item 3).
const (
	// versionTimeout bounds the wait for the client's first bytes (its
	// version line). Until they arrive a connection holds no handshake
	// slot, so idle connections only cost a goroutine and a descriptor,
	// bounded by maxIdlePerSource and, overall, by a random early drop
	// from idleBegin (probability rising linearly to 1 at maxIdle), so
	// that a flood from many sources still lets some logins through.
	versionTimeout   = 5 * time.Second
	idleBegin        = 64
	maxIdle          = 256
	maxIdlePerSource = 32

	// loginGraceTime bounds a connection from accept to login, as
	// OpenSSH's LoginGraceTime (whose default is 120 s; 30 s is plenty
	// for a key or a typed password and frees slots four times faster).
	loginGraceTime = 30 * time.Second

	// OpenSSH's MaxStartups 10:30:100: from 10 handshakes in progress a
	// new one is dropped with probability 30 %, rising linearly to 100 %
	// at 100.
	startupsBegin = 10
	startupsRate  = 30
	startupsFull  = 100

	// maxPerSource is the handshakes one source (IPv4 address, IPv6 /64)
	// may have in progress: below startupsBegin, so one source alone
	// never makes the server drop anybody else's connection.
	maxPerSource = 8
)

// startups counts connections that have not logged in, in total and by
// source, in two stages: idle (no byte received yet) and handshaking.
type startups struct {
	mu          sync.Mutex
	idle        int
	idleBy      map[string]int
	handshaking int
	handshakeBy map[string]int
	percent     func() int // uniform in [0, 100); tests fix it
}

func newStartups() *startups {
	return &startups{idleBy: map[string]int{}, handshakeBy: map[string]int{}, percent: func() int { return rand.IntN(100) }}
}

// source is the key connections are counted by.
func source(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// enterIdle admits a new connection as idle, or says why not.
func (s *startups) enterIdle(src string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle >= idleBegin && (s.idle >= maxIdle || s.percent() < 100*(s.idle-idleBegin)/(maxIdle-idleBegin)) {
		return fmt.Errorf("%d connections waiting for a version line: dropped early", s.idle)
	}
	if s.idleBy[src] >= maxIdlePerSource {
		return fmt.Errorf("%d connections from %s waiting for a version line", s.idleBy[src], src)
	}
	s.idle++
	s.idleBy[src]++
	return nil
}

// startHandshake moves an idle connection to the handshaking stage when
// its first bytes arrive, unless the per-source limit or MaxStartups'
// random early drop refuses it; either way it is no longer idle.
func (s *startups) startHandshake(src string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leaveIdleLocked(src)
	if n := s.handshakeBy[src]; n >= maxPerSource {
		return fmt.Errorf("%d handshakes from %s in progress", n, src)
	}
	if n := s.handshaking; n >= startupsBegin {
		p := startupsRate + (100-startupsRate)*(n-startupsBegin)/(startupsFull-startupsBegin)
		if n >= startupsFull || s.percent() < p {
			return fmt.Errorf("%d handshakes in progress: dropped early (MaxStartups %d:%d:%d)", n, startupsBegin, startupsRate, startupsFull)
		}
	}
	s.handshaking++
	s.handshakeBy[src]++
	return nil
}

func (s *startups) leaveIdle(src string) {
	s.mu.Lock()
	s.leaveIdleLocked(src)
	s.mu.Unlock()
}

func (s *startups) leaveIdleLocked(src string) {
	s.idle--
	if s.idleBy[src]--; s.idleBy[src] <= 0 {
		delete(s.idleBy, src)
	}
}

func (s *startups) endHandshake(src string) {
	s.mu.Lock()
	s.handshaking--
	if s.handshakeBy[src]--; s.handshakeBy[src] <= 0 {
		delete(s.handshakeBy, src)
	}
	s.mu.Unlock()
}

// gatedConn is a connection before login: its first read that returns
// bytes asks the startups for a handshake slot (and closes the
// connection if refused), then extends the deadline from versionTimeout
// to loginGraceTime from accept.
type gatedConn struct {
	net.Conn
	st       *startups
	src      string
	accepted time.Time

	mu    sync.Mutex // ssh's read loop outlives the handshake
	state int        // 0 idle, 1 handshaking, 2 refused, 3 released
	err   error
}

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == 2 {
		return 0, c.err
	}
	if n > 0 && c.state == 0 {
		if c.err = c.st.startHandshake(c.src); c.err != nil {
			c.state = 2
			return 0, c.err
		}
		c.state = 1
		c.Conn.SetDeadline(c.accepted.Add(loginGraceTime))
	}
	return n, err
}

// done releases whatever the connection holds in the startups.
func (c *gatedConn) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case 0:
		c.st.leaveIdle(c.src)
	case 1:
		c.st.endHandshake(c.src)
	}
	c.state = 3
}

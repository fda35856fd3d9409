// Package ntp sets the clock from NTP servers with a one-shot SNTP query
// (RFC 4330): enough for an edge node to get TLS certificates and k3s
// tokens right after boot, which is what it needs the time for.
//
// The clock and the dialer are parameters, so tests run against a local
// UDP server and a fake clock.
//
// Limits: the clock is stepped, never slewed, and only when Sync is called
// (no daemon, no drift discipline: call it again periodically to stay
// close); the first server that gives a valid answer wins, no
// multi-server selection; no NTS or symmetric-key authentication; the RTC
// is not written.
package ntp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Clock is what Sync reads and steps.
type Clock interface {
	Now() time.Time
	Set(time.Time) error
}

// SystemClock is CLOCK_REALTIME (setting it needs CAP_SYS_TIME).
type SystemClock struct{}

// Now returns the system time.
func (SystemClock) Now() time.Time { return time.Now() }

// Set steps the system clock.
func (SystemClock) Set(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("clock_settime: %w", err)
	}
	return nil
}

// Client queries servers.
type Client struct {
	Clock Clock
	// Timeout bounds each server's answer; default 5s.
	Timeout time.Duration
	// Dial opens the UDP socket; default net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Response is a server's valid answer.
type Response struct {
	Server  string
	Offset  time.Duration // add to the local clock to get the server's time
	RTT     time.Duration
	Stratum int
}

// Sync queries servers in order and steps the clock by the offset of the
// first valid answer. The error, when all fail, lists each server's.
func (c *Client) Sync(ctx context.Context, servers []string) (Response, error) {
	if len(servers) == 0 {
		return Response{}, errors.New("ntp: no servers")
	}
	var errs []error
	for _, s := range servers {
		r, err := c.Query(ctx, s)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := c.Clock.Set(c.Clock.Now().Add(r.Offset)); err != nil {
			return r, fmt.Errorf("ntp: step clock by %v from %s: %w", r.Offset, s, err)
		}
		return r, nil
	}
	return Response{}, errors.Join(errs...)
}

const (
	packetSize = 48
	// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
	ntpToUnix  = 2208988800
	modeClient = 3
	modeServer = 4
	version    = 4
)

// Query asks one server ("host" or "host:port", port 123 by default) and
// checks the answer: server mode, a stratum of 1-15 (0 is a kiss-o'-death),
// a synchronised leap indicator, and our transmit time echoed as origin.
func (c *Client) Query(ctx context.Context, server string) (Response, error) {
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(strings.Trim(server, "[]"), "123")
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := c.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "udp", addr)
	if err != nil {
		return Response{}, fmt.Errorf("ntp %s: %w", server, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}

	req := make([]byte, packetSize)
	req[0] = version<<3 | modeClient
	t1 := c.Clock.Now()
	mono := time.Now()
	xmit := toNTP(t1)
	binary.BigEndian.PutUint64(req[40:], xmit)
	if _, err := conn.Write(req); err != nil {
		return Response{}, fmt.Errorf("ntp %s: send: %w", server, err)
	}
	resp := make([]byte, 512)
	for {
		n, err := conn.Read(resp)
		if err != nil {
			return Response{}, fmt.Errorf("ntp %s: no answer: %w", server, err)
		}
		// t4 from the monotonic clock, so a clock step elsewhere during
		// the exchange cannot distort the result.
		t4 := t1.Add(time.Since(mono))
		if n < packetSize || binary.BigEndian.Uint64(resp[24:]) != xmit {
			continue // not an answer to our request: keep waiting
		}
		return parse(server, resp[:n], t1, t4)
	}
}

func parse(server string, p []byte, t1, t4 time.Time) (Response, error) {
	leap, mode, stratum := p[0]>>6, p[0]&7, int(p[1])
	switch {
	case mode != modeServer:
		return Response{}, fmt.Errorf("ntp %s: answer in mode %d, not server mode", server, mode)
	case stratum == 0:
		return Response{}, fmt.Errorf("ntp %s: kiss-o'-death %q", server, strings.TrimRight(string(p[12:16]), "\x00"))
	case stratum > 15:
		return Response{}, fmt.Errorf("ntp %s: stratum %d", server, stratum)
	case leap == 3:
		return Response{}, fmt.Errorf("ntp %s: server clock not synchronised", server)
	}
	t2 := fromNTP(binary.BigEndian.Uint64(p[32:]))
	t3 := fromNTP(binary.BigEndian.Uint64(p[40:]))
	if t3.IsZero() || t3.Before(time.Unix(0, 0)) {
		return Response{}, fmt.Errorf("ntp %s: empty transmit time", server)
	}
	offset := (t2.Sub(t1) + t3.Sub(t4)) / 2
	rtt := t4.Sub(t1) - t3.Sub(t2)
	if rtt < 0 {
		rtt = 0
	}
	return Response{Server: server, Offset: offset, RTT: rtt, Stratum: stratum}, nil
}

// toNTP converts t to a 64-bit NTP timestamp (era 0 until 2036, then the
// 32-bit seconds wrap as the protocol defines).
func toNTP(t time.Time) uint64 {
	secs := uint64(t.Unix() + ntpToUnix)
	frac := (uint64(t.Nanosecond()) << 32) / 1e9
	return secs<<32 | frac
}

// fromNTP converts an NTP timestamp; seconds below 2^31 are taken to be in
// era 1 (after February 2036), since no clock is set to before 1968.
func fromNTP(v uint64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	secs := int64(v >> 32)
	if secs < 1<<31 {
		secs += 1 << 32
	}
	nsec := (int64(v&0xffffffff) * 1e9) >> 32
	return time.Unix(secs-ntpToUnix, nsec)
}

package ntp

import (
	"github.com/kestrel-os/kestrel/internal/node/net/ntp/ntptest"

	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock that otherwise follows real time.
type fakeClock struct {
	mu   sync.Mutex
	base time.Time
	at   time.Time
	sets int
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{base: start, at: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Add(time.Since(c.at))
}

func (c *fakeClock) Set(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base, c.at = t, time.Now()
	c.sets++
	return nil
}

// server answers on 127.0.0.1 with now() as its time, after letting
// mutate tamper with the answer.
func server(t *testing.T, now func() time.Time, mutate func([]byte)) string {
	t.Helper()
	return ntptest.Serve(t, now, mutate).String()
}

func TestSync(t *testing.T) {
	truth := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	realStart := time.Now()
	serverNow := func() time.Time { return truth.Add(time.Since(realStart)) }
	addr := server(t, serverNow, nil)

	// The node booted with its clock in 1970 (no RTC, as on a Pi).
	clock := newFakeClock(time.Unix(0, 0))
	c := &Client{Clock: clock, Timeout: time.Second}
	r, err := c.Sync(context.Background(), []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	if d := clock.Now().Sub(serverNow()); d < -50*time.Millisecond || d > 50*time.Millisecond {
		t.Errorf("clock off by %v after sync", d)
	}
	if r.Stratum != 2 || r.Server != addr || r.Offset < 60*365*24*time.Hour {
		t.Errorf("response %+v", r)
	}
}

func TestSyncFallsBack(t *testing.T) {
	truth := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	good := server(t, func() time.Time { return truth }, nil)
	kod := server(t, time.Now, func(p []byte) { p[1] = 0; copy(p[12:16], "RATE") })
	unsync := server(t, time.Now, func(p []byte) { p[0] |= 3 << 6 })
	client := server(t, time.Now, func(p []byte) { p[0] = p[0]&^7 | 3 })
	// A port nobody listens on: the ICMP error or the timeout.
	dead, _ := net.ListenPacket("udp", "127.0.0.1:0")
	deadAddr := dead.LocalAddr().String()
	dead.Close()

	clock := newFakeClock(time.Unix(0, 0))
	c := &Client{Clock: clock, Timeout: 300 * time.Millisecond}
	_, err := c.Sync(context.Background(), []string{deadAddr, kod, unsync, client})
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{"ntp " + deadAddr + ": no answer", "kiss-o'-death \"RATE\"", "not synchronised", "mode 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if clock.sets != 0 {
		t.Error("clock set from an invalid answer")
	}
	r, err := c.Sync(context.Background(), []string{kod, good})
	if err != nil || r.Server != good {
		t.Fatalf("fallback: %+v %v", r, err)
	}
	if y := clock.Now().Year(); y != 2030 {
		t.Errorf("year %d after sync", y)
	}
}

func TestIgnoresForeignAnswers(t *testing.T) {
	// An answer whose origin is not our transmit time is dropped; with
	// nothing else coming, the query times out.
	addr := server(t, time.Now, func(p []byte) { p[24] ^= 0xff })
	c := &Client{Clock: newFakeClock(time.Now()), Timeout: 200 * time.Millisecond}
	if _, err := c.Query(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("error %v", err)
	}
}

func TestTimestamps(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 22, 3, 4, 5, 123456789, time.UTC),
		time.Date(2036, 2, 7, 6, 28, 17, 0, time.UTC), // just into era 1
		time.Date(2040, 1, 1, 0, 0, 0, 500000000, time.UTC),
	} {
		got := fromNTP(toNTP(tm))
		if d := got.Sub(tm); d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%v round-trips to %v", tm, got)
		}
	}
}

func TestDefaultPort(t *testing.T) {
	var dialed string
	c := &Client{Clock: newFakeClock(time.Now()), Timeout: 10 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = addr
			return nil, &net.OpError{Op: "dial", Err: context.DeadlineExceeded}
		}}
	for in, want := range map[string]string{"pool.ntp.org": "pool.ntp.org:123", "::1": "[::1]:123", "[::1]:1123": "[::1]:1123", "10.0.0.1:5": "10.0.0.1:5"} {
		c.Query(context.Background(), in)
		if dialed != want {
			t.Errorf("%s dialed %s, want %s", in, dialed, want)
		}
	}
}

// Package ntptest runs a minimal SNTP server on a loopback UDP port for
// tests of internal/node/net/ntp and of booted machines that sync against the host.
//
// Limits: it answers every request of 48 bytes or more as a stratum-2
// server with the time now() gives, copies the client's transmit time into
// the origin field, and does nothing else (no authentication, no
// extensions). It does not import internal/node/net/ntp, so that package's own tests can
// use it.
package ntptest

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// Serve starts the server on 127.0.0.1 and returns its address; it stops
// when the test ends. mutate, when not nil, may tamper with each answer.
func Serve(t testing.TB, now func() time.Time, mutate func([]byte)) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 48 {
				continue
			}
			recv := now()
			resp := make([]byte, 48)
			resp[0] = 0<<6 | 4<<3 | 4 // no leap warning, v4, server
			resp[1] = 2               // stratum
			copy(resp[12:16], "GPS\x00")
			copy(resp[24:32], buf[40:48]) // origin = client's transmit
			binary.BigEndian.PutUint64(resp[32:], timestamp(recv))
			binary.BigEndian.PutUint64(resp[40:], timestamp(now()))
			if mutate != nil {
				mutate(resp)
			}
			pc.WriteTo(resp, addr)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

// timestamp is t as a 64-bit NTP timestamp (era 0; wraps in 2036 as the
// wire format does).
func timestamp(t time.Time) uint64 {
	secs := uint64(t.Unix() + 2208988800)
	return secs<<32 | (uint64(t.Nanosecond())<<32)/1e9
}

package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "control.sock")
	s := NewServer()
	s.Handle("status", func(ctx context.Context, r Request) (any, error) {
		return map[string]string{"slot": "a", "arg": strings.Join(r.Args, ",")}, nil
	})
	s.Handle("fail", func(ctx context.Context, r Request) (any, error) { return nil, errors.New("nope") })
	s.Handle("boom", func(ctx context.Context, r Request) (any, error) { panic("bug") })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, sock)
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, _ := os.Stat(sock); st == nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v", st)
	}
	var out map[string]string
	if err := Call(sock, Request{Op: "status", Args: []string{"x", "y"}}, &out); err != nil {
		t.Fatal(err)
	}
	if out["slot"] != "a" || out["arg"] != "x,y" {
		t.Errorf("out = %v", out)
	}
	if err := Call(sock, Request{Op: "fail"}, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("fail: %v", err)
	}
	if err := Call(sock, Request{Op: "boom"}, nil); err == nil || !strings.Contains(err.Error(), "panicked: bug") {
		t.Errorf("panicking handler: %v", err)
	}
	if err := Call(sock, Request{Op: "what"}, nil); err == nil || !strings.Contains(err.Error(), "unknown op") {
		t.Errorf("unknown: %v", err)
	}
	if err := Call(filepath.Join(t.TempDir(), "none.sock"), Request{Op: "status"}, nil); !errors.Is(err, ErrNoServer) {
		t.Errorf("no server: %v", err)
	}
}

func serveTest(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "control.sock")
	s.Handle("status", func(context.Context, Request) (any, error) { return "fine", nil })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan struct{})
	go func() {
		for { // the file exists at bind, before listen: dial until it answers
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				close(ready)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go s.Serve(ctx, sock)
	<-ready
	return sock
}

// TestPeerCredentials: a caller whose uid is not the allowed one (root on
// the node; here a uid the test does not run as) is refused, whatever the
// socket's mode says.
func TestPeerCredentials(t *testing.T) {
	s := NewServer()
	s.allowUID = os.Getuid() + 4242
	sock := serveTest(t, s)
	err := Call(sock, Request{Op: "status"}, nil)
	if err == nil || !strings.Contains(err.Error(), "is not root") {
		t.Errorf("call from uid %d: %v, want refused", os.Getuid(), err)
	}
}

// TestRequestSizeLimit: a request without a newline is read up to
// MaxMessage and answered with an error, not buffered without bound.
func TestRequestSizeLimit(t *testing.T) {
	s := NewServer()
	s.allowUID = os.Getuid()
	sock := serveTest(t, s)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		big := bytes.Repeat([]byte("x"), 64<<10)
		for range 4 * MaxMessage / len(big) {
			if _, err := c.Write(big); err != nil {
				return // the server stopped reading: expected
			}
		}
		c.(*net.UnixConn).CloseWrite()
	}()
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "larger than") {
		t.Errorf("answer to a 4 MiB request: %q, want a size error", line)
	}
}

package control

import (
	"context"
	"errors"
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

// Package control is the channel between the kestrel CLI and PID 1: a
// unix socket (layout.ControlSocket, mode 0600, so root only) carrying
// one JSON request line and one JSON response line per connection.
//
//	-> {"op":"status"}
//	<- {"ok":true,"data":{...}}
//	-> {"op":"poweroff"}
//	<- {"ok":true}            (then PID 1 shuts down)
//
// PID 1 registers a Handler per op; other subcommands (config, logs,
// upgrade) add their own ops the same way.
//
// Only root may call: besides the socket's mode, each connection's peer
// is checked with SO_PEERCRED (the mode is set after bind, and a mode
// alone is one chmod away from open). A request is read up to
// MaxMessage bytes and no further. Limits: no streaming, one message per
// connection.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Request is one call.
type Request struct {
	Op   string   `json:"op"`
	Args []string `json:"args,omitempty"`
}

// Response is the answer.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Handler answers one op; its result is marshalled into Data.
type Handler func(ctx context.Context, req Request) (any, error)

// MaxMessage is the longest request line read, in bytes.
const MaxMessage = 1 << 20

// Server dispatches requests to handlers.
type Server struct {
	mu       sync.Mutex
	handlers map[string]Handler
	allowUID int // the only peer uid served: root, except in tests
}

// NewServer returns a Server without handlers.
func NewServer() *Server { return &Server{handlers: map[string]Handler{}} }

// Handle registers h for op.
func (s *Server) Handle(op string, h Handler) {
	s.mu.Lock()
	s.handlers[op] = h
	s.mu.Unlock()
}

// Serve listens on the unix socket at path until ctx ends.
func (s *Server) Serve(ctx context.Context, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		go s.serve(ctx, c)
	}
}

func (s *Server) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	defer func() { recover() }() // a handler's panic ends its connection, not PID 1
	resp := Response{}
	// The request is read (bounded) even from a caller about to be
	// refused: answering before the caller has written would make its
	// write fail with EPIPE instead of reading the refusal.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(io.LimitReader(c, MaxMessage+1))
	line, err := r.ReadBytes('\n')
	if perr := s.checkPeer(c); perr != nil {
		resp.Error = perr.Error()
		b, _ := json.Marshal(resp)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.Write(append(b, '\n'))
		return
	}
	var req Request
	if err != nil && len(line) == 0 {
		return
	}
	if len(line) > MaxMessage {
		resp.Error = fmt.Sprintf("bad request: larger than %d bytes", MaxMessage)
	} else if err := json.Unmarshal(line, &req); err != nil {
		resp.Error = "bad request: " + err.Error()
	} else {
		s.mu.Lock()
		h, ok := s.handlers[req.Op]
		s.mu.Unlock()
		if !ok {
			resp.Error = fmt.Sprintf("unknown op %q", req.Op)
		} else if data, err := call(ctx, h, req); err != nil {
			resp.Error = err.Error()
		} else {
			resp.OK = true
			if data != nil {
				resp.Data, err = json.Marshal(data)
				if err != nil {
					resp.OK, resp.Error = false, "marshal: "+err.Error()
				}
			}
		}
	}
	b, _ := json.Marshal(resp)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Write(append(b, '\n'))
}

// checkPeer refuses a peer whose uid (SO_PEERCRED) is not s.allowUID.
func (s *Server) checkPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if int(cred.Uid) != s.allowUID {
		return fmt.Errorf("permission denied: uid %d (pid %d) is not root", cred.Uid, cred.Pid)
	}
	return nil
}

// call runs h; a panicking handler becomes an error answer instead of
// taking PID 1 (and with it the kernel) down.
func call(ctx context.Context, h Handler, req Request) (data any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("op %s panicked: %v", req.Op, r)
		}
	}()
	return h(ctx, req)
}

// ErrNoServer means nothing listens on the socket (PID 1 is not Kestrel's
// stage 2, or it has not started the socket yet).
var ErrNoServer = errors.New("kestrel init is not listening")

// Call sends req to the server at path and decodes Data into out (if
// not nil).
func Call(path string, req Request, out any) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%w on %s: %v", ErrNoServer, path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control %s: %w", req.Op, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("control %s: no answer: %w", req.Op, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return fmt.Errorf("control %s: bad answer: %w", req.Op, err)
	}
	if !resp.OK {
		return fmt.Errorf("%s: %s", req.Op, resp.Error)
	}
	if out != nil && len(resp.Data) > 0 {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("control %s: decode answer: %w", req.Op, err)
		}
	}
	return nil
}

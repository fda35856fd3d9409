package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// egressConfig sends the apiserver's "cluster" traffic (to kubelets, pods,
// services) through an HTTP CONNECT proxy on a unix socket (%s).
const egressConfig = `apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`

// kubeletProxy is the HTTP CONNECT proxy behind egressConfig: whatever
// address the apiserver asks for, it connects to target. Written here
// rather than taken from konnectivity: that is a server and an agent with
// a gRPC tunnel, and a test node needs one TCP forward; net/http's CONNECT
// handling and two copies are the whole of it.
type kubeletProxy struct {
	socket, target string
	srv            *http.Server

	mu   sync.Mutex
	seen []string
}

func startKubeletProxy(socket, target string) (*kubeletProxy, error) {
	os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("kubelet proxy: %w", err)
	}
	p := &kubeletProxy{socket: socket, target: target}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(l)
	return p, nil
}

func (p *kubeletProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Host)
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		http.Error(w, fmt.Sprintf("dial %s (for %s): %v", p.target, r.Host, err), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		up.Close()
		down.Close()
		return
	}
	go func() {
		_, _ = io.Copy(up, buf) // what the client sent after its request
		up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(down, up)
	down.Close()
	up.Close()
}

func (p *kubeletProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *kubeletProxy) close() {
	p.srv.Close()
	os.Remove(p.socket)
}

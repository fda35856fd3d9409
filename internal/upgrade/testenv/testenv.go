// Package testenv runs a real etcd and kube-apiserver on loopback for the
// upgrade controller's tests and benchmark, from the binaries that
// scripts/k8s-test-bins.sh builds into .cache/k8s-test-bins.
//
// It generates its own PKI (a CA, the serving certificate, an admin client
// certificate in system:masters and a service-account key), so the
// apiserver can be stopped and started again on the same port with the
// same credentials: clients built before a restart keep working after it.
//
// Real nodes (the boot tests' kubelet in a qemu guest): the serving
// certificate also covers 10.0.2.2, the address under which qemu's user
// network shows the host's loopback to a guest; authorization is
// Node,RBAC with the NodeRestriction admission plugin, so a kubelet with a
// certificate from NodeKubeconfig is held to its own Node and pods; the
// apiserver presents the admin certificate to kubelets. With
// Options.KubeletAddr every connection the apiserver opens to a kubelet
// (logs, exec) goes through an HTTP CONNECT proxy on a unix socket (the
// "cluster" egress selector, as konnectivity and k3s's agent tunnel do) to
// that one address: the node's own address (10.0.2.15 in a guest) is not
// reachable from the host, a port forwarded to it is.
//
// Limits: no kube-controller-manager, scheduler or kubelet run, so nothing
// completes Jobs, schedules pods or reports node status; tests play those
// parts (see the controller tests' node simulator). Admission plugin
// ServiceAccount is off (no token controller runs either). The kubelet
// proxy knows one address: one node.
package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// BinsEnv names the variable that may point at the directory holding
// kube-apiserver and etcd; KUBEBUILDER_ASSETS is honoured too.
const BinsEnv = "KESTREL_K8S_TEST_BINS"

// Script is what builds the binaries, for skip messages.
const Script = "scripts/k8s-test-bins.sh"

// BinDir finds the directory holding kube-apiserver and etcd: $KESTREL_K8S_TEST_BINS,
// $KUBEBUILDER_ASSETS, or .cache/k8s-test-bins at the module root above
// the working directory.
func BinDir() (string, error) {
	var cands []string
	for _, e := range []string{BinsEnv, "KUBEBUILDER_ASSETS"} {
		if v := os.Getenv(e); v != "" {
			cands = append(cands, v)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/kestrel-os/kestrel\n") {
				cands = append(cands, filepath.Join(d, ".cache", "k8s-test-bins"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, c := range cands {
		if isExec(filepath.Join(c, "kube-apiserver")) && isExec(filepath.Join(c, "etcd")) {
			return c, nil
		}
	}
	where := strings.Join(cands, ", ")
	if where == "" {
		where = "nowhere: $" + BinsEnv + " and $KUBEBUILDER_ASSETS are unset and no Kestrel module root is above the working directory"
	}
	return "", fmt.Errorf("kube-apiserver and etcd not found (looked in %s); build them with %s", where, Script)
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Env is a running etcd + kube-apiserver.
type Env struct {
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Dir holds the PKI, etcd's data and the processes' logs.
	Dir string

	bins              string
	opt               Options
	others            []*exec.Cmd // controller-manager, scheduler
	othersDone        []chan struct{}
	caCert            *x509.Certificate
	caKey             *ecdsa.PrivateKey
	proxy             *kubeletProxy
	etcd, apiserver   *exec.Cmd
	etcdPort, apiPort int
	etcdDone, apiDone chan struct{}
}

// GuestHost is the host's loopback as a qemu user-network guest reaches it.
const GuestHost = "10.0.2.2"

// Options change how Start runs the apiserver.
type Options struct {
	// KubeletAddr, when set, is where every kubelet connection of the
	// apiserver goes (a host port forwarded to a guest's kubelet port).
	KubeletAddr string
	// Controllers also runs kube-controller-manager (the Job, garbage
	// collector and node lifecycle controllers) and kube-scheduler from ControllerBins
	// (scripts/k8s-node-bins.sh builds them), so that a Job's pod is made
	// and scheduled onto a real node.
	Controllers    bool
	ControllerBins string
}

// Start runs etcd and kube-apiserver under dir (created if missing) and
// waits until the apiserver is ready.
func Start(dir string) (*Env, error) { return StartWith(dir, Options{}) }

// StartWith is Start with options.
func StartWith(dir string, opt Options) (*Env, error) {
	bins, err := BinDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv dir: %w", err)
	}
	e := &Env{Dir: dir, bins: bins, opt: opt}
	if e.etcdPort, err = freePort(); err != nil {
		return nil, err
	}
	if e.apiPort, err = freePort(); err != nil {
		return nil, err
	}
	if err := e.writePKI(); err != nil {
		return nil, err
	}
	if opt.KubeletAddr != "" {
		if e.proxy, err = startKubeletProxy(filepath.Join(dir, "kubelet-proxy.sock"), opt.KubeletAddr); err != nil {
			return nil, err
		}
		egress := fmt.Sprintf(egressConfig, e.proxy.socket)
		if err := os.WriteFile(filepath.Join(dir, "egress.yaml"), []byte(egress), 0o644); err != nil {
			return nil, fmt.Errorf("egress config: %w", err)
		}
	}
	if err := e.startEtcd(); err != nil {
		e.Stop()
		return nil, err
	}
	if err := e.StartAPIServer(); err != nil {
		e.Stop()
		return nil, err
	}
	if opt.Controllers {
		if err := e.startControllers(); err != nil {
			e.Stop()
			return nil, err
		}
	}
	return e, nil
}

// RunShared is a test package's TestMain body for one Env shared by all
// its tests: it starts the Env in a temporary directory and hands it to
// use before the tests run (nil and the reason when the binaries are
// missing, so tests can skip), runs them, stops the Env and returns the
// exit code. The directory is kept, with the apiserver's and etcd's logs,
// when a test failed.
func RunShared(m *testing.M, use func(*Env, error) error) int {
	if _, err := BinDir(); err != nil {
		if err := use(nil, err); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kestrel-testenv-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	e, err := Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start test apiserver:", err)
		return 1
	}
	if err := use(e, nil); err != nil {
		e.Stop()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	e.Stop()
	if code == 0 {
		os.RemoveAll(dir)
	}
	return code
}

// StartT starts an Env for a test or benchmark, skipping it with a message
// naming the build script when the binaries are missing, and stopping the
// Env when the test ends.
func StartT(tb testing.TB) *Env {
	tb.Helper()
	if _, err := BinDir(); err != nil {
		tb.Skipf("skipping: needs a real kube-apiserver and etcd: %v", err)
	}
	e, err := Start(tb.TempDir())
	if err != nil {
		tb.Fatalf("start test apiserver: %v", err)
	}
	tb.Cleanup(e.Stop)
	return e
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (e *Env) logFile(name string) (io.Writer, error) {
	f, err := os.OpenFile(filepath.Join(e.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	return f, nil
}

func (e *Env) startEtcd() error {
	peer, err := freePort()
	if err != nil {
		return err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", e.etcdPort)
	cmd := exec.Command(filepath.Join(e.bins, "etcd"),
		"--data-dir", filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls", url, "--advertise-client-urls", url,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peer),
		"--unsafe-no-fsync", "--quota-backend-bytes", strconv.Itoa(4<<30))
	if cmd.Stdout, err = e.logFile("etcd"); err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	e.etcd, e.etcdDone = cmd, waitChan(cmd)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-e.etcdDone:
			return fmt.Errorf("etcd exited early; see %s", filepath.Join(e.Dir, "etcd.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("etcd not healthy within 30s")
}

func waitChan(cmd *exec.Cmd) chan struct{} {
	ch := make(chan struct{})
	go func() { _ = cmd.Wait(); close(ch) }()
	return ch
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) on the
// same port with the same PKI, and waits for /readyz.
func (e *Env) StartAPIServer() error {
	pki := filepath.Join(e.Dir, "pki")
	cmd := exec.Command(filepath.Join(e.bins, "kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", e.etcdPort),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port", strconv.Itoa(e.apiPort),
		"--cert-dir", pki,
		"--tls-cert-file", filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file", filepath.Join(pki, "serving.key"),
		"--client-ca-file", filepath.Join(pki, "ca.crt"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--kubelet-client-certificate", filepath.Join(pki, "admin.crt"),
		"--kubelet-client-key", filepath.Join(pki, "admin.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(pki, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
	)
	if e.proxy != nil {
		cmd.Args = append(cmd.Args, "--egress-selector-config-file", filepath.Join(e.Dir, "egress.yaml"),
			"--kubelet-preferred-address-types=InternalIP,Hostname")
	}
	var err error
	if cmd.Stdout, err = e.logFile("kube-apiserver"); err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	e.apiserver, e.apiDone = cmd, waitChan(cmd)
	return e.waitReady(60 * time.Second)
}

func (e *Env) waitReady(timeout time.Duration) error {
	tc, err := rest.TransportFor(e.Config)
	if err != nil {
		return fmt.Errorf("apiserver transport: %w", err)
	}
	hc := &http.Client{Transport: tc, Timeout: 5 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(e.Config.Host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-e.apiDone:
			return fmt.Errorf("kube-apiserver exited early; see %s", filepath.Join(e.Dir, "kube-apiserver.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver not ready within %s; see %s", timeout, filepath.Join(e.Dir, "kube-apiserver.log"))
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after 10 s).
func (e *Env) StopAPIServer() {
	stop(e.apiserver, e.apiDone)
	e.apiserver = nil
}

// Stop stops every process (and the kubelet proxy). Safe to call twice.
func (e *Env) Stop() {
	for i, c := range e.others {
		stop(c, e.othersDone[i])
	}
	e.others, e.othersDone = nil, nil
	stop(e.apiserver, e.apiDone)
	stop(e.etcd, e.etcdDone)
	e.apiserver, e.etcd = nil, nil
	if e.proxy != nil {
		e.proxy.close()
		e.proxy = nil
	}
}

func stop(cmd *exec.Cmd, done chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// APIServerPID returns the apiserver's process id (0 when stopped), for
// measuring it.
func (e *Env) APIServerPID() int {
	if e.apiserver == nil || e.apiserver.Process == nil {
		return 0
	}
	return e.apiserver.Process.Pid
}

// WaitContext is a helper: a context that ends after d or with the test.
func WaitContext(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func (e *Env) writePKI() error {
	pki := filepath.Join(e.Dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return fmt.Errorf("pki dir: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("ca key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kestrel-testenv-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("ca cert: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	e.caCert, e.caKey = caCert, caKey
	srvCrt, srvKey, err := e.issue(2, &x509.Certificate{
		Subject: pkix.Name{CommonName: "kube-apiserver"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(GuestHost)}, DNSNames: []string{"localhost"},
	})
	if err != nil {
		return fmt.Errorf("serving cert: %w", err)
	}
	admCrt, admKey, err := e.issue(3, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kestrel-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("admin cert: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("sa key: %w", err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return fmt.Errorf("sa key: %w", err)
	}
	caPEM := pemBytes("CERTIFICATE", caDER)
	files := map[string][]byte{
		"ca.crt": caPEM, "serving.crt": srvCrt, "serving.key": srvKey,
		"admin.crt": admCrt, "admin.key": admKey, "sa.key": pemBytes("EC PRIVATE KEY", saDER),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(pki, n), b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", n, err)
		}
	}
	if _, err := tls.X509KeyPair(admCrt, admKey); err != nil {
		return fmt.Errorf("admin key pair: %w", err)
	}
	e.Config = &rest.Config{
		Host:            fmt.Sprintf("https://127.0.0.1:%d", e.apiPort),
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: admCrt, KeyData: admKey},
		QPS:             -1, // no client-side rate limit in tests
	}
	return nil
}

// issue signs a certificate of tmpl (valid from an hour ago for a day)
// with the Env's CA and returns it and its key, PEM-encoded.
func (e *Env) issue(serial int64, tmpl *x509.Certificate) ([]byte, []byte, error) {
	now := time.Now()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.caCert, &k.PublicKey, e.caKey)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pemBytes("CERTIFICATE", der), pemBytes("EC PRIVATE KEY", kb), nil
}

func pemBytes(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// WriteKubeconfig writes an admin kubeconfig for the Env to path, for
// running the controller binary against it.
func (e *Env) WriteKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: e.Config.CertData, ClientKeyData: e.Config.KeyData}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin"}
	cfg.CurrentContext = "testenv"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// CACert is the PEM of the Env's CA: it signs the apiserver's serving
// certificate and every client certificate (a kubelet's client CA).
func (e *Env) CACert() []byte { return e.Config.CAData }

// NodeKubeconfig returns a kubeconfig for the kubelet of node: a client
// certificate for system:node:<node> in group system:nodes (what the Node
// authorizer and NodeRestriction recognise), the CA, and server as the
// apiserver's address (e.g. GuestServer() for a qemu guest).
func (e *Env) NodeKubeconfig(node, server string) ([]byte, error) {
	crt, key, err := e.issue(time.Now().UnixNano(), &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("node %s certificate: %w", node, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["node"] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	cfg.Contexts["node"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "node"}
	cfg.CurrentContext = "node"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s kubeconfig: %w", node, err)
	}
	return b, nil
}

// GuestServer is the apiserver's URL as a qemu user-network guest reaches it.
func (e *Env) GuestServer() string { return fmt.Sprintf("https://%s:%d", GuestHost, e.apiPort) }

// KubeletDials lists the addresses the apiserver asked the kubelet proxy
// for, oldest first (nil without Options.KubeletAddr).
func (e *Env) KubeletDials() []string {
	if e.proxy == nil {
		return nil
	}
	return e.proxy.asked()
}

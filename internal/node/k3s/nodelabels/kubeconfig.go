package nodelabels

// Why not client-go here: this package is linked into PID 1 (the
// `kestrel` binary), and client-go's clientcmd and rest brought 22 of
// client-go's packages and 41 of apimachinery's with it: 4 MB of the
// 16 MB binary and about half of its package initialisation, paid on
// every boot before the node is ready (measured in README "Boot time").
// The patch needs one authenticated HTTPS request, so the kubeconfig is
// read here with yaml.v3 and the request made with net/http. What this
// reader takes is what a kubelet's kubeconfig holds (k3s writes file
// references; kubeadm and our tests embed the data); anything needing a
// plugin is refused with a clear error rather than half-understood.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// kubeconfig is the part of a kubeconfig file (clientcmd's v1 Config) a
// client certificate or token login uses.
type kubeconfig struct {
	CurrentContext string `yaml:"current-context"`
	Contexts       []struct {
		Name    string `yaml:"name"`
		Context struct {
			Cluster string `yaml:"cluster"`
			User    string `yaml:"user"`
		} `yaml:"context"`
	} `yaml:"contexts"`
	Clusters []struct {
		Name    string `yaml:"name"`
		Cluster struct {
			Server                   string `yaml:"server"`
			CertificateAuthority     string `yaml:"certificate-authority"`
			CertificateAuthorityData string `yaml:"certificate-authority-data"`
			TLSServerName            string `yaml:"tls-server-name"`
			InsecureSkipTLSVerify    bool   `yaml:"insecure-skip-tls-verify"`
			ProxyURL                 string `yaml:"proxy-url"`
		} `yaml:"cluster"`
	} `yaml:"clusters"`
	Users []struct {
		Name string `yaml:"name"`
		User struct {
			ClientCertificate     string    `yaml:"client-certificate"`
			ClientCertificateData string    `yaml:"client-certificate-data"`
			ClientKey             string    `yaml:"client-key"`
			ClientKeyData         string    `yaml:"client-key-data"`
			Token                 string    `yaml:"token"`
			TokenFile             string    `yaml:"tokenFile"`
			Exec                  yaml.Node `yaml:"exec"`
			AuthProvider          yaml.Node `yaml:"auth-provider"`
			Username              string    `yaml:"username"`
		} `yaml:"user"`
	} `yaml:"users"`
}

// apiClient is what a kubeconfig resolves to: the server's URL, an HTTP
// client that trusts its CA and presents the user's certificate, and the
// bearer token if the user has one.
type apiClient struct {
	server *url.URL
	http   *http.Client
	token  string
}

// loadKubeconfig reads the kubeconfig at path and builds a client for its
// current context (the only context, if current-context is unset). File
// names in it are relative to the kubeconfig's directory, as clientcmd
// resolves them.
func loadKubeconfig(path string) (*apiClient, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	ctxName := kc.CurrentContext
	if ctxName == "" && len(kc.Contexts) == 1 {
		ctxName = kc.Contexts[0].Name
	}
	ci := -1
	for i, c := range kc.Contexts {
		if c.Name == ctxName {
			ci = i
		}
	}
	if ci < 0 {
		return nil, fmt.Errorf("%s: context %q not found (current-context)", path, ctxName)
	}
	want := kc.Contexts[ci].Context

	c := &apiClient{}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	found := false
	for _, cl := range kc.Clusters {
		if cl.Name != want.Cluster {
			continue
		}
		found = true
		s := cl.Cluster
		if s.Server == "" {
			return nil, fmt.Errorf("%s: cluster %q: no server", path, cl.Name)
		}
		if c.server, err = url.Parse(s.Server); err != nil || c.server.Host == "" {
			return nil, fmt.Errorf("%s: cluster %q: server %q is not a URL", path, cl.Name, s.Server)
		}
		if s.ProxyURL != "" {
			return nil, fmt.Errorf("%s: cluster %q: proxy-url is not supported here", path, cl.Name)
		}
		tlsConf.ServerName = s.TLSServerName
		tlsConf.InsecureSkipVerify = s.InsecureSkipTLSVerify
		ca, err := dataOrFile(s.CertificateAuthorityData, s.CertificateAuthority, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: cluster %q: certificate-authority: %w", path, cl.Name, err)
		}
		if ca != nil {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("%s: cluster %q: certificate-authority holds no PEM certificate", path, cl.Name)
			}
			tlsConf.RootCAs = pool
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: cluster %q of context %q not found", path, want.Cluster, ctxName)
	}

	found = false
	for _, u := range kc.Users {
		if u.Name != want.User {
			continue
		}
		found = true
		a := u.User
		if !a.Exec.IsZero() || !a.AuthProvider.IsZero() || a.Username != "" {
			return nil, fmt.Errorf("%s: user %q: only client certificates and tokens are supported (not exec, auth-provider or basic auth)", path, u.Name)
		}
		crt, err := dataOrFile(a.ClientCertificateData, a.ClientCertificate, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: user %q: client-certificate: %w", path, u.Name, err)
		}
		key, err := dataOrFile(a.ClientKeyData, a.ClientKey, dir)
		if err != nil {
			return nil, fmt.Errorf("%s: user %q: client-key: %w", path, u.Name, err)
		}
		if crt != nil || key != nil {
			pair, err := tls.X509KeyPair(crt, key)
			if err != nil {
				return nil, fmt.Errorf("%s: user %q: client certificate and key: %w", path, u.Name, err)
			}
			tlsConf.Certificates = []tls.Certificate{pair}
		}
		c.token = a.Token
		if c.token == "" && a.TokenFile != "" {
			t, err := os.ReadFile(resolve(a.TokenFile, dir))
			if err != nil {
				return nil, fmt.Errorf("%s: user %q: tokenFile: %w", path, u.Name, err)
			}
			c.token = strings.TrimSpace(string(t))
		}
	}
	if !found {
		return nil, fmt.Errorf("%s: user %q of context %q not found", path, want.User, ctxName)
	}
	c.http = &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsConf, Proxy: nil, TLSHandshakeTimeout: 10 * time.Second},
	}
	return c, nil
}

// dataOrFile returns base64 data if set, else the file's contents, else
// nil.
func dataOrFile(data, file, dir string) ([]byte, error) {
	if data != "" {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("the -data value is not base64: %w", err)
		}
		return b, nil
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(resolve(file, dir))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New(file + " is empty")
	}
	return b, nil
}

func resolve(file, dir string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(dir, file)
}

// Package hostname chooses and applies the node's hostname: the one in
// /etc/hostname if it is valid, else "kestrel-" and the last three bytes
// of the first wired interface's MAC address (stable across reboots and
// distinct between boxes of one batch), else "kestrel".
//
// Limits: no FQDN handling beyond writing the name to /etc/hosts; the
// config key for a hostname is applied by the config package writing
// /etc/hostname before stage 2 reads it.
package hostname

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Default returns the name derived from a MAC address.
func Default(mac net.HardwareAddr) string {
	if len(mac) < 3 {
		return "kestrel"
	}
	return fmt.Sprintf("kestrel-%x", []byte(mac[len(mac)-3:]))
}

// Valid reports whether name is a usable hostname (RFC 1123: labels of
// letters, digits and inner hyphens, at most 63 characters each, 64 in
// all - the kernel's limit).
func Valid(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// Choose picks the hostname from the content of /etc/hostname (may be
// nil) and the first MAC address (may be nil).
func Choose(etcHostname []byte, mac net.HardwareAddr) string {
	for _, line := range strings.Split(string(etcHostname), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if Valid(line) {
			return line
		}
		break
	}
	return Default(mac)
}

// FirstMAC returns the address of the first of ifs that has one, read
// from sysClassNet/<if>/address.
func FirstMAC(sysClassNet string, ifs []string) net.HardwareAddr {
	for _, i := range ifs {
		b, err := os.ReadFile(filepath.Join(sysClassNet, i, "address"))
		if err != nil {
			continue
		}
		if mac, err := net.ParseMAC(strings.TrimSpace(string(b))); err == nil && len(mac) > 0 {
			return mac
		}
	}
	return nil
}

// WriteEtc writes name to etcDir/hostname and makes etcDir/hosts resolve
// it to 127.0.1.1 (k3s and many tools look their own name up).
func WriteEtc(etcDir, name string) error {
	if err := os.WriteFile(filepath.Join(etcDir, "hostname"), []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	hostsPath := filepath.Join(etcDir, "hosts")
	hosts, err := os.ReadFile(hostsPath)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("hosts: %w", err)
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(hosts), "\n"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		if line != "" || len(keep) > 0 {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		keep = append(keep, "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback")
	}
	keep = append(keep, "127.0.1.1\t"+name)
	if err := os.WriteFile(hostsPath, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	return nil
}

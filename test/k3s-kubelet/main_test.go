package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNeverHealthy(t *testing.T) {
	for _, tc := range []struct {
		name, file, osRelease string
		want                  bool
	}{
		{"names this release", "0.0.2-kube\n", "NAME=Kestrel\nVERSION_ID=0.0.2-kube\n", true},
		{"quoted VERSION_ID", "0.0.2-kube", "VERSION_ID=\"0.0.2-kube\"\n", true},
		{"another release", "0.0.2-kube\n", "VERSION_ID=0.0.1-kube\n", false},
		{"no file", "", "VERSION_ID=0.0.1-kube\n", false},
		{"no VERSION_ID", "0.0.2-kube\n", "NAME=Kestrel\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file, osr := filepath.Join(dir, "never-healthy-version"), filepath.Join(dir, "os-release")
			if tc.file != "" {
				os.WriteFile(file, []byte(tc.file), 0o644)
			}
			os.WriteFile(osr, []byte(tc.osRelease), 0o644)
			if _, got := neverHealthy(file, osr); got != tc.want {
				t.Errorf("neverHealthy = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestConfigsNameTheRuntime checks that the written configs agree on the
// paths and images the rest of the node runtime uses.
func TestConfigsNameTheRuntime(t *testing.T) {
	for _, want := range []string{Socket, PauseImage, Runc, CNIBinDir, CNIConfDir, ContainerdRoot} {
		if !strings.Contains(containerdConfig, want) {
			t.Errorf("containerd config lacks %s", want)
		}
	}
	for _, want := range []string{"unix://" + Socket, ClientCA, "healthzPort: 10248", "cgroupDriver: cgroupfs"} {
		if !strings.Contains(kubeletConfig, want) {
			t.Errorf("kubelet config lacks %s", want)
		}
	}
	if !strings.Contains(cniConfig, PodSubnet) {
		t.Errorf("CNI config lacks %s", PodSubnet)
	}
}

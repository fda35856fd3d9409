package hostname

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestChoose(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	for _, tc := range []struct {
		etc  string
		mac  net.HardwareAddr
		want string
	}{
		{"", mac, "kestrel-123456"},
		{"edge-01\n", mac, "edge-01"},
		{"# comment\n\n  node.example.com \n", mac, "node.example.com"},
		{"bad_name!\n", mac, "kestrel-123456"},
		{"-dash\n", nil, "kestrel"},
		{string(make([]byte, 0)) + "a-very-long-label-that-is-way-more-than-sixty-three-characters-long-yes", mac, "kestrel-123456"},
	} {
		if got := Choose([]byte(tc.etc), tc.mac); got != tc.want {
			t.Errorf("Choose(%q) = %q, want %q", tc.etc, got, tc.want)
		}
	}
}

func TestFirstMACAndWriteEtc(t *testing.T) {
	sys := t.TempDir()
	os.MkdirAll(filepath.Join(sys, "eth0"), 0o755)
	os.WriteFile(filepath.Join(sys, "eth0", "address"), []byte("52:54:00:ab:cd:ef\n"), 0o644)
	if m := FirstMAC(sys, []string{"missing", "eth0"}); Default(m) != "kestrel-abcdef" {
		t.Errorf("FirstMAC = %v", m)
	}
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "hosts"), []byte("127.0.0.1 localhost\n127.0.1.1 old\n"), 0o644)
	if err := WriteEtc(etc, "kestrel-abcdef"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(etc, "hosts"))
	if string(b) != "127.0.0.1 localhost\n127.0.1.1\tkestrel-abcdef\n" {
		t.Errorf("hosts = %q", b)
	}
	b, _ = os.ReadFile(filepath.Join(etc, "hostname"))
	if string(b) != "kestrel-abcdef\n" {
		t.Errorf("hostname = %q", b)
	}
}

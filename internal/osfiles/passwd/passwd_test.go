package passwd

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testRoot builds a root with small account databases.
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, PasswdFile), []byte(
		"# comment\nroot:x:0:0:root:/root:/bin/sh\nkestrel:x:1000:1000::/home/kestrel:/bin/sh\n2000:x:3000:3000::/home/odd:/bin/sh\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, GroupFile), []byte(
		"root:x:0:\nkestrel:x:1000:\nwheel:x:10:kestrel,root\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, ShadowFile), []byte(
		"root:*:19000:0:99999:7:::\nkestrel:$6$salt$hash:::::::\n"), 0o600))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestResolveOwner(t *testing.T) {
	root := testRoot(t)
	tests := []struct {
		owner    string
		uid, gid int
		wantErr  bool
	}{
		{"", 0, 0, false},
		{"root", 0, 0, false},
		{"kestrel", 1000, 1000, false},
		{"kestrel:wheel", 1000, 10, false},
		{"kestrel.wheel", 1000, 10, false},
		{"kestrel:", 1000, 1000, false},
		{":wheel", 0, 10, false},
		{"1234:5678", 1234, 5678, false},
		{"2000", 3000, 3000, false}, // a user named 2000 wins over the number
		{"nosuch", 0, 0, true},
		{"kestrel:nosuch", 0, 0, true},
	}
	for _, tt := range tests {
		uid, gid, err := ResolveOwner(root, tt.owner)
		if (err != nil) != tt.wantErr {
			t.Errorf("ResolveOwner(%q) error %v, wantErr %v", tt.owner, err, tt.wantErr)
			continue
		}
		if err == nil && (uid != tt.uid || gid != tt.gid) {
			t.Errorf("ResolveOwner(%q) = %d:%d, want %d:%d", tt.owner, uid, gid, tt.uid, tt.gid)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("ResolveOwner(%q) error %v does not wrap ErrNotFound", tt.owner, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	root := testRoot(t)
	users, err := ReadUsers(filepath.Join(root, PasswdFile))
	must(t, err)
	groups, err := ReadGroups(filepath.Join(root, GroupFile))
	must(t, err)
	shadow, err := ReadShadow(filepath.Join(root, ShadowFile))
	must(t, err)
	if len(users) != 3 || len(groups) != 3 || len(shadow) != 2 {
		t.Fatalf("got %d users, %d groups, %d shadow entries", len(users), len(groups), len(shadow))
	}
	if !reflect.DeepEqual(groups[2].Members, []string{"kestrel", "root"}) {
		t.Errorf("wheel members %v", groups[2].Members)
	}
	if shadow[0].Rest != "19000:0:99999:7:::" {
		t.Errorf("shadow rest %q", shadow[0].Rest)
	}
	if got := string(FormatShadow([]Shadow{{Name: "a", Hash: "*"}})); got != "a:*:::::::\n" {
		t.Errorf("FormatShadow = %q", got)
	}
	if got := string(FormatUsers(users[1:2])); got != "kestrel:x:1000:1000::/home/kestrel:/bin/sh\n" {
		t.Errorf("FormatUsers = %q", got)
	}
	if got := string(FormatGroups(groups[2:])); got != "wheel:x:10:kestrel,root\n" {
		t.Errorf("FormatGroups = %q", got)
	}
	s, err := LookupShadow(root, "kestrel")
	must(t, err)
	if s.Hash != "$6$salt$hash" {
		t.Errorf("hash %q", s.Hash)
	}
}

func TestMalformed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "passwd")
	must(t, os.WriteFile(p, []byte("root:x:0:0:root:/root:/bin/sh\nbad:x:zero:0::/:/bin/sh\n"), 0o644))
	if _, err := ReadUsers(p); err == nil || !contains(err.Error(), p+":2") {
		t.Errorf("error %v, want one naming %s:2", err, p)
	}
	if users, err := ReadUsers(filepath.Join(dir, "missing")); err != nil || users != nil {
		t.Errorf("missing file: %v %v", users, err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

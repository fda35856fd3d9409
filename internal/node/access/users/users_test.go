package users

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kestrel-os/kestrel/internal/osfiles/passwd"
	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

func testKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " test@host"
}

func baseRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nwheel:x:10:root\nnogroup:x:65534:\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o600)
	return root
}

func stat(t *testing.T, p string) (os.FileMode, uint32, uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode(), st.Uid, st.Gid
}

func TestApplyDefaultUserKeysOnly(t *testing.T) {
	root := baseRoot(t)
	key := testKey(t)
	if err := Apply(root, []User{{Name: DefaultName, AuthorizedKeys: []string{key, "", "# comment"}}}, nil); err != nil {
		t.Fatal(err)
	}
	u, err := passwd.LookupUser(root, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 1000 || u.GID != 1000 || u.Home != "/home/kestrel" || u.Shell != DefaultShell {
		t.Errorf("entry %+v", u)
	}
	g, err := passwd.LookupGroup(root, DefaultName)
	if err != nil || g.GID != 1000 {
		t.Errorf("group %+v %v", g, err)
	}
	s, err := passwd.LookupShadow(root, DefaultName)
	if err != nil || s.Hash != "*" {
		t.Errorf("no password configured: shadow %+v %v, want *", s, err)
	}
	if mode, _, _ := stat(t, filepath.Join(root, "etc/shadow")); mode != 0o600 {
		t.Errorf("shadow mode %v", mode)
	}
	// root's entry is kept.
	if r, _ := passwd.LookupShadow(root, "root"); r.Rest != "19000:0:99999:7:::" {
		t.Errorf("root shadow changed: %+v", r)
	}
	home := filepath.Join(root, "home/kestrel")
	for p, want := range map[string]os.FileMode{
		home:                        os.ModeDir | 0o700,
		filepath.Join(home, ".ssh"): os.ModeDir | 0o700,
		filepath.Join(home, ".ssh/authorized_keys"): 0o600,
	} {
		mode, uid, gid := stat(t, p)
		if mode != want || uid != 1000 || gid != 1000 {
			t.Errorf("%s: %v %d:%d, want %v 1000:1000", p, mode, uid, gid, want)
		}
	}
	got, _ := os.ReadFile(filepath.Join(home, ".ssh/authorized_keys"))
	if string(got) != key+"\n" {
		t.Errorf("authorized_keys %q", got)
	}
}

func TestApplyPasswordsAndExtraUsers(t *testing.T) {
	root := baseRoot(t)
	const prehashed = "$6$saltsalt$0eZ6tRfCZ9EjpwJwj3XmR3k7S0vnV5YJkGv4p0X6w1g3/S2kQ6H7gUx1YcKp0v6yq3eTz5VbXj9n8Lr8Sx0x1."
	users := []User{
		{Name: DefaultName, Password: "s3cret", Groups: []string{"wheel"}},
		{Name: "ops", UID: 2001, Password: prehashed, Groups: []string{"wheel", "operators"}, Shell: "/bin/ash", Gecos: "Ops team"},
		{Name: "auto"},
	}
	if err := Apply(root, users, nil); err != nil {
		t.Fatal(err)
	}
	s, _ := passwd.LookupShadow(root, DefaultName)
	if err := shacrypt.Verify(s.Hash, "s3cret"); err != nil || !strings.HasPrefix(s.Hash, "$6$") {
		t.Errorf("hash %q does not verify: %v", s.Hash, err)
	}
	s, _ = passwd.LookupShadow(root, "ops")
	if s.Hash != prehashed {
		t.Errorf("pre-hashed value changed: %q", s.Hash)
	}
	ops, _ := passwd.LookupUser(root, "ops")
	if ops.UID != 2001 || ops.GID != 2001 || ops.Shell != "/bin/ash" || ops.Gecos != "Ops team" {
		t.Errorf("ops %+v", ops)
	}
	auto, _ := passwd.LookupUser(root, "auto")
	// 1001 went to the operators group; uids are allocated with a matching
	// free gid for the user's own group.
	if auto.UID != 1002 || auto.GID != 1002 {
		t.Errorf("auto %d:%d, want 1002:1002", auto.UID, auto.GID)
	}
	wheel, _ := passwd.LookupGroup(root, "wheel")
	if strings.Join(wheel.Members, ",") != "root,kestrel,ops" {
		t.Errorf("wheel members %v", wheel.Members)
	}
	op, err := passwd.LookupGroup(root, "operators")
	if err != nil || strings.Join(op.Members, ",") != "ops" {
		t.Errorf("operators %+v %v", op, err)
	}

	// Applying again (next boot, same /etc) changes nothing but the salt.
	before, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err := Apply(root, users, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if string(before) != string(after) {
		t.Errorf("second apply changed passwd:\n%s\n%s", before, after)
	}
	groups, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if strings.Count(string(groups), "kestrel,ops") != 1 || strings.Count(string(groups), "\noperators:") != 1 {
		t.Errorf("second apply duplicated groups:\n%s", groups)
	}
}

func TestApplyErrors(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		name  string
		users []User
		want  string
	}{
		{"bad name", []User{{Name: "Bad:Name"}}, `name "Bad:Name"`},
		{"uid taken", []User{{Name: "x", UID: 65534}}, "uid 65534 already belongs to nobody"},
		{"relative home", []User{{Name: "x", Home: "home/x"}}, "absolute"},
		{"colon in shell", []User{{Name: "x", Shell: "/bin/sh:x"}}, "contains ':'"},
		{"bad group", []User{{Name: "x", Groups: []string{"Bad Group"}}}, `group name "Bad Group"`},
		{"bad key is reported, good one kept", []User{{Name: "x", AuthorizedKeys: []string{"github:someone", key}}}, "ssh_authorized_keys[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := baseRoot(t)
			err := Apply(root, tt.users, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	root := baseRoot(t)
	Apply(root, []User{{Name: "x", AuthorizedKeys: []string{"github:someone", key}}}, nil)
	got, _ := os.ReadFile(filepath.Join(root, "home/x/.ssh/authorized_keys"))
	if string(got) != key+"\n" {
		t.Errorf("valid key not written next to an invalid one: %q", got)
	}
}

func TestWriteAuthorizedKeysReplaces(t *testing.T) {
	root := baseRoot(t)
	k1, k2 := testKey(t), testKey(t)
	if err := Apply(root, []User{{Name: "a", AuthorizedKeys: []string{k1}}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteAuthorizedKeys(root, "a", []string{k2}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(root, "home/a/.ssh/authorized_keys"))
	if string(got) != k2+"\n" {
		t.Errorf("authorized_keys %q, want only the new key", got)
	}
	if err := WriteAuthorizedKeys(root, "nosuch", []string{k2}); err == nil {
		t.Error("unknown user: expected an error")
	}
}

// A user who replaces ~/.ssh (or authorized_keys) with a symlink into
// root's files must not get PID 1 to chown or write there (issue 10 item 1).
func TestWriteAuthorizedKeysRefusesSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, home, target string)
	}{
		{"ssh dir is a link", func(t *testing.T, home, target string) {
			os.RemoveAll(filepath.Join(home, ".ssh"))
			if err := os.Symlink(target, filepath.Join(home, ".ssh")); err != nil {
				t.Fatal(err)
			}
		}},
		{"authorized_keys is a link", func(t *testing.T, home, target string) {
			p := filepath.Join(home, ".ssh/authorized_keys")
			os.Remove(p)
			if err := os.Symlink(filepath.Join(target, "authorized_keys"), p); err != nil {
				t.Fatal(err)
			}
		}},
		{"ssh dir is a relative link out of the home", func(t *testing.T, home, target string) {
			os.RemoveAll(filepath.Join(home, ".ssh"))
			if err := os.Symlink("../../root", filepath.Join(home, ".ssh")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := baseRoot(t)
			if err := Apply(root, []User{{Name: DefaultName, AuthorizedKeys: []string{testKey(t)}}}, nil); err != nil {
				t.Fatal(err)
			}
			rootSSH := filepath.Join(root, "root")
			os.MkdirAll(rootSSH, 0o700)
			os.WriteFile(filepath.Join(rootSSH, "authorized_keys"), []byte("root's own\n"), 0o600)
			home := filepath.Join(root, "home/kestrel")
			tc.plant(t, home, rootSSH)

			err := WriteAuthorizedKeys(root, DefaultName, []string{testKey(t)})
			if _, uid, _ := stat(t, rootSSH); uid != 0 {
				t.Errorf("%s chowned to uid %d through the link", rootSSH, uid)
			}
			if b, _ := os.ReadFile(filepath.Join(rootSSH, "authorized_keys")); string(b) != "root's own\n" {
				t.Errorf("root's authorized_keys rewritten through the link: %q", b)
			}
			if mode, uid, _ := stat(t, filepath.Join(rootSSH, "authorized_keys")); uid != 0 || mode != 0o600 {
				t.Errorf("root's authorized_keys now %v uid %d", mode, uid)
			}
			if err == nil {
				// Only a link replaced by the atomic rename is fine: the
				// keys must then be in a regular file in the home.
				fi, lerr := os.Lstat(filepath.Join(home, ".ssh/authorized_keys"))
				if lerr != nil || !fi.Mode().IsRegular() {
					t.Errorf("no error, but authorized_keys is %v (%v)", fi, lerr)
				}
			}
		})
	}
}

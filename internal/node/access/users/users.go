// Package users creates the login accounts of a Kestrel node under a root
// directory: /etc/passwd, /etc/group and /etc/shadow entries, a home
// directory on the persistent /home, and ~/.ssh/authorized_keys.
//
// The config is the only source of truth for what it manages: each boot the
// generated /etc gets the configured accounts again, and authorized_keys is
// rewritten with exactly the configured keys (keys added by hand are
// dropped; put them in the config). There is no default password: an
// account without one gets "*" in /etc/shadow, which allows public-key SSH
// login but no password login (console login, su, SSH password auth). A
// configured password is stored as a SHA-512 crypt hash ($6$); a value
// starting with '$' is taken as an existing crypt hash and stored as is
// (only $5$/$6$ can be verified by busybox and Kestrel's SSH server).
//
// Limits: no sudo configuration (the rootfs ships none), no skeleton files,
// no removal of accounts dropped from the config (/etc is regenerated each
// boot, so they vanish with it, but their home directories stay on /home),
// ownership of an existing home is fixed on the directory itself only.
//
// The home belongs to its user, who may plant symlinks in it: ~/.ssh and
// authorized_keys are created through an os.Root opened on the home, with
// fchown/fchmod on open descriptors, so nothing outside the home is ever
// created, written or chowned (a ~/.ssh that is not a directory is
// refused, and reported). The home's parent must be root-owned and not
// group or world writable.
package users

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/kestrel-os/kestrel/internal/osfiles/atomicfile"
	"github.com/kestrel-os/kestrel/internal/osfiles/passwd"
	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// DefaultName is the default login user of a Kestrel node (k3OS: rancher).
const DefaultName = "kestrel"

// Defaults for new accounts.
const (
	DefaultShell = "/bin/sh"
	HomeBase     = "/home"
	firstID      = 1000
	maxID        = 59999 // last id allocated (Debian's range for users)
	maxGivenID   = 65535 // last id accepted from the config
)

// User is one account as the config states it.
type User struct {
	Name           string
	UID            int      // 0: keep the existing uid, or allocate one from 1000
	Gecos          string   // free text
	Shell          string   // default DefaultShell, or the existing shell
	Home           string   // default /home/<name>, or the existing home
	Groups         []string // supplementary groups, created when missing
	Password       string   // "": no password; "$...": crypt hash kept; else hashed
	AuthorizedKeys []string // literal public keys (github:/URL entries resolved before)
}

var validName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// Apply creates or updates every account under root, then their home
// directories and authorized_keys. random feeds the password salts
// (crypto/rand when nil). Invalid keys are skipped and reported while the
// valid ones are still written, so one bad key cannot lock a user out.
func Apply(root string, users []User, random io.Reader) error {
	for _, u := range users {
		if !validName.MatchString(u.Name) {
			return fmt.Errorf("users: name %q: must match %s", u.Name, validName)
		}
		if u.UID < 0 || u.UID > maxGivenID {
			return fmt.Errorf("users %s: uid %d out of range", u.Name, u.UID)
		}
	}
	db, err := load(root)
	if err != nil {
		return err
	}
	var resolved []passwd.User
	for _, u := range users {
		pu, err := db.upsert(u, random)
		if err != nil {
			return fmt.Errorf("users %s: %w", u.Name, err)
		}
		resolved = append(resolved, pu)
	}
	if err := db.save(root); err != nil {
		return err
	}
	var errs []error
	for i, u := range users {
		pu := resolved[i]
		if err := makeHome(root, pu); err != nil {
			errs = append(errs, fmt.Errorf("users %s: %w", u.Name, err))
			continue
		}
		if err := WriteAuthorizedKeys(root, u.Name, u.AuthorizedKeys); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteAuthorizedKeys replaces name's ~/.ssh/authorized_keys under root with
// keys (one per line; blank lines and comments dropped), creating ~/.ssh
// 0700 and the file 0600, both owned by the user. Keys that do not parse
// are left out and reported; the valid ones are written regardless.
func WriteAuthorizedKeys(root, name string, keys []string) error {
	u, err := passwd.LookupUser(root, name)
	if err != nil {
		return fmt.Errorf("authorized_keys of %s: %w", name, err)
	}
	var b strings.Builder
	var errs []error
	for i, k := range keys {
		k = strings.TrimSpace(k)
		if k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			errs = append(errs, fmt.Errorf("users %s: ssh_authorized_keys[%d] %q: not a public key (github:, gitlab: and URL entries must be resolved first): %w", name, i, short(k), err))
			continue
		}
		b.WriteString(k)
		b.WriteByte('\n')
	}
	home, err := openHome(root, u)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("users %s: %w", name, err))...)
	}
	defer home.Close()
	sshDir, err := openOwnedDir(home, ".ssh", 0o700, u.UID, u.GID)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("users %s: %w", name, err))...)
	}
	defer sshDir.Close()
	if err := atomicfile.WriteIn(sshDir, "authorized_keys", []byte(b.String()), 0o600, u.UID, u.GID); err != nil {
		errs = append(errs, fmt.Errorf("users %s: %w", name, err))
	}
	return errors.Join(errs...)
}

func short(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// db is the three account databases in memory.
type db struct {
	users  []passwd.User
	groups []passwd.Group
	shadow []passwd.Shadow
}

func load(root string) (*db, error) {
	var d db
	var err error
	if d.users, err = passwd.ReadUsers(filepath.Join(root, passwd.PasswdFile)); err != nil {
		return nil, err
	}
	if d.groups, err = passwd.ReadGroups(filepath.Join(root, passwd.GroupFile)); err != nil {
		return nil, err
	}
	if d.shadow, err = passwd.ReadShadow(filepath.Join(root, passwd.ShadowFile)); err != nil {
		return nil, err
	}
	return &d, nil
}

func (d *db) save(root string) error {
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{passwd.GroupFile, passwd.FormatGroups(d.groups), 0o644},
		{passwd.PasswdFile, passwd.FormatUsers(d.users), 0o644},
		{passwd.ShadowFile, passwd.FormatShadow(d.shadow), 0o600},
	} {
		if err := atomicfile.Write(filepath.Join(root, f.path), f.data, f.mode, 0, 0); err != nil {
			return fmt.Errorf("users: %w", err)
		}
	}
	return nil
}

// upsert adds or updates u and returns its passwd entry.
func (d *db) upsert(u User, random io.Reader) (passwd.User, error) {
	hash := "*"
	switch {
	case u.Password == "":
	case strings.HasPrefix(u.Password, "$"):
		hash = u.Password
	default:
		h, err := shacrypt.HashSHA512(u.Password, random)
		if err != nil {
			return passwd.User{}, fmt.Errorf("password: %w", err)
		}
		hash = h
	}
	if strings.ContainsAny(hash, ":\n") {
		return passwd.User{}, errors.New("password: crypt hash contains ':' or a newline")
	}

	i := slices.IndexFunc(d.users, func(e passwd.User) bool { return e.Name == u.Name })
	var pu passwd.User
	if i >= 0 {
		pu = d.users[i]
		if u.UID != 0 && u.UID != pu.UID {
			if other := d.userByID(u.UID); other != "" && other != u.Name {
				return passwd.User{}, fmt.Errorf("uid %d already belongs to %s", u.UID, other)
			}
			pu.UID = u.UID
		}
	} else {
		pu = passwd.User{Name: u.Name, Password: "x", UID: u.UID, Home: filepath.Join(HomeBase, u.Name), Shell: DefaultShell}
		if pu.UID == 0 {
			id, err := d.freeUID()
			if err != nil {
				return passwd.User{}, err
			}
			pu.UID = id
		} else if other := d.userByID(pu.UID); other != "" {
			return passwd.User{}, fmt.Errorf("uid %d already belongs to %s", pu.UID, other)
		}
		g, err := d.ensureGroup(u.Name, pu.UID)
		if err != nil {
			return passwd.User{}, err
		}
		pu.GID = g
	}
	pu.Password = "x"
	if u.Gecos != "" {
		pu.Gecos = u.Gecos
	}
	if u.Shell != "" {
		pu.Shell = u.Shell
	}
	if u.Home != "" {
		pu.Home = u.Home
	}
	for _, field := range []string{pu.Gecos, pu.Shell, pu.Home} {
		if strings.ContainsAny(field, ":\n") {
			return passwd.User{}, fmt.Errorf("field %q contains ':' or a newline", field)
		}
	}
	if !filepath.IsAbs(pu.Home) || !filepath.IsAbs(pu.Shell) {
		return passwd.User{}, fmt.Errorf("home %q and shell %q must be absolute paths", pu.Home, pu.Shell)
	}
	if i >= 0 {
		d.users[i] = pu
	} else {
		d.users = append(d.users, pu)
	}

	for _, g := range u.Groups {
		if !validName.MatchString(g) {
			return passwd.User{}, fmt.Errorf("group name %q: must match %s", g, validName)
		}
		if _, err := d.ensureGroup(g, 0); err != nil {
			return passwd.User{}, err
		}
		gi := slices.IndexFunc(d.groups, func(e passwd.Group) bool { return e.Name == g })
		if !slices.Contains(d.groups[gi].Members, u.Name) {
			d.groups[gi].Members = append(d.groups[gi].Members, u.Name)
		}
	}

	si := slices.IndexFunc(d.shadow, func(e passwd.Shadow) bool { return e.Name == u.Name })
	if si >= 0 {
		d.shadow[si].Hash = hash
	} else {
		d.shadow = append(d.shadow, passwd.Shadow{Name: u.Name, Hash: hash})
	}
	return pu, nil
}

func (d *db) userByID(id int) string {
	for _, u := range d.users {
		if u.UID == id {
			return u.Name
		}
	}
	return ""
}

func (d *db) freeUID() (int, error) {
	for id := firstID; id <= maxID; id++ {
		if d.userByID(id) == "" && !d.gidUsed(id) {
			return id, nil
		}
	}
	for id := firstID; id <= maxID; id++ {
		if d.userByID(id) == "" {
			return id, nil
		}
	}
	return 0, errors.New("no free uid")
}

func (d *db) gidUsed(id int) bool {
	return slices.ContainsFunc(d.groups, func(g passwd.Group) bool { return g.GID == id })
}

// ensureGroup returns the gid of group name, creating it with gid want (or
// the first free one from 1000 when want is 0 or taken).
func (d *db) ensureGroup(name string, want int) (int, error) {
	if i := slices.IndexFunc(d.groups, func(g passwd.Group) bool { return g.Name == name }); i >= 0 {
		return d.groups[i].GID, nil
	}
	gid := want
	if gid == 0 || d.gidUsed(gid) {
		gid = 0
		for id := firstID; id <= maxID; id++ {
			if !d.gidUsed(id) {
				gid = id
				break
			}
		}
		if gid == 0 {
			return 0, errors.New("no free gid")
		}
	}
	d.groups = append(d.groups, passwd.Group{Name: name, Password: "x", GID: gid})
	return gid, nil
}

func makeHome(root string, u passwd.User) error {
	home, err := openHome(root, u)
	if err != nil {
		return err
	}
	return home.Close()
}

// openHome creates or fixes u's home directory under root and opens it as
// an os.Root. The home belongs to the user, who can plant symlinks in it
// (~/.ssh -> /root): everything below it is created through the returned
// Root, which never resolves a name outside the home. The home's parent
// must be root's alone (root-owned, not group or world writable), or the
// user could swap the home itself for a link.
func openHome(root string, u passwd.User) (*os.Root, error) {
	parent := filepath.Join(root, filepath.Dir(u.Home))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", parent, err)
	}
	fi, err := os.Stat(parent)
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("home %s: parent %s must be owned by root and not group or world writable (mode %v)", u.Home, parent, fi.Mode().Perm())
	}
	pr, err := os.OpenRoot(parent)
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	return openOwnedDir(pr, filepath.Base(u.Home), 0o700, u.UID, u.GID)
}

// openOwnedDir creates the directory name in parent (or keeps an existing
// one), refuses a symlink or other non-directory there, and gives it mode
// and owner through its open descriptor (fchown, fchmod), so a link
// swapped in meanwhile cannot redirect the chown.
func openOwnedDir(parent *os.Root, name string, mode os.FileMode, uid, gid int) (*os.Root, error) {
	where := filepath.Join(parent.Name(), name)
	if err := parent.Mkdir(name, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", where, err)
	}
	fi, err := parent.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", where, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is a %v, not a directory: refused (remove it to restore access)", where, fi.Mode().Type())
	}
	dir, err := parent.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", where, err)
	}
	f, err := dir.Open(".")
	if err == nil {
		err = f.Chown(uid, gid)
		if err == nil {
			err = f.Chmod(mode)
		}
		f.Close()
	}
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("own %s: %w", where, err)
	}
	return dir, nil
}

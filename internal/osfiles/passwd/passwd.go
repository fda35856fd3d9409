// Package passwd reads and writes the classic account databases,
// /etc/passwd, /etc/group and /etc/shadow, under a given root directory, so
// that stage 2 can edit the generated /etc and tests can use a temporary
// tree.
//
// Limits: only the flat files are read (no NSS, no LDAP, no nscd); comment
// lines and blank lines are dropped when a file is rewritten; fields are
// split on ':' without escaping, as the formats require; the shadow aging
// fields are kept as text, not interpreted.
package passwd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Paths of the databases relative to a root.
const (
	PasswdFile = "/etc/passwd"
	GroupFile  = "/etc/group"
	ShadowFile = "/etc/shadow"
)

// ErrNotFound is wrapped by the lookups when the name is absent.
var ErrNotFound = errors.New("not found")

// User is one /etc/passwd line.
type User struct {
	Name     string
	Password string // "x" when the hash is in /etc/shadow
	UID, GID int
	Gecos    string
	Home     string
	Shell    string
}

// Group is one /etc/group line.
type Group struct {
	Name     string
	Password string
	GID      int
	Members  []string
}

// Shadow is one /etc/shadow line. Rest holds the aging fields (last change
// onwards) verbatim, without the leading colon.
type Shadow struct {
	Name string
	Hash string
	Rest string
}

// LookupUser finds name (or a numeric uid) in root's /etc/passwd.
func LookupUser(root, name string) (User, error) {
	users, err := ReadUsers(filepath.Join(root, PasswdFile))
	if err != nil {
		return User{}, err
	}
	for _, u := range users {
		if u.Name == name {
			return u, nil
		}
	}
	if id, err := strconv.Atoi(name); err == nil {
		for _, u := range users {
			if u.UID == id {
				return u, nil
			}
		}
	}
	return User{}, fmt.Errorf("user %q in %s: %w", name, filepath.Join(root, PasswdFile), ErrNotFound)
}

// LookupGroup finds name (or a numeric gid) in root's /etc/group.
func LookupGroup(root, name string) (Group, error) {
	groups, err := ReadGroups(filepath.Join(root, GroupFile))
	if err != nil {
		return Group{}, err
	}
	for _, g := range groups {
		if g.Name == name {
			return g, nil
		}
	}
	if id, err := strconv.Atoi(name); err == nil {
		for _, g := range groups {
			if g.GID == id {
				return g, nil
			}
		}
	}
	return Group{}, fmt.Errorf("group %q in %s: %w", name, filepath.Join(root, GroupFile), ErrNotFound)
}

// LookupShadow returns name's entry in root's /etc/shadow.
func LookupShadow(root, name string) (Shadow, error) {
	entries, err := ReadShadow(filepath.Join(root, ShadowFile))
	if err != nil {
		return Shadow{}, err
	}
	for _, s := range entries {
		if s.Name == name {
			return s, nil
		}
	}
	return Shadow{}, fmt.Errorf("user %q in %s: %w", name, filepath.Join(root, ShadowFile), ErrNotFound)
}

// ReadUsers parses a passwd file. A missing file is an empty database.
func ReadUsers(path string) ([]User, error) {
	var users []User
	err := eachLine(path, 7, func(f []string) error {
		uid, err := strconv.Atoi(f[2])
		if err != nil {
			return fmt.Errorf("uid %q: %w", f[2], err)
		}
		gid, err := strconv.Atoi(f[3])
		if err != nil {
			return fmt.Errorf("gid %q: %w", f[3], err)
		}
		users = append(users, User{f[0], f[1], uid, gid, f[4], f[5], f[6]})
		return nil
	})
	return users, err
}

// ReadGroups parses a group file. A missing file is an empty database.
func ReadGroups(path string) ([]Group, error) {
	var groups []Group
	err := eachLine(path, 4, func(f []string) error {
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return fmt.Errorf("gid %q: %w", f[2], err)
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		groups = append(groups, Group{f[0], f[1], gid, members})
		return nil
	})
	return groups, err
}

// ReadShadow parses a shadow file. A missing file is an empty database.
func ReadShadow(path string) ([]Shadow, error) {
	var entries []Shadow
	err := eachLine(path, 2, func(f []string) error {
		rest := ""
		if i := strings.Index(f[1], ":"); i >= 0 {
			f[1], rest = f[1][:i], f[1][i+1:]
		}
		entries = append(entries, Shadow{f[0], f[1], rest})
		return nil
	})
	return entries, err
}

// eachLine splits each non-comment line of path into exactly n fields (the
// last one keeps any further colons when n is short of the line's count).
func eachLine(path string, n int, fn func([]string) error) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, ":", n)
		if len(f) != n {
			return fmt.Errorf("%s:%d: want %d fields, got %d", path, lineNo, n, len(f))
		}
		if err := fn(f); err != nil {
			return fmt.Errorf("%s:%d: %w", path, lineNo, err)
		}
	}
	return sc.Err()
}

// FormatUsers renders a passwd file.
func FormatUsers(users []User) []byte {
	var b bytes.Buffer
	for _, u := range users {
		fmt.Fprintf(&b, "%s:%s:%d:%d:%s:%s:%s\n", u.Name, u.Password, u.UID, u.GID, u.Gecos, u.Home, u.Shell)
	}
	return b.Bytes()
}

// FormatGroups renders a group file.
func FormatGroups(groups []Group) []byte {
	var b bytes.Buffer
	for _, g := range groups {
		fmt.Fprintf(&b, "%s:%s:%d:%s\n", g.Name, g.Password, g.GID, strings.Join(g.Members, ","))
	}
	return b.Bytes()
}

// FormatShadow renders a shadow file. An empty Rest becomes the seven empty
// aging fields.
func FormatShadow(entries []Shadow) []byte {
	var b bytes.Buffer
	for _, s := range entries {
		rest := s.Rest
		if rest == "" {
			rest = "::::::"
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", s.Name, s.Hash, rest)
	}
	return b.Bytes()
}

// ResolveOwner turns an owner string ("user", "user:group", "uid:gid",
// "user:" meaning the user's primary group, ":group") into numeric ids,
// looking names up under root. Numbers are taken as ids when no entry of
// that name exists. An empty owner is root:root.
func ResolveOwner(root, owner string) (uid, gid int, err error) {
	owner = strings.TrimSpace(owner)
	if owner == "" {
		return 0, 0, nil
	}
	userPart, groupPart, hasGroup := strings.Cut(owner, ":")
	if !hasGroup {
		userPart, groupPart, hasGroup = strings.Cut(owner, ".") // chown's legacy user.group
		if hasGroup {
			if _, err := LookupUser(root, owner); err == nil {
				userPart, groupPart, hasGroup = owner, "", false
			}
		}
	}
	uid, gid = 0, 0
	if userPart != "" {
		u, err := lookupUserOrID(root, userPart)
		if err != nil {
			return 0, 0, err
		}
		uid, gid = u.UID, u.GID
	}
	if hasGroup && groupPart != "" {
		g, err := LookupGroup(root, groupPart)
		if errors.Is(err, ErrNotFound) {
			if id, aerr := strconv.Atoi(groupPart); aerr == nil && id >= 0 {
				return uid, id, nil
			}
		}
		if err != nil {
			return 0, 0, err
		}
		gid = g.GID
	}
	return uid, gid, nil
}

func lookupUserOrID(root, name string) (User, error) {
	u, err := LookupUser(root, name)
	if errors.Is(err, ErrNotFound) {
		if id, aerr := strconv.Atoi(name); aerr == nil && id >= 0 {
			return User{Name: name, UID: id, GID: id}, nil
		}
	}
	return u, err
}

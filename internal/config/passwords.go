package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// IsPasswordHash reports whether a password value is already a crypt hash
// (k3OS rule: it starts with "$").
func IsPasswordHash(p string) bool { return strings.HasPrefix(p, "$") }

// HashPassword returns p unchanged when it is already a crypt hash, else
// its SHA-512 crypt hash ($6$, verifiable by busybox, glibc and musl) with
// a salt read from rnd. An empty password stays empty (no password login).
func HashPassword(p string, rnd io.Reader) (string, error) {
	if p == "" || IsPasswordHash(p) {
		return p, nil
	}
	return shacrypt.HashSHA512(p, rnd)
}

// HashPasswords replaces every plain password in c (kestrel.password and
// kestrel.users[].password) by its hash. Appliers call it before anything
// is written, so a plain password never reaches a disk.
func (c *Config) HashPasswords(rnd io.Reader) error {
	h, err := HashPassword(c.Kestrel.Password, rnd)
	if err != nil {
		return fmt.Errorf("kestrel.password: %w", err)
	}
	c.Kestrel.Password = h
	for i := range c.Kestrel.Users {
		h, err := HashPassword(c.Kestrel.Users[i].Password, rnd)
		if err != nil {
			return fmt.Errorf("kestrel.users[%d].password: %w", i, err)
		}
		c.Kestrel.Users[i].Password = h
	}
	return nil
}

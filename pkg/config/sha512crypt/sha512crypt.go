// Package sha512crypt implements the SHA-512 based crypt(3) scheme ("$6$",
// Ulrich Drepper's specification), the password hash format of glibc,
// musl and busybox shadow files.
//
// Limits: only "$6$" is produced and verified; salts are truncated to 16
// characters and rounds clamped to 1000..999999999 as the specification
// says. Other schemes ($1$, $5$, yescrypt) are not supported.
package sha512crypt

import (
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	// DefaultRounds is the round count used when a hash names none.
	DefaultRounds = 5000
	minRounds     = 1000
	maxRounds     = 999999999
	saltLen       = 16
	itoa64        = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Hash hashes password with a random 16-character salt read from rnd and
// the default rounds, giving "$6$<salt>$<hash>".
func Hash(password string, rnd io.Reader) (string, error) {
	raw := make([]byte, saltLen)
	if _, err := io.ReadFull(rnd, raw); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	salt := make([]byte, saltLen)
	for i, b := range raw {
		salt[i] = itoa64[int(b)%len(itoa64)]
	}
	return Crypt(password, "$6$"+string(salt))
}

// Crypt computes the crypt string of password for a setting
// "$6$[rounds=N$]salt[$...]" (anything after the salt is ignored, so a
// full hash can be passed as the setting).
func Crypt(password, setting string) (string, error) {
	rest, ok := strings.CutPrefix(setting, "$6$")
	if !ok {
		return "", errors.New("not a SHA-512 crypt setting (must start with $6$)")
	}
	rounds, custom := DefaultRounds, false
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, tail, found := strings.Cut(r, "$")
		if !found {
			return "", errors.New("rounds= without a salt")
		}
		v, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return "", fmt.Errorf("bad rounds %q", n)
		}
		rounds = int(min(max(v, minRounds), maxRounds))
		custom, rest = true, tail
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > saltLen {
		salt = salt[:saltLen]
	}
	sum := digest([]byte(password), []byte(salt), rounds)
	var b strings.Builder
	b.WriteString("$6$")
	if custom {
		fmt.Fprintf(&b, "rounds=%d$", rounds)
	}
	b.WriteString(salt)
	b.WriteByte('$')
	encode(&b, sum)
	return b.String(), nil
}

// Verify reports whether password matches the "$6$" hash.
func Verify(password, hash string) bool {
	got, err := Crypt(password, hash)
	return err == nil && subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}

// IsHash reports whether s looks like a "$6$" crypt string.
func IsHash(s string) bool {
	if !strings.HasPrefix(s, "$6$") {
		return false
	}
	i := strings.LastIndexByte(s, '$')
	return len(s)-i-1 == 86
}

func digest(key, salt []byte, rounds int) []byte {
	h := sha512.New()
	h.Write(key)
	h.Write(salt)
	h.Write(key)
	b := h.Sum(nil)

	h.Reset()
	h.Write(key)
	h.Write(salt)
	n := len(key)
	for ; n > 64; n -= 64 {
		h.Write(b)
	}
	h.Write(b[:n])
	for i := len(key); i > 0; i >>= 1 {
		if i&1 != 0 {
			h.Write(b)
		} else {
			h.Write(key)
		}
	}
	a := h.Sum(nil)

	h.Reset()
	for range len(key) {
		h.Write(key)
	}
	p := repeat(h.Sum(nil), len(key))

	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := repeat(h.Sum(nil), len(salt))

	for r := range rounds {
		h.Reset()
		if r&1 != 0 {
			h.Write(p)
		} else {
			h.Write(a)
		}
		if r%3 != 0 {
			h.Write(s)
		}
		if r%7 != 0 {
			h.Write(p)
		}
		if r&1 != 0 {
			h.Write(a)
		} else {
			h.Write(p)
		}
		a = h.Sum(a[:0])
	}
	return a
}

func repeat(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}

// order is the byte permutation of the specification's final encoding.
var order = [21][3]int{
	{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
	{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13},
	{56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
}

func encode(b *strings.Builder, d []byte) {
	put := func(w uint32, n int) {
		for range n {
			b.WriteByte(itoa64[w&0x3f])
			w >>= 6
		}
	}
	for _, o := range order {
		put(uint32(d[o[0]])<<16|uint32(d[o[1]])<<8|uint32(d[o[2]]), 4)
	}
	put(uint32(d[63]), 2)
}

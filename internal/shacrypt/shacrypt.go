// Package shacrypt implements the SHA-crypt password hashes of glibc and
// busybox ("$5$" SHA-256 and "$6$" SHA-512, Ulrich Drepper's
// specification), the formats that busybox login/su and Kestrel's SSH
// server both verify.
//
// Limits: only $5$ and $6$; MD5-crypt ($1$), bcrypt ($2*$), yescrypt ($y$,
// the default of recent Debian mkpasswd) and DES crypt are not verified, so
// Verify reports ErrUnsupported for them and a password stored that way
// cannot log in. Salts longer than 16 characters are cut to 16 as the
// specification demands.
package shacrypt

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
)

const (
	// DefaultRounds is the specification's default, used when a hash
	// names no rounds.
	DefaultRounds = 5000
	minRounds     = 1000
	maxRounds     = 999999999
	maxSaltLen    = 16
	alphabet      = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// ErrUnsupported is returned for hash formats this package cannot check.
var ErrUnsupported = errors.New("unsupported crypt hash format")

// ErrMismatch is returned by Verify when the password is wrong.
var ErrMismatch = errors.New("password does not match")

// HashSHA512 returns a "$6$" hash of password with a fresh 16-character
// salt read from random (crypto/rand.Reader when nil) and DefaultRounds.
func HashSHA512(password string, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	buf := make([]byte, maxSaltLen)
	if _, err := io.ReadFull(random, buf); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	salt := make([]byte, maxSaltLen)
	for i, b := range buf {
		salt[i] = alphabet[int(b)%len(alphabet)]
	}
	return Crypt(password, "$6$"+string(salt))
}

// Verify checks password against a "$5$" or "$6$" hash in constant time.
func Verify(hashed, password string) error {
	if !strings.HasPrefix(hashed, "$5$") && !strings.HasPrefix(hashed, "$6$") {
		return ErrUnsupported
	}
	got, err := Crypt(password, hashed)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(hashed)) != 1 {
		return ErrMismatch
	}
	return nil
}

// Crypt hashes password with the settings of setting: "$5$" or "$6$", an
// optional "rounds=N$", the salt, and anything after the salt's '$' (an
// existing hash) ignored. It returns the full hash string.
func Crypt(password, setting string) (string, error) {
	var newHash func() hash.Hash
	var order []int
	var prefix string
	switch {
	case strings.HasPrefix(setting, "$5$"):
		newHash, order, prefix = sha256.New, order256, "$5$"
	case strings.HasPrefix(setting, "$6$"):
		newHash, order, prefix = sha512.New, order512, "$6$"
	default:
		return "", ErrUnsupported
	}
	rest := setting[len(prefix):]
	rounds, custom := DefaultRounds, false
	if strings.HasPrefix(rest, "rounds=") {
		n, after, ok := strings.Cut(rest[len("rounds="):], "$")
		if !ok {
			return "", fmt.Errorf("crypt setting: rounds without '$'")
		}
		r, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			return "", fmt.Errorf("crypt setting: rounds %q: %w", n, err)
		}
		rounds, custom, rest = int(min(max(r, minRounds), maxRounds)), true, after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > maxSaltLen {
		salt = salt[:maxSaltLen]
	}
	sum := shaCrypt(newHash, []byte(password), []byte(salt), rounds)

	var b strings.Builder
	b.WriteString(prefix)
	if custom {
		fmt.Fprintf(&b, "rounds=%d$", rounds)
	}
	b.WriteString(salt)
	b.WriteByte('$')
	for i := 0; i+2 < len(order); i += 3 {
		encode24(&b, sum[order[i]], sum[order[i+1]], sum[order[i+2]], 4)
	}
	if len(sum) == 64 {
		encode24(&b, 0, 0, sum[63], 2)
	} else {
		encode24(&b, 0, sum[31], sum[30], 3)
	}
	return b.String(), nil
}

// shaCrypt is steps 1-21 of the specification.
func shaCrypt(newHash func() hash.Hash, p, s []byte, rounds int) []byte {
	// Digest B: password, salt, password.
	h := newHash()
	h.Write(p)
	h.Write(s)
	h.Write(p)
	b := h.Sum(nil)
	size := len(b)

	// Digest A.
	h = newHash()
	h.Write(p)
	h.Write(s)
	for n := len(p); n > 0; n -= size {
		h.Write(b[:min(n, size)])
	}
	for n := len(p); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(p)
		}
	}
	a := h.Sum(nil)

	// P sequence: digest of the password repeated len(p) times.
	h = newHash()
	for range p {
		h.Write(p)
	}
	dp := h.Sum(nil)
	pSeq := repeatTo(dp, len(p))

	// S sequence: digest of the salt repeated 16+A[0] times.
	h = newHash()
	for i := 0; i < 16+int(a[0]); i++ {
		h.Write(s)
	}
	ds := h.Sum(nil)
	sSeq := repeatTo(ds, len(s))

	c := a
	for i := 0; i < rounds; i++ {
		h = newHash()
		if i&1 != 0 {
			h.Write(pSeq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sSeq)
		}
		if i%7 != 0 {
			h.Write(pSeq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pSeq)
		}
		c = h.Sum(nil)
	}
	return c
}

func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

func encode24(b *strings.Builder, b2, b1, b0 byte, n int) {
	w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
	for ; n > 0; n-- {
		b.WriteByte(alphabet[w&0x3f])
		w >>= 6
	}
}

// Byte orders of the final encoding, in groups of three.
var order512 = func() []int {
	var o []int
	for i := 0; i < 21; i++ {
		a, b, c := i, i+21, i+42
		switch i % 3 {
		case 0:
			o = append(o, a, b, c)
		case 1:
			o = append(o, b, c, a)
		case 2:
			o = append(o, c, a, b)
		}
	}
	return o
}()

var order256 = func() []int {
	var o []int
	for i := 0; i < 10; i++ {
		a, b, c := i, i+10, i+20
		switch i % 3 {
		case 0:
			o = append(o, a, b, c)
		case 1:
			o = append(o, c, a, b)
		case 2:
			o = append(o, b, c, a)
		}
	}
	return o
}()

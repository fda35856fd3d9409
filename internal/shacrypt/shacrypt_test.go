package shacrypt

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// Vectors from Drepper's specification.
var vectors = []struct{ setting, password, want string }{
	{"$5$saltstring", "Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"},
	{"$5$rounds=10000$saltstringsaltstring", "Hello world!", "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"},
	{"$5$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1"},
	{"$5$rounds=10$roundstoolow", "the minimum number is still observed", "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"},
	{"$6$saltstring", "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed", "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		got, err := Crypt(v.password, v.setting)
		if err != nil || got != v.want {
			t.Errorf("Crypt(%q, %q) = %q, %v; want %q", v.password, v.setting, got, err, v.want)
		}
		if err := Verify(v.want, v.password); err != nil {
			t.Errorf("Verify(%q) = %v", v.want, err)
		}
		if err := Verify(v.want, v.password+"x"); !errors.Is(err, ErrMismatch) {
			t.Errorf("Verify with a wrong password = %v, want ErrMismatch", err)
		}
	}
}

// TestAgainstTools checks hashes made by openssl and busybox mkpasswd (the
// tools an operator uses to write a pre-hashed password) and that busybox
// accepts ours.
func TestAgainstTools(t *testing.T) {
	for _, pw := range []string{"kestrel", "", "p@ss with spaces", strings.Repeat("long", 40)} {
		if _, err := exec.LookPath("openssl"); err == nil && pw != "" { // openssl refuses an empty password
			for _, alg := range []string{"-5", "-6"} {
				out, err := exec.Command("openssl", "passwd", alg, "-salt", "abcdEFGH12345678", pw).Output()
				if err != nil {
					t.Fatal(err)
				}
				h := strings.TrimSpace(string(out))
				if err := Verify(h, pw); err != nil {
					t.Errorf("openssl %s hash %q of %q: %v", alg, h, pw, err)
				}
			}
		}
		if _, err := exec.LookPath("busybox"); err == nil {
			out, err := exec.Command("busybox", "mkpasswd", "-m", "sha512", pw, "saltsaltsalt").Output()
			if err != nil {
				t.Fatal(err)
			}
			h := strings.TrimSpace(string(out))
			if err := Verify(h, pw); err != nil {
				t.Errorf("busybox hash %q of %q: %v", h, pw, err)
			}
			ours, _ := Crypt(pw, "$6$saltsaltsalt")
			if ours != h {
				t.Errorf("ours %q, busybox %q", ours, h)
			}
		}
	}
}

func TestHashSHA512(t *testing.T) {
	h, err := HashSHA512("secret", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$6$") || len(strings.Split(h, "$")[2]) != 16 {
		t.Errorf("hash %q", h)
	}
	if err := Verify(h, "secret"); err != nil {
		t.Error(err)
	}
	h2, _ := HashSHA512("secret", nil)
	if h == h2 {
		t.Error("two hashes share a salt")
	}
}

func TestUnsupported(t *testing.T) {
	for _, h := range []string{"$1$salt$hash", "$y$j9T$abc$def", "$2b$10$x", "*", "!", "", "plain"} {
		if err := Verify(h, "x"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Verify(%q) = %v, want ErrUnsupported", h, err)
		}
	}
}

// BenchmarkVerifyLength shows how the cost grows with the password's
// length: 1024 bytes is the SSH server's cap (OpenSSH's), 4095 the most
// busybox login reads from the console.
func BenchmarkVerifyLength(b *testing.B) {
	for _, n := range []int{16, 1024, 4095} {
		pw := strings.Repeat("p", n)
		hash, err := HashSHA512(pw, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				if err := Verify(hash, pw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package sha512crypt

import (
	"bytes"
	"crypto/rand"
	"os/exec"
	"strings"
	"testing"
)

// Vectors from Drepper's "Unix crypt using SHA-256 and SHA-512".
func TestSpecVectors(t *testing.T) {
	for _, tc := range []struct{ setting, key, want string }{
		{"$6$saltstring", "Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"$6$rounds=10000$saltstringsaltstring", "Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"$6$rounds=5000$toolongsaltstring", "This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.", "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
		{"$6$rounds=77777$short", "we have a short salt string but not a short password", "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
		{"$6$rounds=10$roundstoolow", "the minimum number is still observed", "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
	} {
		got, err := Crypt(tc.key, tc.setting)
		if err != nil || got != tc.want {
			t.Errorf("Crypt(%q, %q) = %q, %v; want %q", tc.key, tc.setting, got, err, tc.want)
		}
		if !Verify(tc.key, tc.want) || Verify(tc.key+"x", tc.want) {
			t.Errorf("Verify mismatch for %q", tc.want)
		}
	}
}

func TestHashVerifiesWithOpenSSL(t *testing.T) {
	h, err := Hash("s3cret pass", rand.Reader)
	if err != nil || !IsHash(h) || !Verify("s3cret pass", h) {
		t.Fatalf("Hash = %q, %v", h, err)
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	salt := strings.Split(h, "$")[2]
	out, err := exec.Command(openssl, "passwd", "-6", "-salt", salt, "s3cret pass").Output()
	if err != nil {
		t.Skipf("openssl passwd -6: %v", err)
	}
	if got := string(bytes.TrimSpace(out)); got != h {
		t.Errorf("openssl says %q, we say %q", got, h)
	}
}

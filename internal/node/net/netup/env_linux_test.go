package netup

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	urand "github.com/u-root/uio/rand"
)

// TestUpUsesInsecureRandom: Up (on an interface that does not exist, so
// it fails after the switch) gives u-root's rand, and so the DHCP
// library's transaction IDs, getrandom(GRND_INSECURE), and leaves PID 1's
// environment alone (Kestrel once switched u-root with UROOT_NOHWRNG,
// which a child process could inherit).
func TestUpUsesInsecureRandom(t *testing.T) {
	_, hadEnv := os.LookupEnv("UROOT_NOHWRNG")
	_, err := Up(context.Background(), Config{Interfaces: []string{"kestrel-none0"}, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "kestrel-none0") {
		t.Fatalf("Up on a missing interface: %v", err)
	}
	if _, ok := urand.Reader.(xidRandom); !ok {
		t.Fatalf("u-root rand's Reader is %T, want xidRandom (this kernel has GRND_INSECURE)", urand.Reader)
	}
	if _, has := os.LookupEnv("UROOT_NOHWRNG"); has != hadEnv {
		t.Errorf("Up changed UROOT_NOHWRNG in the environment (set before %v, after %v)", hadEnv, has)
	}
	for _, n := range []int{1, 4, 64, 4096} {
		b := make([]byte, n)
		if got, err := urand.Read(b); err != nil || got != n {
			t.Fatalf("Read(%d bytes) = %d, %v", n, got, err)
		}
		if n >= 64 && bytes.Equal(b, make([]byte, n)) {
			t.Errorf("Read(%d bytes) gave only zeros", n)
		}
	}
}

package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestWriteMatchesVeritysetup checks Write against cryptsetup's
// `veritysetup format --no-superblock` on the same data and salt: same root
// hash, byte-identical tree, and `veritysetup verify` accepts our image.
func TestWriteMatchesVeritysetup(t *testing.T) {
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Fatalf("veritysetup (Debian's cryptsetup-bin, installed by scripts/deps.sh): %v", err)
	}
	const perBlock = BlockSize / 32
	tests := []struct {
		name string
		size int
		salt string
	}{
		{"one byte", 1, "00ff"},
		{"one block", BlockSize, "a1b2c3"},
		{"partial second block", BlockSize + 904, "01"},
		{"one full hash block", perBlock * BlockSize, "5a5a5a5a"},
		{"two hash blocks", perBlock*BlockSize + 1, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{"three levels", (perBlock*perBlock + 3) * BlockSize, "c0ffee"},
		{"no salt", 3 * BlockSize, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data := make([]byte, tt.size)
			rand.Read(data)
			salt, _ := hex.DecodeString(tt.salt)
			var out bytes.Buffer
			p, err := Write(&out, bytes.NewReader(data), salt)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			padded := (tt.size + BlockSize - 1) / BlockSize * BlockSize
			if p.HashOffset != uint64(padded) || p.DataBlocks != uint64(padded/BlockSize) {
				t.Fatalf("params %+v: want hash offset %d", p, padded)
			}
			img := out.Bytes()
			if !bytes.Equal(img[:tt.size], data) || !bytes.Equal(img[tt.size:padded], make([]byte, padded-tt.size)) {
				t.Fatal("data not copied and zero-padded")
			}
			if got := uint64(len(img) - padded); got != TreeSize(p.DataBlocks) {
				t.Errorf("tree is %d bytes, TreeSize says %d", got, TreeSize(p.DataBlocks))
			}

			dataFile, hashFile := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
			write(t, dataFile, img[:padded])
			saltArg := tt.salt
			if saltArg == "" {
				saltArg = "-"
			}
			cmd := exec.Command("veritysetup", "format", "--no-superblock", "--format=1", "--hash=sha256",
				"--data-block-size=4096", "--hash-block-size=4096", "--salt="+saltArg, dataFile, hashFile)
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, got)
			}
			m := regexp.MustCompile(`Root hash:\s+([0-9a-f]{64})`).FindSubmatch(got)
			if m == nil {
				t.Fatalf("no root hash in veritysetup's output:\n%s", got)
			}
			if string(m[1]) != p.RootHash {
				t.Errorf("root hash %s, veritysetup %s", p.RootHash, m[1])
			}
			tree, err := os.ReadFile(hashFile)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tree, img[padded:]) {
				t.Errorf("tree differs from veritysetup's (%d bytes, veritysetup %d)", len(img)-padded, len(tree))
			}

			// veritysetup verifies our single-file image with our parameters.
			imgFile := filepath.Join(dir, "image")
			write(t, imgFile, img)
			verify := exec.Command("veritysetup", "verify", "--no-superblock", "--format=1", "--hash=sha256",
				"--data-block-size=4096", "--hash-block-size=4096", "--salt="+saltArg,
				"--data-blocks="+strconv.FormatUint(p.DataBlocks, 10), "--hash-offset="+strconv.FormatUint(p.HashOffset, 10), imgFile, imgFile, p.RootHash)
			if out, err := verify.CombinedOutput(); err != nil {
				t.Errorf("%s: %v\n%s", verify, err, out)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "root.squashfs")
	write(t, data, bytes.Repeat([]byte("kestrel"), 3000))
	out := filepath.Join(dir, "root.img")
	p1, err := Build(data, out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(img)) != p1.HashOffset+TreeSize(p1.DataBlocks) || len(p1.Salt) != 2*SaltSize {
		t.Errorf("image %d bytes, params %+v", len(img), p1)
	}
	p2, err := Build(data, out)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Salt == p2.Salt || p1.RootHash == p2.RootHash {
		t.Errorf("two builds share a salt or root hash: %+v %+v", p1, p2)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := Build(filepath.Join(dir, "missing"), filepath.Join(dir, "x.img")); err == nil {
		t.Error("Build of a missing file succeeded")
	}
	empty := filepath.Join(dir, "empty")
	write(t, empty, nil)
	if _, err := Build(empty, filepath.Join(dir, "y.img")); err == nil {
		t.Error("Build of an empty file succeeded")
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkWrite is the hash tree's throughput over 64 MiB (a small root).
func BenchmarkWrite(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	for range b.N {
		if _, err := Write(io.Discard, bytes.NewReader(data), []byte("salt")); err != nil {
			b.Fatal(err)
		}
	}
}

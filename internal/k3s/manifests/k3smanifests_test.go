package manifests

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kestrel-os/kestrel/internal/config"
)

// step is one boot: the shipped manifests (nil: as before), what the
// operator did to the k3s dir before it, and Install's expected result.
type step struct {
	shipped map[string]string
	prep    func(t *testing.T, k3sDir string)
	enabled bool
	// want is the k3s dir's full content afterwards (name -> content).
	want    map[string]string
	wantErr string
}

var (
	v1 = map[string]string{"crd.yaml": "crd v1\n", "deployment.yaml": "deploy v1\n"}
	v2 = map[string]string{"crd.yaml": "crd v2\n", "rbac.yaml": "rbac v2\n"}
)

func installed(m map[string]string, extra ...string) map[string]string {
	out := map[string]string{}
	for n, c := range m {
		out[Prefix+n] = c
	}
	for i := 0; i+1 < len(extra); i += 2 {
		out[extra[i]] = extra[i+1]
	}
	return out
}

func write(name, content string) func(*testing.T, string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstall(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"first boot of a server", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
		}},
		{"every boot is the same", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
			{enabled: true, want: installed(v1)},
		}},
		{"turned off removes only what was placed", []step{
			{shipped: v1, prep: write("coredns.yaml", "k3s's own\n"), enabled: true, want: installed(v1, "coredns.yaml", "k3s's own\n")},
			{prep: write("mine.yaml", "operator's\n"), want: map[string]string{"coredns.yaml": "k3s's own\n", "mine.yaml": "operator's\n"}},
			{want: map[string]string{"coredns.yaml": "k3s's own\n", "mine.yaml": "operator's\n"}},
		}},
		{"never enabled touches nothing", []step{
			{shipped: v1, prep: write(Prefix+"crd.yaml", "someone else's\n"), want: map[string]string{Prefix + "crd.yaml": "someone else's\n"}},
		}},
		{"turned off keeps a file the operator edited", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
			{prep: write(Prefix+"crd.yaml", "edited\n"), want: map[string]string{Prefix + "crd.yaml": "edited\n"}, wantErr: "was changed since kestrel wrote it"},
		}},
		{"a file kestrel did not write is not overwritten", []step{
			{shipped: v1, prep: write(Prefix+"crd.yaml", "someone else's\n"), enabled: true,
				want: installed(v1, Prefix+"crd.yaml", "someone else's\n"), wantErr: "is not what kestrel wrote there"},
		}},
		{"an edited file is not overwritten either", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
			{shipped: v2, prep: write(Prefix+"crd.yaml", "edited\n"), enabled: true,
				want: installed(v2, Prefix+"crd.yaml", "edited\n"), wantErr: "is not what kestrel wrote there"},
		}},
		{".skip keeps a file out", []step{
			{shipped: v1, prep: write(Prefix+"deployment.yaml.skip", ""), enabled: true,
				want: map[string]string{Prefix + "crd.yaml": "crd v1\n", Prefix + "deployment.yaml.skip": ""}},
		}},
		{"upgrade replaces changed files and drops removed ones", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
			{shipped: v2, enabled: true, want: installed(v2)},
			{want: map[string]string{}},
		}},
		{"a node turned agent loses them too", []step{
			{shipped: v1, enabled: true, want: installed(v1)},
			{enabled: false, want: map[string]string{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			k3sDir := filepath.Join(root, K3sDir)
			for i, s := range tt.steps {
				if s.shipped != nil {
					ship := filepath.Join(root, ShippedDir)
					os.RemoveAll(ship)
					for n, c := range s.shipped {
						write(n, c)(t, ship)
					}
				}
				if s.prep != nil {
					s.prep(t, k3sDir)
				}
				err := Install(root, s.enabled)
				if s.wantErr == "" && err != nil || s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)) {
					t.Fatalf("step %d: err = %v, want %q", i, err, s.wantErr)
				}
				got := map[string]string{}
				entries, _ := os.ReadDir(k3sDir)
				for _, e := range entries {
					data, err := os.ReadFile(filepath.Join(k3sDir, e.Name()))
					if err != nil {
						t.Fatal(err)
					}
					got[e.Name()] = string(data)
				}
				if len(got) != len(s.want) {
					t.Fatalf("step %d: k3s dir holds %v, want %v", i, got, s.want)
				}
				for n, c := range s.want {
					if got[n] != c {
						t.Fatalf("step %d: %s = %q, want %q (dir %v)", i, n, got[n], c, got)
					}
				}
			}
		})
	}
}

func TestInstallErrors(t *testing.T) {
	tests := []struct {
		name    string
		prep    func(t *testing.T, root string)
		wantErr string
	}{
		{"nothing shipped", func(*testing.T, string) {}, "none shipped"},
		{"corrupt record", func(t *testing.T, root string) {
			write("crd.yaml", "x")(t, filepath.Join(root, ShippedDir))
			write(filepath.Base(RecordFile), "{")(t, filepath.Join(root, filepath.Dir(RecordFile)))
		}, "k3s-manifests.json"},
		{"record naming another file", func(t *testing.T, root string) {
			write("crd.yaml", "x")(t, filepath.Join(root, ShippedDir))
			write(filepath.Base(RecordFile), `{"files":{"/etc/passwd":{"sha256":"00"}}}`)(t, filepath.Join(root, filepath.Dir(RecordFile)))
		}, "unexpected entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			tt.prep(t, root)
			if err := Install(root, true); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want bool
	}{
		{"defaults: a server", "", true},
		{"explicit server", "kestrel:\n  k3s: {role: server}\n", true},
		{"agent by server URL", "kestrel:\n  k3s: {server_url: 'https://s:6443', token: t}\n", false},
		{"k3OS agent by k3s_args", "k3os:\n  k3s_args: [agent]\n  server_url: https://s:6443\n", false},
		{"turned off", "kestrel:\n  k3s: {upgrade_controller: false}\n", false},
		{"turned on", "kestrel:\n  k3s: {upgrade_controller: true}\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var src config.Sources
			src.Add("test.yaml", []byte(tt.yaml))
			r, err := src.Merge()
			if err != nil || len(src.Errors()) > 0 {
				t.Fatalf("config: %v %v", err, src.Errors())
			}
			if got := Enabled(r.Config); got != tt.want {
				t.Errorf("Enabled = %v, want %v", got, tt.want)
			}
		})
	}
	if !Enabled(nil) {
		t.Error("Enabled(nil) = false")
	}
}

func TestShip(t *testing.T) {
	const img = "kestrel/upgrade-controller:1.2.0"
	tests := []struct {
		name    string
		files   map[string]string
		image   string
		want    map[string]string
		wantErr string
	}{
		{"stamps the image", map[string]string{"d.yaml": "image: " + ImagePlaceholder + "\n", "n.yaml": "ns\n", "README.md": "x"}, img,
			map[string]string{"d.yaml": "image: " + img + "\n", "n.yaml": "ns\n"}, ""},
		{"no image: copied as is", map[string]string{"d.yaml": "image: " + ImagePlaceholder + "\n"}, "",
			map[string]string{"d.yaml": "image: " + ImagePlaceholder + "\n"}, ""},
		{"placeholder renamed", map[string]string{"d.yaml": "image: other:dev\n"}, img, nil, "names the image"},
		{"no manifests", map[string]string{"README.md": "x"}, img, nil, "no *.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, root := t.TempDir(), t.TempDir()
			for n, c := range tt.files {
				write(n, c)(t, src)
			}
			err := Ship(src, root, tt.image)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(filepath.Join(root, ShippedDir))
			if len(entries) != len(tt.want) {
				t.Errorf("shipped %d files, want %d", len(entries), len(tt.want))
			}
			for n, c := range tt.want {
				got, err := os.ReadFile(filepath.Join(root, ShippedDir, n))
				if err != nil || string(got) != c {
					t.Errorf("%s = %q, %v; want %q", n, got, err, c)
				}
			}
		})
	}
}

// The repository's manifests ship with the image stamped into the
// Deployment, and install under the prefix.
func TestShipRepositoryManifests(t *testing.T) {
	const img = "kestrel/upgrade-controller:9.9.9"
	root := t.TempDir()
	if err := Ship("../../../manifests/upgrade-controller", root, img); err != nil {
		t.Fatal(err)
	}
	dep, err := os.ReadFile(filepath.Join(root, ShippedDir, "deployment.yaml"))
	if err != nil || !strings.Contains(string(dep), "image: "+img+"\n") {
		t.Fatalf("deployment (%v):\n%s", err, dep)
	}
	if err := Install(root, true); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"namespace.yaml", "crd.yaml", "rbac.yaml", "deployment.yaml", "plan-kestrel.yaml"} {
		if _, err := os.Stat(filepath.Join(root, K3sDir, Prefix+n)); err != nil {
			t.Error(err)
		}
	}
}

func TestApply(t *testing.T) {
	off := &config.Config{}
	f := false
	off.Kestrel.K3s.UpgradeController = &f
	agent := &config.Config{}
	agent.Kestrel.K3s.Role = "agent"
	tests := []struct {
		name               string
		k3s                bool
		cfg                *config.Config
		manifests, imports int // files in K3sDir and ImagesDir afterwards
		wantErr            string
	}{
		{"server", true, &config.Config{}, 1, 1, ""},
		{"agent: the image only", true, agent, 0, 1, ""},
		{"turned off", true, off, 0, 0, ""},
		{"no k3s in the image", false, &config.Config{}, 0, 0, ""},
		{"no merged config", true, nil, 0, 0, "no merged config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write("crd.yaml", "crd\n")(t, filepath.Join(root, ShippedDir))
			write(ImageName, "image\n")(t, filepath.Join(root, ShippedImageDir))
			if tt.k3s {
				write("k3s", "")(t, filepath.Join(root, "usr/bin"))
			}
			err := Apply(root, func() *config.Config { return tt.cfg })
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			m, _ := os.ReadDir(filepath.Join(root, K3sDir))
			i, _ := os.ReadDir(filepath.Join(root, ImagesDir))
			if len(m) != tt.manifests || len(i) != tt.imports {
				t.Errorf("k3s dirs hold %d manifests and %d images, want %d and %d", len(m), len(i), tt.manifests, tt.imports)
			}
			if tt.imports > 0 {
				got, err := os.ReadFile(filepath.Join(root, ImagesDir, Prefix+ImageName))
				if err != nil || string(got) != "image\n" {
					t.Errorf("image copy %q, %v", got, err)
				}
			}
		})
	}
}

// The image and the manifests share the record without touching each
// other's entries; an image no longer shipped is removed, an absent one is
// no error.
func TestInstallImage(t *testing.T) {
	root := t.TempDir()
	write("crd.yaml", "crd\n")(t, filepath.Join(root, ShippedDir))
	imgDir := filepath.Join(root, ShippedImageDir)
	write(ImageName, "image v1\n")(t, imgDir)
	write("other.tar", "someone's\n")(t, filepath.Join(root, ImagesDir))
	copyPath := filepath.Join(root, ImagesDir, Prefix+ImageName)
	steps := []struct {
		prep      func()
		manifests bool
		image     bool
		want      string // content of the copy, "" for none
	}{
		{func() {}, true, true, "image v1\n"},
		{func() { write(ImageName, "image v2\n")(t, imgDir) }, true, true, "image v2\n"},
		{func() {}, false, true, "image v2\n"}, // manifests off: the image stays
		{func() { os.RemoveAll(imgDir) }, true, true, ""},
		{func() { write(ImageName, "image v3\n")(t, imgDir) }, true, true, "image v3\n"},
		{func() {}, true, false, ""},
	}
	for i, s := range steps {
		s.prep()
		if err := errors.Join(Install(root, s.manifests), InstallImage(root, s.image)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, err := os.ReadFile(copyPath)
		if s.want == "" && !errors.Is(err, fs.ErrNotExist) || s.want != "" && string(got) != s.want {
			t.Fatalf("step %d: copy %q (%v), want %q", i, got, err, s.want)
		}
		if _, err := os.Stat(filepath.Join(root, K3sDir, Prefix+"crd.yaml")); (err == nil) != s.manifests {
			t.Fatalf("step %d: manifest present = %v, want %v", i, err == nil, s.manifests)
		}
		if other, _ := os.ReadFile(filepath.Join(root, ImagesDir, "other.tar")); string(other) != "someone's\n" {
			t.Fatalf("step %d: other.tar touched", i)
		}
	}
}

// A large shipped image with the builder's sidecar: the copy is checked
// against the sidecar's sum; later boots trust the copy's size and mtime,
// and notice a rewrite that changed them.
func TestLargeImageCopy(t *testing.T) {
	root := t.TempDir()
	shipped := filepath.Join(root, ShippedImageDir, ImageName)
	big := strings.Repeat("x", statTrust+10)
	write(ImageName, big)(t, filepath.Dir(shipped))
	if err := WriteSum(shipped); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(root, ImagesDir, Prefix+ImageName)
	if err := InstallImage(root, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(copyPath); string(got) != big {
		t.Fatalf("copy has %d bytes", len(got))
	}

	// Same size and mtime: trusted without hashing (so a same-size
	// rewrite that restores the mtime goes unnoticed, as documented).
	fi, _ := os.Stat(copyPath)
	os.WriteFile(copyPath, []byte(strings.Repeat("y", len(big))), 0o644)
	os.Chtimes(copyPath, fi.ModTime(), fi.ModTime())
	if err := InstallImage(root, true); err != nil {
		t.Fatal(err)
	}
	// A rewrite with a new mtime is seen: not overwritten, reported.
	os.Chtimes(copyPath, fi.ModTime().Add(time.Second), fi.ModTime().Add(time.Second))
	if err := InstallImage(root, true); err == nil || !strings.Contains(err.Error(), "is not what kestrel wrote there") {
		t.Fatalf("err = %v", err)
	}

	// A sidecar that does not match the shipped file fails the copy.
	os.Remove(copyPath)
	os.WriteFile(shipped+SumSuffix, []byte(strings.Repeat("0", 64)+"  image.tar\n"), 0o644)
	if err := InstallImage(root, true); err == nil || !strings.Contains(err.Error(), "want 0000") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(copyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a copy that does not match its sum was left: %v", err)
	}
	os.WriteFile(shipped+SumSuffix, []byte("garbage\n"), 0o644)
	if err := InstallImage(root, true); err == nil || !strings.Contains(err.Error(), "not a sha256 line") {
		t.Fatalf("err = %v", err)
	}
}

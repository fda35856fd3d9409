package datasource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
)

const userData = "#cloud-config\nhostname: from-user-data\nkestrel:\n  sysctl: {vm.swappiness: '5'}\n"
const metaData = "instance-id: iid-local01\nlocal-hostname: from-meta-data\npublic-keys:\n  - ssh-ed25519 AAAAmeta meta@nocloud\n"

// buildCIDATA makes a disk image holding one filesystem of type fsType
// labelled label with the given files, as cloud-localds would.
func buildCIDATA(t *testing.T, fsType filesystem.Type, label string, files map[string]string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "cidata.img")
	d, err := diskfs.Create(img, 10<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	spec := disk.FilesystemSpec{Partition: 0, FSType: fsType, VolumeLabel: label}
	if fsType == filesystem.TypeISO9660 {
		d.LogicalBlocksize = 2048
		spec.WorkDir = t.TempDir()
	}
	fsys, err := d.CreateFilesystem(spec)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		f, err := fsys.OpenFile("/"+name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if iso, ok := fsys.(*iso9660.FileSystem); ok {
		if err := iso.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: label}); err != nil {
			t.Fatal(err)
		}
	}
	d.Close()
	return img
}

func TestNoCloud(t *testing.T) {
	files := map[string]string{"user-data": userData, "meta-data": metaData}
	for _, tc := range []struct {
		name  string
		typ   filesystem.Type
		label string
	}{
		{"vfat", filesystem.TypeFat32, "CIDATA"},
		{"iso9660", filesystem.TypeISO9660, "cidata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := buildCIDATA(t, tc.typ, "OTHER", map[string]string{"user-data": "hostname: wrong\n"})
			img := buildCIDATA(t, tc.typ, tc.label, files)
			junk := filepath.Join(t.TempDir(), "junk")
			os.WriteFile(junk, make([]byte, 1<<20), 0o644)
			nc := &NoCloud{Devices: func() ([]string, error) { return []string{junk, other, img}, nil }}
			ok, err := nc.Probe(context.Background())
			if err != nil || !ok {
				t.Fatalf("Probe = %v, %v", ok, err)
			}
			d, err := nc.Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if string(d.UserData) != userData {
				t.Errorf("user-data = %q", d.UserData)
			}
			want := Meta{InstanceID: "iid-local01", Hostname: "from-meta-data", PublicKeys: []string{"ssh-ed25519 AAAAmeta meta@nocloud"}}
			if !reflect.DeepEqual(d.Meta, want) {
				t.Errorf("meta = %+v", d.Meta)
			}
			s := &config.Sources{}
			raws := Local(context.Background(), s, nc)
			r, err := s.Merge()
			if err != nil || len(r.Errors) > 0 {
				t.Fatal(err, r.Errors)
			}
			if r.Config.Hostname != "from-user-data" || r.Config.SSHAuthorizedKeys[0] != "ssh-ed25519 AAAAmeta meta@nocloud" || r.Config.Kestrel.Sysctl["vm.swappiness"] != "5" {
				t.Errorf("merged %+v", r.Config)
			}
			if len(raws) != 2 || raws[1].Name != "nocloud:"+img+"/user-data" {
				t.Errorf("raws %+v", raws)
			}
			if p, _ := r.Origin("hostname"); p.String() != "nocloud:"+img+"/user-data:2:11" {
				t.Errorf("origin %v", p)
			}
		})
	}
	nc := &NoCloud{Devices: func() ([]string, error) { return []string{"/nonexistent"}, nil }}
	if ok, err := nc.Probe(context.Background()); ok || err != nil {
		t.Errorf("probe without CIDATA = %v %v", ok, err)
	}
}

func TestBlockDevices(t *testing.T) {
	sys := t.TempDir()
	for _, n := range []string{"vda", "vda1", "sr0", "loop0", "zram0", "ram1"} {
		os.Mkdir(filepath.Join(sys, n), 0o755)
	}
	got, err := BlockDevices(sys, "/dev")()
	if err != nil || !reflect.DeepEqual(got, []string{"/dev/sr0", "/dev/vda", "/dev/vda1"}) {
		t.Fatalf("%v %v", got, err)
	}
}

// TestNoCloudCandidates: Kestrel's own partitions (by GPT name), the
// verity mapping of the root, and the disk Kestrel is installed on with
// its ESP are not probed; every other device is, including a partition
// named esp on another disk and one with a look-alike name.
func TestNoCloudCandidates(t *testing.T) {
	sys := t.TempDir()
	for n, uevent := range map[string]string{
		"vda":       "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1":      "DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=esp\n",
		"vda2":      "DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root-a\n",
		"vda3":      "DEVNAME=vda3\nDEVTYPE=partition\nPARTN=3\nPARTNAME=root-b\n",
		"vda4":      "DEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=state\n",
		"sda":       "DEVNAME=sda\nDEVTYPE=disk\n",
		"sda1":      "DEVNAME=sda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=state-backup\n",
		"sda2":      "DEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=esp\n",
		"nvme0n1":   "DEVNAME=nvme0n1\nDEVTYPE=disk\n",
		"nvme0n1p1": "DEVNAME=nvme0n1p1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=esp\n",
		"nvme0n1p4": "DEVNAME=nvme0n1p4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=state\n",
		"dm-0":      "DEVNAME=dm-0\nDEVTYPE=disk\n",
		"dm-1":      "DEVNAME=dm-1\nDEVTYPE=disk\n",
		"sr0":       "DEVNAME=sr0\nDEVTYPE=disk\n",
		"loop0":     "DEVNAME=loop0\nDEVTYPE=disk\n",
	} {
		// /sys/class/block has every device; a whole disk's directory
		// also holds its partitions'.
		dirs := []string{filepath.Join(sys, n)}
		for _, disk := range []string{"vda", "sda", "nvme0n1"} {
			if n != disk && strings.HasPrefix(n, disk) {
				dirs = append(dirs, filepath.Join(sys, disk, n))
			}
		}
		for _, d := range dirs {
			os.MkdirAll(d, 0o755)
			if err := os.WriteFile(filepath.Join(d, "uevent"), []byte(uevent), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for n, name := range map[string]string{"dm-0": layout.VerityRootName, "dm-1": "vg0-data"} {
		os.MkdirAll(filepath.Join(sys, n, "dm"), 0o755)
		os.WriteFile(filepath.Join(sys, n, "dm", "name"), []byte(name+"\n"), 0o644)
	}
	got, err := NoCloudCandidates(sys, "/dev")()
	if want := []string{"/dev/dm-1", "/dev/sda", "/dev/sda1", "/dev/sda2", "/dev/sr0"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("NoCloudCandidates = %v, %v; want %v", got, err, want)
	}
}

func TestParseNoCloudMeta(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Meta
	}{
		{"instance-id: a\nhostname: h\n", Meta{InstanceID: "a", Hostname: "h"}},
		{"instance-id: a\npublic-keys: k1\n", Meta{InstanceID: "a", PublicKeys: []string{"k1"}}},
		{"public-keys: {b: k2, a: k1}\nunknown: ignored\n", Meta{PublicKeys: []string{"k1", "k2"}}},
	} {
		got, err := parseNoCloudMeta([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v %v", tc.in, got, err)
		}
	}
}

// metadataServer serves EC2 (IMDSv2) and OpenStack style metadata.
func metadataServer(t *testing.T, userData string) *httptest.Server {
	const token = "tok123"
	mux := http.NewServeMux()
	ec2 := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-aws-ec2-metadata-token") != token {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			w.Write([]byte(body))
		}
	}
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
			http.Error(w, "ttl", http.StatusBadRequest)
			return
		}
		w.Write([]byte(token))
	})
	mux.HandleFunc("GET /latest/meta-data/instance-id", ec2("i-0abc"))
	mux.HandleFunc("GET /latest/meta-data/local-hostname", ec2("ip-10-0-0-5.ec2.internal"))
	mux.HandleFunc("GET /latest/meta-data/public-keys/", ec2("0=ops\n1=dev"))
	mux.HandleFunc("GET /latest/meta-data/public-keys/0/openssh-key", ec2("ssh-ed25519 AAAAec2a ops\n"))
	mux.HandleFunc("GET /latest/meta-data/public-keys/1/openssh-key", ec2("ssh-ed25519 AAAAec2b dev\n"))
	if userData != "" {
		mux.HandleFunc("GET /latest/user-data", ec2(userData))
		mux.HandleFunc("GET /openstack/latest/user_data", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(userData)) })
	}
	mux.HandleFunc("GET /openstack/latest/meta_data.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"uuid":"u-1","hostname":"os-host","name":"os-name","public_keys":{"b":"ssh-ed25519 AAAAosb","a":"ssh-ed25519 AAAAosa"}}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestEC2(t *testing.T) {
	srv := metadataServer(t, "kestrel: {timezone: UTC}\n")
	e := &EC2{BaseURL: srv.URL}
	if ok, _ := e.Probe(context.Background()); !ok {
		t.Fatal("probe failed")
	}
	d, err := e.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{InstanceID: "i-0abc", Hostname: "ip-10-0-0-5.ec2.internal", PublicKeys: []string{"ssh-ed25519 AAAAec2a ops", "ssh-ed25519 AAAAec2b dev"}}
	if !reflect.DeepEqual(d.Meta, want) || string(d.UserData) != "kestrel: {timezone: UTC}\n" {
		t.Fatalf("%+v %q", d.Meta, d.UserData)
	}
	// No user data is not an error.
	d, err = (&EC2{BaseURL: metadataServer(t, "").URL}).Fetch(context.Background())
	if err != nil || d.UserData != nil {
		t.Fatalf("no user data: %v %q", err, d.UserData)
	}
	// Nothing listening: probe says no, quickly.
	if ok, _ := (&EC2{BaseURL: "http://127.0.0.1:1"}).Probe(context.Background()); ok {
		t.Fatal("probe of nothing said yes")
	}
}

func TestOpenStack(t *testing.T) {
	srv := metadataServer(t, "hostname: os-user\n")
	o := &OpenStack{BaseURL: srv.URL}
	if ok, _ := o.Probe(context.Background()); !ok {
		t.Fatal("probe failed")
	}
	d, err := o.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{InstanceID: "u-1", Hostname: "os-host", PublicKeys: []string{"ssh-ed25519 AAAAosa", "ssh-ed25519 AAAAosb"}}
	if !reflect.DeepEqual(d.Meta, want) || string(d.UserData) != "hostname: os-user\n" {
		t.Fatalf("%+v %q", d.Meta, d.UserData)
	}
}

func TestFetchURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/c.yaml" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("hostname: from-url\n"))
	}))
	defer srv.Close()
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hostname: tls\n")) }))
	defer tls.Close()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/c.yaml"), []byte("hostname: from-file\n"), 0o644)
	env := Env{FileRoot: root, Client: tls.Client()}
	for u, want := range map[string]string{
		tls.URL + "/x":             "hostname: tls\n",
		"file:///etc/c.yaml":       "hostname: from-file\n",
		"file:///../../etc/c.yaml": "hostname: from-file\n", // cannot escape FileRoot
	} {
		b, err := FetchURL(context.Background(), u, env)
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", u, b, err)
		}
	}
	for u, want := range map[string]string{
		srv.URL + "/c.yaml":   "plain http",
		"file:///nope.yaml":   "no such file",
		"ftp://example/x":     "only http, https and file",
		"http://127.0.0.1:1/": "plain http",
	} {
		if _, err := FetchURL(context.Background(), u, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %s", u, err, want)
		}
	}
	// With kestrel.allow_insecure_http.
	env.AllowHTTP = true
	if b, err := FetchURL(context.Background(), srv.URL+"/c.yaml", env); err != nil || string(b) != "hostname: from-url\n" {
		t.Errorf("http with the opt-in: %q %v", b, err)
	}
	for u, want := range map[string]string{
		srv.URL + "/missing":  "404",
		"http://127.0.0.1:1/": "connection refused",
	} {
		if _, err := FetchURL(context.Background(), u, env); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %s", u, err, want)
		}
	}
}

// TestFullOrder: local files, then NoCloud, then metadata, then
// config_url; each later source wins for what it sets; a bad user-data
// is skipped whole and reported; the cache replays the same result.
func TestFullOrder(t *testing.T) {
	root := t.TempDir()
	loc := config.DefaultLocations(root, filepath.Join(root, "esp"), filepath.Join(root, "cmdline"))
	write := func(p, s string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := metadataServer(t, "hostname: from-ec2-user-data\nkestrel: {sysctl: {c: ec2}}\n")
	cfgSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("kestrel: {sysctl: {d: url}, timezone: Asia/Tokyo}\n"))
	}))
	defer cfgSrv.Close()
	write(loc.ESPConfig, "ssh_authorized_keys: [esp-key]\nkestrel:\n  timezone: UTC\n  sysctl: {a: esp}\n")
	write(loc.StateConfig, "kestrel:\n  data_sources: [nocloud, aws, scaleway]\n  allow_insecure_http: true\n  config_url: "+cfgSrv.URL+"/c.yaml\n")
	img := buildCIDATA(t, filesystem.TypeFat32, "CIDATA", map[string]string{
		"user-data": "hostname: from-nocloud\nkestrel: {sysctl: {b: nocloud}}\n",
		"meta-data": "instance-id: x\n",
	})
	ctx := context.Background()
	s := config.LoadLocal(loc)
	raws := Local(ctx, s, &NoCloud{Devices: func() ([]string, error) { return []string{img}, nil }})
	r, err := s.Merge()
	if err != nil {
		t.Fatal(err)
	}
	if r.Config.Hostname != "from-nocloud" {
		t.Fatalf("after local: %s", r.Config.Hostname)
	}
	raws = append(raws, Network(ctx, s, r.Config, Env{MetadataURL: srv.URL})...)
	r, err = s.Merge()
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config
	if c.Hostname != "from-ec2-user-data" || c.Kestrel.Timezone != "Asia/Tokyo" {
		t.Errorf("hostname %s timezone %s", c.Hostname, c.Kestrel.Timezone)
	}
	if want := map[string]string{"a": "esp", "b": "nocloud", "c": "ec2", "d": "url"}; !reflect.DeepEqual(c.Kestrel.Sysctl, want) {
		t.Errorf("sysctl %v", c.Kestrel.Sysctl)
	}
	// EC2 meta-data keys replace the ESP keys (lists replace).
	if len(c.SSHAuthorizedKeys) != 2 || c.SSHAuthorizedKeys[0] != "ssh-ed25519 AAAAec2a ops" {
		t.Errorf("keys %v", c.SSHAuthorizedKeys)
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error(), "datasource scaleway: not implemented") {
		t.Errorf("errors %v", r.Errors)
	}
	if p, _ := r.Origin("kestrel.sysctl.d"); p.File != cfgSrv.URL+"/c.yaml" {
		t.Errorf("origin of d: %v", p)
	}

	// The cache replays the datasource documents for `kestrel config show`.
	cache := filepath.Join(t.TempDir(), "run", "datasources.json")
	if err := SaveCache(cache, Cache{Documents: raws, Errors: []string{r.Errors[0].Error()}}); err != nil {
		t.Fatal(err)
	}
	back, err := LoadCache(cache)
	if err != nil || !reflect.DeepEqual(back.Documents, raws) || len(back.Errors) != 1 {
		t.Fatalf("cache: %v", err)
	}
	if c, err := LoadCache(filepath.Join(t.TempDir(), "none")); err != nil || len(c.Documents) != 0 {
		t.Fatalf("missing cache: %v", err)
	}
	s2 := config.LoadLocal(loc)
	Add(s2, back.Documents)
	r2, _ := s2.Merge()
	if !reflect.DeepEqual(r2.Config, r.Config) {
		t.Errorf("replayed config differs")
	}
}

func TestBadUserDataSkipped(t *testing.T) {
	for _, ud := range []string{"#!/bin/sh\necho hi\n", "\x1f\x8bxx", "Content-Type: multipart/mixed\n", "hostname: [\n", "hostname: ok\nrun_cmd: {a: b}\n"} {
		s := &config.Sources{}
		s.Add("esp", []byte("hostname: esp\nssh_authorized_keys: [k]\n"))
		Add(s, (&Data{Name: "ec2", UserData: []byte(ud)}).Raws())
		r, _ := s.Merge()
		if r.Config.Hostname != "esp" || len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0].Error(), "ec2/user-data:") {
			t.Errorf("%q: hostname %s errors %v", ud, r.Config.Hostname, r.Errors)
		}
	}
}

// TestNoCloudMkfsVfat reads a CIDATA image made the way an operator would
// on a PC: mkfs.vfat -n CIDATA and mcopy (skipped without dosfstools and
// mtools).
// TestNoCloudMkfsVfat reads disks made as cloud-localds -f vfat makes
// them: short and long (more than a sector and a cluster) files, on FAT12
// (a small mkfs.vfat image) and FAT32.
func TestNoCloudMkfsVfat(t *testing.T) {
	mkfs, err1 := exec.LookPath("mkfs.vfat")
	mcopy, err2 := exec.LookPath("mcopy")
	if err1 != nil || err2 != nil {
		t.Skip("mkfs.vfat or mcopy not installed")
	}
	long := userData + strings.Repeat("# padding line, longer than a sector and a cluster\n", 200)
	for _, tc := range []struct {
		size     int
		flags    []string
		userData string
	}{
		{4 << 20, nil, userData},
		{4 << 20, nil, long},
		{40 << 20, []string{"-F", "32"}, long},
	} {
		dir := t.TempDir()
		img := filepath.Join(dir, "cidata.img")
		os.WriteFile(img, make([]byte, tc.size), 0o644)
		ud, md := filepath.Join(dir, "user-data"), filepath.Join(dir, "meta-data")
		os.WriteFile(ud, []byte(tc.userData), 0o644)
		os.WriteFile(md, []byte(metaData), 0o644)
		for _, cmd := range [][]string{append(append([]string{mkfs, "-n", "CIDATA"}, tc.flags...), img), {mcopy, "-i", img, md, "::meta-data"}, {mcopy, "-i", img, ud, "::user-data"}} {
			if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", cmd, err, out)
			}
		}
		nc := &NoCloud{Devices: func() ([]string, error) { return []string{img}, nil }}
		if ok, err := nc.Probe(context.Background()); !ok || err != nil {
			t.Fatalf("probe %v %v", ok, err)
		}
		d, err := nc.Fetch(context.Background())
		if err != nil || string(d.UserData) != tc.userData {
			t.Errorf("mkfs.vfat %v: user-data of %d bytes read as %d bytes, %v", tc.flags, len(tc.userData), len(d.UserData), err)
		}
	}
}

// TestNoCloudBlockDevice reads CIDATA disks through a loop device, as the
// node reads /dev/vdb: go-diskfs takes a block device's sector sizes from
// the kernel, which must not hide an ISO.
func TestNoCloudBlockDevice(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for losetup")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	for _, fsType := range []filesystem.Type{filesystem.TypeISO9660, filesystem.TypeFat32} {
		img := buildCIDATA(t, fsType, "cidata", map[string]string{"user-data": userData})
		out, err := exec.Command("losetup", "-f", "--show", "-r", img).CombinedOutput()
		if err != nil {
			t.Skipf("losetup: %v: %s", err, out)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		nc := &NoCloud{Devices: func() ([]string, error) { return []string{dev}, nil }}
		if ok, err := nc.Probe(context.Background()); !ok || err != nil {
			t.Errorf("%v on %s: probe %v, %v", fsType, dev, ok, err)
			continue
		}
		d, err := nc.Fetch(context.Background())
		if err != nil || string(d.UserData) != userData {
			t.Errorf("%v on %s: user-data %q, %v", fsType, dev, d.UserData, err)
		}
	}
}

package modtree

import (
	"github.com/kestrel-os/kestrel/internal/build/deb"
	"github.com/kestrel-os/kestrel/internal/build/imagedef"

	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// fakeModule is one module of a synthetic tree.
type fakeModule struct {
	path    string // relative to the tree
	depends string // depends= value
	softdep string // softdep= value, "" for none
	aliases []string
}

// writeTree writes a module tree of minimal ELF files that carry only a
// .modinfo section, plus modules.builtin.
func writeTree(t *testing.T, mods []fakeModule, builtin []string) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range mods {
		info := []string{"license=GPL", "depends=" + m.depends, "name=" + Normalize(m.path)}
		if m.softdep != "" {
			info = append(info, "softdep="+m.softdep)
		}
		for _, a := range m.aliases {
			info = append(info, "alias="+a)
		}
		p := filepath.Join(dir, m.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, elfWithModinfo(strings.Join(info, "\x00")+"\x00"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	for _, n := range builtin {
		b.WriteString(n + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// elfWithModinfo returns an ELF64 little-endian relocatable file with
// three sections: null, .modinfo and .shstrtab.
func elfWithModinfo(modinfo string) []byte {
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	const ehsize, shentsize = 64, 64
	infoOff := ehsize
	strOff := infoOff + len(modinfo)
	shOff := (strOff + len(shstr) + 7) &^ 7
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	b.Write(make([]byte, 8))
	binary.Write(&b, le, uint16(1))     // ET_REL
	binary.Write(&b, le, uint16(62))    // EM_X86_64
	binary.Write(&b, le, uint32(1))     // version
	binary.Write(&b, le, uint64(0))     // entry
	binary.Write(&b, le, uint64(0))     // phoff
	binary.Write(&b, le, uint64(shOff)) // shoff
	binary.Write(&b, le, uint32(0))     // flags
	binary.Write(&b, le, uint16(ehsize))
	binary.Write(&b, le, uint16(0)) // phentsize
	binary.Write(&b, le, uint16(0)) // phnum
	binary.Write(&b, le, uint16(shentsize))
	binary.Write(&b, le, uint16(3)) // shnum
	binary.Write(&b, le, uint16(2)) // shstrndx
	b.WriteString(modinfo)
	b.WriteString(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	section := func(name, typ uint32, off, size int) {
		binary.Write(&b, le, name)
		binary.Write(&b, le, typ)
		binary.Write(&b, le, uint64(0)) // flags
		binary.Write(&b, le, uint64(0)) // addr
		binary.Write(&b, le, uint64(off))
		binary.Write(&b, le, uint64(size))
		binary.Write(&b, le, uint32(0)) // link
		binary.Write(&b, le, uint32(0)) // info
		binary.Write(&b, le, uint64(1)) // addralign
		binary.Write(&b, le, uint64(0)) // entsize
	}
	section(0, 0, 0, 0)
	section(1, 1, infoOff, len(modinfo)) // .modinfo, PROGBITS
	section(10, 3, strOff, len(shstr))   // .shstrtab, STRTAB
	return b.Bytes()
}

var synthetic = []fakeModule{
	{path: "kernel/fs/ext4/ext4.ko", depends: "jbd2,mbcache,crc16", softdep: "pre: crc32c_generic crypto-crc32c", aliases: []string{"fs-ext4"}},
	{path: "kernel/fs/jbd2/jbd2.ko"},
	{path: "kernel/fs/mbcache.ko"},
	{path: "kernel/lib/crc16.ko"},
	{path: "kernel/crypto/crc32c_generic.ko", aliases: []string{"crypto-crc32c", "crc32c"}},
	{path: "kernel/crypto/crc32c-intel.ko", aliases: []string{"crypto-crc32c", "crc32c"}},
	{path: "kernel/drivers/md/dm-mod.ko"},
	{path: "kernel/drivers/md/dm-bufio.ko", depends: "dm-mod"},
	{path: "kernel/drivers/md/dm-verity.ko", depends: "reed_solomon,dm-mod,dm-bufio"},
	{path: "kernel/lib/reed_solomon/reed_solomon.ko"},
	{path: "kernel/fs/nls/nls_iso8859-1.ko"},
	{path: "kernel/net/netfilter/nf_tables.ko", depends: "nfnetlink"},
	{path: "kernel/net/netfilter/nfnetlink.ko"},
	{path: "kernel/net/netfilter/nft_ct.ko", depends: "nf_tables,nf_conntrack"},
	{path: "kernel/net/netfilter/nft_nat.ko", depends: "nf_tables"},
	{path: "kernel/net/netfilter/nf_conntrack.ko", depends: "builtin_thing"},
	{path: "kernel/drivers/broken.ko", depends: "not_there"},
	{path: "kernel/drivers/loop_a.ko", depends: "loop_b"},
	{path: "kernel/drivers/loop_b.ko", depends: "loop_a"},
}

func TestResolve(t *testing.T) {
	tree, err := Scan(writeTree(t, synthetic, []string{"kernel/drivers/block/loop.ko", "kernel/lib/builtin_thing.ko"}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		required    []string
		optional    []string
		want        []string
		wantBuiltin []string
		wantMissing []string
		wantErr     string
	}{
		{
			name:     "dependencies first, softdep by exact name only",
			required: []string{"ext4"},
			want:     []string{"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"},
		},
		{
			name:     "dashes and underscores are one name",
			required: []string{"dm_verity", "dm-mod"},
			want:     []string{"reed_solomon", "dm_mod", "dm_bufio", "dm_verity"},
		},
		{
			name:     "glob, sorted, shared deps once, built-in dep skipped",
			required: []string{"nft_*"},
			want:     []string{"nfnetlink", "nf_tables", "nf_conntrack", "nft_ct", "nft_nat"},
		},
		{
			name:        "built-in is not an error",
			required:    []string{"loop", "crc16"},
			want:        []string{"crc16"},
			wantBuiltin: []string{"loop"},
		},
		{
			name:        "optional missing is recorded",
			required:    []string{"crc16"},
			optional:    []string{"no_such_nic"},
			want:        []string{"crc16"},
			wantMissing: []string{"no_such_nic"},
		},
		{name: "required missing", required: []string{"crc16", "no_such_mod"}, wantErr: "no_such_mod"},
		{name: "missing dependency", required: []string{"broken"}, wantErr: "broken needs not_there"},
		{name: "cycle", required: []string{"loop_a"}, wantErr: "cycle: loop_a -> loop_b -> loop_a"},
		{name: "bad glob", required: []string{"nft_["}, wantErr: "pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := tree.Resolve(tt.required, tt.optional)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sel.Names(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("order = %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(sel.Builtin, tt.wantBuiltin) {
				t.Errorf("builtin = %v, want %v", sel.Builtin, tt.wantBuiltin)
			}
			if !reflect.DeepEqual(sel.Missing, tt.wantMissing) {
				t.Errorf("missing = %v, want %v", sel.Missing, tt.wantMissing)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	tree, err := Scan(writeTree(t, synthetic, []string{"kernel/lib/builtin_thing.ko"}))
	if err != nil {
		t.Fatal(err)
	}
	sel, err := tree.Resolve([]string{"ext4", "dm-verity", "nls_iso8859-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if err := tree.Install(sel, dest); err != nil {
		t.Fatal(err)
	}
	for _, m := range sel.Modules {
		if _, err := os.Stat(filepath.Join(dest, m.InstallPath())); err != nil {
			t.Errorf("module file: %v", err)
		}
	}
	// A file name mixing '-' and '_' is installed under the canonical name,
	// the one a loader looking for "nls_iso8859_1.ko" finds.
	if _, err := os.Stat(filepath.Join(dest, "kernel/fs/nls/nls_iso8859_1.ko")); err != nil {
		t.Errorf("mixed-name module: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "kernel/drivers/broken.ko")); err == nil {
		t.Error("a module outside the selection was installed")
	}
	f, err := os.Open(filepath.Join(dest, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dep, err := ParseDepFile(f)
	if err != nil {
		t.Fatal(err)
	}
	wantDep := map[string][]string{
		"kernel/crypto/crc32c_generic.ko":         nil,
		"kernel/fs/jbd2/jbd2.ko":                  nil,
		"kernel/fs/mbcache.ko":                    nil,
		"kernel/lib/crc16.ko":                     nil,
		"kernel/fs/ext4/ext4.ko":                  {"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko", "kernel/fs/jbd2/jbd2.ko"},
		"kernel/lib/reed_solomon/reed_solomon.ko": nil,
		"kernel/drivers/md/dm_mod.ko":             nil,
		"kernel/drivers/md/dm_bufio.ko":           {"kernel/drivers/md/dm_mod.ko"},
		"kernel/drivers/md/dm_verity.ko":          {"kernel/drivers/md/dm_bufio.ko", "kernel/drivers/md/dm_mod.ko", "kernel/lib/reed_solomon/reed_solomon.ko"},
		"kernel/fs/nls/nls_iso8859_1.ko":          nil,
	}
	for k, v := range dep {
		if len(v) == 0 {
			dep[k] = nil
		}
	}
	if !reflect.DeepEqual(dep, wantDep) {
		t.Errorf("modules.dep = %v\nwant %v", dep, wantDep)
	}
	alias, err := os.ReadFile(filepath.Join(dest, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alias fs-ext4 ext4\n", "alias crc32c crc32c_generic\n"} {
		if !strings.Contains(string(alias), want) {
			t.Errorf("modules.alias lacks %q:\n%s", want, alias)
		}
	}
	if strings.Contains(string(alias), "crc32c_intel") {
		t.Error("modules.alias names a module outside the selection")
	}
	softdep, err := os.ReadFile(filepath.Join(dest, "modules.softdep"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(softdep), "softdep ext4 pre: crc32c_generic crypto_crc32c\n") {
		t.Errorf("modules.softdep:\n%s", softdep)
	}
	if got := string(ListFile(sel)); !strings.HasPrefix(got, "crc32c_generic\njbd2\n") || !strings.HasSuffix(got, "dm_verity\nnls_iso8859_1\n") {
		t.Errorf("module list:\n%s", got)
	}
}

// realTree returns the module tree of the pinned Debian kernel, fetched and
// unpacked through the builder's own cache (internal/build/deb: atomic, so a build
// running at the same time is no problem). Without apt it skips.
func realTree(t *testing.T) (root, release string) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not available: the pinned kernel package cannot be fetched")
	}
	img, err := imagedef.LoadImage("../../../images/amd64.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := imagedef.LoadVersions("../../../versions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	root, err = deb.FetchUnpack(deb.Package{Name: v.KernelPackage(img), Version: v.Debian.KernelVersion, Arch: img.DebianArch}, "../../../.cache/debs", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(root, "lib/modules/*"))
	if len(m) != 1 {
		t.Fatalf("%s: want one kernel release under lib/modules, found %v", root, m)
	}
	return root, filepath.Base(m[0])
}

// TestRealKernelMatchesDepmod checks the modules.dep computed from
// .modinfo against depmod's symbol-based one, for every module of the
// real Debian kernel.
func TestRealKernelMatchesDepmod(t *testing.T) {
	root, release := realTree(t)
	if _, err := exec.LookPath("depmod"); err != nil {
		t.Skip("depmod (kmod) not installed")
	}
	tree, err := Scan(filepath.Join(root, "lib/modules", release))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for n := range tree.Modules {
		all = append(all, n)
	}
	sort.Strings(all)
	sel, err := tree.Resolve(all, nil)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := ParseDepFile(bytes.NewReader(tree.DepFile(sel)))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("depmod", "-n", "-b", root, release).Output()
	if err != nil {
		t.Fatalf("depmod -n: %v", err)
	}
	// depmod -n prints every index; modules.dep is the first section.
	section := string(out)
	if i := strings.Index(section, "# Aliases"); i >= 0 {
		section = section[:i]
	}
	depmod, err := ParseDepFile(strings.NewReader(strings.Replace(section, "# modules.dep\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	// Our paths name files after the canonical module name.
	canon := func(p string) string { return path.Join(path.Dir(p), Normalize(p)+".ko") }
	theirs := map[string][]string{}
	for mod, deps := range depmod {
		for i := range deps {
			deps[i] = canon(deps[i])
		}
		theirs[canon(mod)] = deps
	}
	t.Logf("comparing %d modules with depmod", len(theirs))
	if len(theirs) < 1000 || len(ours) != len(theirs) {
		t.Errorf("%d modules in our modules.dep, %d in depmod's", len(ours), len(theirs))
	}
	diffs := 0
	for mod, deps := range theirs {
		a, b := append([]string(nil), deps...), append([]string(nil), ours[mod]...)
		sort.Strings(a)
		sort.Strings(b)
		if !reflect.DeepEqual(a, b) && diffs < 10 {
			diffs++
			t.Errorf("%s: depmod %v, ours %v", mod, a, b)
		}
	}
}

func TestRealKernelImageSets(t *testing.T) {
	root, release := realTree(t)
	tree, err := Scan(filepath.Join(root, "lib/modules", release))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mods []string
		want []string // must be in the closure
	}{
		{"virtio disk", []string{"virtio_blk", "virtio_pci"}, []string{"virtio", "virtio_ring", "virtio_pci", "virtio_blk"}},
		{"ext4", []string{"crc32c_generic", "ext4"}, []string{"jbd2", "mbcache", "crc16", "crc32c_generic", "ext4"}},
		{"dm-verity", []string{"dm-verity"}, []string{"dm_mod", "dm_bufio", "reed_solomon", "dm_verity"}},
		{"netfilter glob", []string{"nft_*"}, []string{"nf_tables", "nft_ct", "nf_conntrack"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := tree.Resolve(tt.mods, nil)
			if err != nil {
				t.Fatal(err)
			}
			pos := map[string]int{}
			for i, n := range sel.Names() {
				pos[n] = i
			}
			for _, w := range tt.want {
				if _, ok := pos[w]; !ok {
					t.Errorf("%s not in closure %v", w, sel.Names())
				}
			}
			// Every module comes after all of its dependencies.
			for _, m := range sel.Modules {
				for _, d := range m.Depends {
					if dp, ok := pos[d]; ok && dp > pos[m.Name] {
						t.Errorf("%s loads before its dependency %s", m.Name, d)
					}
				}
			}
		})
	}
}

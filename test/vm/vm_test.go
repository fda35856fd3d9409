package vm

import (
	"slices"
	"strings"
	"testing"
)

// TestAccel checks which qemu words each accelerator choice gives, and that
// a misspelt one is refused with its name.
func TestAccel(t *testing.T) {
	for _, tc := range []struct {
		arch   Arch
		accel  string
		cpu    string
		icount bool
		want   string // joined words that must appear
		absent string
		err    string
	}{
		{arch: AMD64, accel: "tcg", want: "-accel tcg", absent: "-cpu"},
		{arch: AMD64, accel: "kvm", want: "-accel kvm -cpu host"},
		{arch: ARM64, accel: "tcg", want: "-accel tcg", absent: "-cpu host"},
		{arch: ARM64, accel: "tcg", want: "-M virt -cpu cortex-a72"},
		{arch: ARM64, accel: "kvm", want: "-accel kvm -cpu host", absent: "cortex-a72"},
		{arch: AMD64, accel: "tcg", cpu: "max", want: "-accel tcg -cpu max"},
		{arch: ARM64, accel: "tcg", cpu: "max", want: "-accel tcg -cpu max", absent: "cortex-a72"},
		{arch: AMD64, accel: "kvm", cpu: "max", want: "-accel kvm -cpu host", absent: "-cpu max"},
		{arch: AMD64, accel: "hvf", err: `accelerator "hvf"`},
		{arch: AMD64, accel: "tcg", icount: true, want: "-accel tcg -icount shift=0"},
		{arch: ARM64, accel: "tcg", icount: true, want: "-icount shift=0 -M virt"},
		{arch: AMD64, accel: "kvm", icount: true, err: "needs TCG"},
	} {
		args, err := qemuArgs(Config{Arch: tc.arch, Accel: tc.accel, CPU: tc.cpu, ICount: tc.icount, Kernel: "vmlinuz", Initrd: "initrd", Memory: 256})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %s: error %v, want one containing %q", tc.arch, tc.accel, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.arch, tc.accel, err)
			continue
		}
		line := " " + strings.Join(args, " ") + " "
		if !strings.Contains(line, " "+tc.want+" ") {
			t.Errorf("%s %s: %q lacks %q", tc.arch, tc.accel, line, tc.want)
		}
		if tc.absent != "" && strings.Contains(line, tc.absent) {
			t.Errorf("%s %s: %q has %q", tc.arch, tc.accel, line, tc.absent)
		}
		if !slices.Contains(args, "-kernel") {
			t.Errorf("%s %s: no -kernel in %q", tc.arch, tc.accel, line)
		}
	}
}

// TestICountNotOnBoard checks that a Raspberry Pi machine refuses
// instruction counting rather than ignore it.
func TestICountNotOnBoard(t *testing.T) {
	_, err := qemuArgs(Config{Arch: ARM64, Board: Raspi3B, Accel: "tcg", Kernel: "vmlinuz", DTB: "pi.dtb", ICount: true, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "instruction counting") {
		t.Errorf("error %v, want one about instruction counting", err)
	}
}

package kexec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kestrel-os/kestrel/internal/bls"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
)

// load is one kexec_file_load call as FileLoad saw it.
type load struct{ kernel, initrd, cmdline string }

func TestLoad(t *testing.T) {
	opts := []string{"console=ttyS0,115200", "kestrel.verity.roothash=ab12"}
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, esp string)
		loadErr  error
		want     Loaded
		wantLoad *load
		entries  []string // afterwards, sorted
		err      string
	}{
		{
			name:     "good slot",
			setup:    func(t *testing.T, esp string) { writeSlot(t, esp, "a", opts) },
			want:     Loaded{Slot: "a", Cmdline: "console=ttyS0,115200 kestrel.verity.roothash=ab12 kestrel.slot=a"},
			wantLoad: &load{"a-kernel", "a-initrd", "console=ttyS0,115200 kestrel.verity.roothash=ab12 kestrel.slot=a"},
			entries:  []string{"kestrel-a.conf"},
		},
		{
			name:     "slot on trial: its try is counted",
			setup:    bOnTrial(opts),
			want:     Loaded{Slot: "b", Trial: true, TriesLeft: 2, Cmdline: "console=ttyS0,115200 kestrel.verity.roothash=ab12 kestrel.slot=b"},
			wantLoad: &load{"b-kernel", "b-initrd", "console=ttyS0,115200 kestrel.verity.roothash=ab12 kestrel.slot=b"},
			entries:  []string{"kestrel-a.conf", "kestrel-b+2-1.conf"},
		},
		{
			name:     "the kernel refuses: no try counted",
			setup:    bOnTrial(opts),
			loadErr:  errors.New("operation not permitted"),
			wantLoad: &load{"b-kernel", "b-initrd", "console=ttyS0,115200 kestrel.verity.roothash=ab12 kestrel.slot=b"},
			entries:  []string{"kestrel-a.conf", "kestrel-b+3.conf"},
			err:      "operation not permitted",
		},
		{
			name: "kernel missing",
			setup: func(t *testing.T, esp string) {
				writeSlot(t, esp, "a", opts)
				os.Remove(filepath.Join(esp, bls.KernelPath("a")))
			},
			entries: []string{"kestrel-a.conf"},
			err:     "no such file",
		},
		{
			name: "U-Boot chain",
			setup: func(t *testing.T, esp string) {
				writeSlot(t, esp, "a", opts)
				os.WriteFile(filepath.Join(esp, layout.ESPBootScript), []byte("script"), 0o644)
			},
			entries: []string{"kestrel-a.conf"},
			err:     "U-Boot",
		},
		{
			name:  "nothing to boot",
			setup: func(t *testing.T, esp string) { os.MkdirAll(filepath.Join(esp, layout.ESPEntriesDir), 0o755) },
			err:   "no slot to boot next",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			esp := t.TempDir()
			tc.setup(t, esp)
			var got *load
			l := Loader{ESP: esp, Booted: "a", FileLoad: func(kernel, initrd *os.File, cmdline string) error {
				k, _ := os.ReadFile(kernel.Name())
				i, _ := os.ReadFile(initrd.Name())
				got = &load{string(k), string(i), cmdline}
				return tc.loadErr
			}}
			loaded, err := l.Load()
			if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
			if loaded != tc.want {
				t.Errorf("loaded %+v, want %+v", loaded, tc.want)
			}
			if (got == nil) != (tc.wantLoad == nil) || (got != nil && *got != *tc.wantLoad) {
				t.Errorf("kexec_file_load %+v, want %+v", got, tc.wantLoad)
			}
			des, _ := os.ReadDir(filepath.Join(esp, layout.ESPEntriesDir))
			var entries []string
			for _, de := range des {
				entries = append(entries, de.Name())
			}
			slices.Sort(entries)
			if !slices.Equal(entries, tc.entries) {
				t.Errorf("entries %v, want %v", entries, tc.entries)
			}
		})
	}
}

// bOnTrial sets up a good slot a and slot b offered for trial with 3
// tries, as an upgrade leaves them.
func bOnTrial(opts []string) func(t *testing.T, esp string) {
	return func(t *testing.T, esp string) {
		writeSlot(t, esp, "a", opts)
		writeFiles(t, esp, "b")
		if err := (bootslot.BLS{ESP: esp, Booted: "a"}).Offer(bls.Entry{Slot: "b", Version: "2", Options: opts}, 3); err != nil {
			t.Fatal(err)
		}
	}
}

// writeSlot writes slot's kernel, initramfs and good entry, as an image
// build does.
func writeSlot(t *testing.T, esp, slot string, opts []string) {
	t.Helper()
	writeFiles(t, esp, slot)
	e := bls.Entry{Slot: slot, Version: "1", Options: opts}
	p := filepath.Join(esp, e.FileName())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, e.Render(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFiles(t *testing.T, esp, slot string) {
	t.Helper()
	for p, data := range map[string]string{bls.KernelPath(slot): slot + "-kernel", bls.InitrdPath(slot): slot + "-initrd"} {
		p = filepath.Join(esp, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

package bls

import (
	"strings"
	"testing"
)

func TestEntry(t *testing.T) {
	tests := []struct {
		entry    Entry
		file     string
		contains []string
	}{
		{
			entry: Entry{Slot: "a", Version: "0.1.0", Options: []string{"console=ttyS0,115200", "quiet"}},
			file:  "/loader/entries/kestrel-a.conf",
			contains: []string{
				"title Kestrel 0.1.0 (slot a)\n", "version 0.1.0\n", "sort-key kestrel-50000\n",
				"linux /kestrel/a/vmlinuz\n", "initrd /kestrel/a/initrd\n",
				"options console=ttyS0,115200 quiet kestrel.slot=a\n",
			},
		},
		{
			entry:    Entry{Slot: "b", Version: "0.2.0", Tries: 3},
			file:     "/loader/entries/kestrel-b+3.conf",
			contains: []string{"linux /kestrel/b/vmlinuz\n", "options kestrel.slot=b\n"},
		},
	}
	for _, tt := range tests {
		if got := tt.entry.FileName(); got != tt.file {
			t.Errorf("FileName = %q, want %q", got, tt.file)
		}
		got := string(tt.entry.Render())
		for _, c := range tt.contains {
			if !strings.Contains(got, c) {
				t.Errorf("entry lacks %q:\n%s", c, got)
			}
		}
	}
}

func TestLoaderConfHasNoDefault(t *testing.T) {
	conf := string(LoaderConf())
	if !strings.Contains(conf, "timeout 0\n") {
		t.Errorf("loader.conf without timeout 0:\n%s", conf)
	}
	for _, line := range strings.Split(conf, "\n") {
		if strings.HasPrefix(line, "default") {
			t.Errorf("loader.conf pins a default (breaks rollback): %q", line)
		}
	}
}

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kestrel-os/kestrel/internal/buildinfo"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/boothealth"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/init/control"
	"github.com/kestrel-os/kestrel/internal/node/init/status"
)

func init() {
	register(command{"status", "version, slot, address, boot times and services (--json)", statusCmd})
	register(command{"version", "print the Kestrel version", func([]string) int {
		fmt.Println(buildinfo.Version)
		return 0
	}})
}

func statusCmd(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var st status.Status
	if err := control.Call(layout.ControlSocket, control.Request{Op: "status"}, &st); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel status: %v\n", err)
		return 1
	}
	if h, err := boothealth.Read(layout.BootHealth); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel status: %v\n", err)
	} else {
		st.BootHealth = h
	}
	chain := bootslot.Open(layout.ESPMount, st.Slot)
	if slots, err := chain.Slots(); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel status: %v\n", err)
	} else {
		st.Slots = slots
	}
	if bad, err := badrelease.Load(badrelease.Path); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel status: %v\n", err)
	} else {
		st.BadReleases = bad
	}
	if *asJSON {
		e := json.NewEncoder(os.Stdout)
		e.SetIndent("", "  ")
		e.Encode(st)
		return 0
	}
	st.Render(os.Stdout, time.Now())
	return 0
}

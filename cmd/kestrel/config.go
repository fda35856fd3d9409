package main

import (
	"crypto/rand"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/access/sshkeys"
	"github.com/kestrel-os/kestrel/internal/node/net/ntp"
	"github.com/kestrel-os/kestrel/internal/node/provision/configcmd"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
	"github.com/kestrel-os/kestrel/internal/node/provision/phases"
)

func init() {
	register(command{"config", "validate, show (with sources), schema, keys", func(args []string) int {
		return configcmd.Run(args, os.Stdin, os.Stdout, os.Stderr)
	}})
}

// newPhases is the config phase runner of stage 2 (PID 1), with the
// node's paths, clock and system calls.
func newPhases() *phases.Runner {
	client := &http.Client{Timeout: 30 * time.Second}
	return phases.New(phases.Options{
		Root: "/", ESP: layout.ESPMount, Cmdline: "/proc/cmdline", Cache: datasource.DefaultCache,
		Random: rand.Reader, Net: datasource.Env{Client: client, FileRoot: "/"},
		Keys: &sshkeys.Resolver{Client: client, CachePath: sshkeys.DefaultCache}, Clock: ntp.SystemClock{},
		Mount: unix.Mount, Sethostname: unix.Sethostname,
	})
}

package main

import (
	"golang.org/x/sys/unix"

	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
	"github.com/kestrel-os/kestrel/internal/node/k3s/service"
	"github.com/kestrel-os/kestrel/internal/node/provision/phases"
)

// stage1Hooks wires the config's initramfs phase into stage 1.
func stage1Hooks() stage1.Hooks {
	return stage1.Hooks{Initramfs: phases.Initramfs}
}

// stage2Hooks wires the boot phases of other packages (config, k3s, sshd,
// ntp) into stage 2. It is the one place that knows all of them.
func stage2Hooks() stage2.Hooks {
	cfg := newPhases() // the config phases; cfg.Config() is the merged config
	sshdBoot, sshdNetworkUp := sshdHooks(func() supervisor.Spec { return sshdSpec(cfg) })
	return stage2.Hooks{
		Boot:    []stage2.Hook{{Name: "config", Run: cfg.Boot}, sshdBoot},
		Network: cfg.Network,
		ConsoleLogin: func() bool {
			c := cfg.Config()
			return c != nil && c.Kestrel.ConsoleShell != nil && !*c.Kestrel.ConsoleShell
		},
		NetworkUp: []stage2.Hook{
			{Name: "config (network-up)", Run: cfg.NetworkUp},
			sshdNetworkUp,
			k3sManifestsHook(cfg.Config),
			// k3s last: it reads the config the phases before it merged.
			service.Hook(service.Options{
				Root: "/", Mount: unix.Mount, Swapoff: service.Swapoff, Config: cfg.Config,
				// The upgrade issue adds marking the booted slot good here.
				OnBootGood: nil,
			}),
		},
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/badrelease"
	"github.com/kestrel-os/kestrel/internal/node/boot/bootslot"
	"github.com/kestrel-os/kestrel/internal/node/boot/trial"
	"github.com/kestrel-os/kestrel/internal/node/init/kexec"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	nodelabels "github.com/kestrel-os/kestrel/internal/node/k3s/nodelabels"

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
	slot := &trial.Trial{Root: "/", Now: time.Now}
	// A live boot (the ISO) has no slot on trial: nothing to mark good,
	// demote or roll back.
	live := false
	return stage2.Hooks{
		Boot: []stage2.Hook{{Name: "slots", Run: func(ctx context.Context, sys *stage2.System) error {
			// Trial's news comes after ready, while someone may be typing
			// on the console: it goes to the kernel log (dmesg), warnings
			// to the console and status as usual. Set on a live boot too
			// (slot "live"): labelNode reports through them.
			slot.Booted, slot.Logf, slot.Warn = sys.Slot, sys.Notef, sys.Warn
			if live = sys.Live; live {
				return nil
			}
			slot.Chain = bootslot.Open(layout.ESPMount, sys.Slot)
			slot.Reboot = func() { sys.Power(power.Reboot) }
			_, err := slot.Start(ctx)
			return err
		}}, {Name: "config", Run: cfg.Boot}, sshdBoot},
		Network: cfg.Network,
		ConsoleLogin: func() bool {
			c := cfg.Config()
			return c != nil && c.Kestrel.ConsoleShell != nil && !*c.Kestrel.ConsoleShell
		},
		Kexec: func(sys *stage2.System) bool {
			if c := cfg.Config(); c == nil || !c.Kestrel.KexecReboot || live {
				return false
			}
			l, err := kexec.Loader{ESP: layout.ESPMount, Booted: sys.Slot, FileLoad: kexec.FileLoad}.Load()
			if err != nil {
				sys.Logf("reboot: through the firmware: kexec: %v", err)
				return false
			}
			if l.Trial {
				sys.Logf("reboot: into slot %s, on trial, without the firmware (kexec; %d tries left after this one)", l.Slot, l.TriesLeft)
			} else {
				sys.Logf("reboot: into slot %s without the firmware (kexec)", l.Slot)
			}
			return true
		},
		Ready: []stage2.Hook{{Name: "verity check", Run: func(ctx context.Context, _ *stage2.System) error {
			if live {
				return nil
			}
			slot.CheckRoot(ctx)
			return nil
		}}},
		NetworkUp: []stage2.Hook{
			{Name: "config (network-up)", Run: cfg.NetworkUp},
			sshdNetworkUp,
			// The live ISO's unattended install (install.go).
			unattendedInstall(cfg.Config),
			k3sManifestsHook(cfg.Config),
			// k3s last: it reads the config the phases before it merged.
			service.Hook(service.Options{
				Root: "/", Mount: unix.Mount, Swapoff: service.Swapoff, Config: cfg.Config,
				OnBootGood: []func(context.Context) error{func(ctx context.Context) error {
					if live {
						return nil
					}
					return slot.Good(ctx)
				}, labelNode(slot)},
				OnBootNotGood: []func(string){func(why string) {
					if !live {
						slot.NotGood(why)
					}
				}},
			}),
		},
	}
}

// labelNode returns the good-boot listener that tells the cluster which
// release and slot this node runs, and what it rolled back from, through
// the node's own kubeconfig. It runs in the background: the Node may still
// be registering, and the boot's verdict must not wait for the API.
func labelNode(t *trial.Trial) func(context.Context) error {
	return func(context.Context) error {
		if _, err := os.Stat(nodelabels.KubeletKubeconfig); err != nil {
			t.Logf("node labels: no kubelet kubeconfig (%s); not labelling the Node", nodelabels.KubeletKubeconfig)
			return nil
		}
		host, _ := os.Hostname()
		osr, _ := readOSRelease(filepath.Join("/", layout.OSRelease))
		bad, _ := badrelease.Load(badrelease.Path)
		w := nodelabels.Want{Version: k3sconfig.VersionLabelValue(osr["VERSION_ID"]), Slot: t.Booted, RolledBackFrom: badrelease.Latest(bad)}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := nodelabels.Apply(ctx, nodelabels.KubeletKubeconfig, host, w, 5*time.Second); err != nil {
				t.Warn("%v", err)
				return
			}
			t.Logf("node labels: Node %s labelled %s=%s, %s=%s", host, nodelabels.LabelVersion, w.Version, nodelabels.LabelSlot, w.Slot)
		}()
		return nil
	}
}

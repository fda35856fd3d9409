package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/init/power"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/install"
	"github.com/kestrel-os/kestrel/internal/release"
)

func init() {
	register(command{"install", "install Kestrel from the live ISO onto a disk (asks, without --device)", runInstall})
}

// runInstall is `kestrel install` on the live system.
func runInstall(args []string) int {
	fs := flag.NewFlagSet("kestrel install", flag.ContinueOnError)
	device := fs.String("device", "", "disk to install to (without it, the installer asks for everything)")
	cfgSrc := fs.String("config", "", "config file or http(s) URL to install")
	force := fs.Bool("force", false, "overwrite a disk that has partitions")
	silent := fs.Bool("silent", false, "with --device: do not ask for confirmation")
	powerOff := fs.Bool("power-off", false, "power off when done instead of rebooting")
	noReboot := fs.Bool("no-reboot", false, "neither reboot nor power off when done")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o, err := installOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel install: %v\n", err)
		return 1
	}
	o.Force = *force
	if *device == "" {
		disks, err := install.Disks(o.Sys, o.Dev, o.MountInfo, false)
		if err == nil && len(disks) == 0 {
			err = errors.New("no disk to install to")
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel install: %v\n", err)
			return 1
		}
		ok, err := install.Ask(os.Stdin, os.Stdout, &o, disks)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel install: %v\n", err)
			return 1
		}
		if !ok {
			fmt.Println("nothing written")
			return 1
		}
	} else {
		o.Device = *device
		if *cfgSrc != "" {
			if o.Config, err = install.ReadConfig(*cfgSrc); err != nil {
				fmt.Fprintf(os.Stderr, "kestrel install: config: %v\n", err)
				return 1
			}
			o.ConfigName = *cfgSrc
		}
		if !*silent {
			fmt.Printf("Install Kestrel to %s, erasing it? [y/N]: ", o.Device)
			var a string
			fmt.Scanln(&a)
			if a != "y" && a != "yes" {
				fmt.Println("nothing written")
				return 1
			}
		}
	}
	if err := install.Run(context.Background(), o); err != nil {
		fmt.Fprintf(os.Stderr, "kestrel install: %v\n", err)
		return 1
	}
	switch {
	case *noReboot:
		return 0
	case *powerOff:
		return powerCmd("poweroff", syscall.SIGUSR2)(nil)
	default:
		return powerCmd("reboot", syscall.SIGTERM)(nil)
	}
}

// installOptions are the live system's paths, keys and mount calls.
func installOptions() (install.Options, error) {
	keys, err := release.LoadKeys(layout.ReleaseKeysDir)
	if err != nil {
		return install.Options{}, err
	}
	tmp, err := os.MkdirTemp("/run", "kestrel-install-")
	if err != nil {
		return install.Options{}, err
	}
	return install.Options{
		ISO: layout.ISOMount, Keys: keys, Sys: "/sys", Dev: "/dev", MountInfo: "/proc/self/mounts",
		Mount: unix.Mount, Unmount: unix.Unmount, TmpDir: tmp,
		Out: os.Stdout, Terminal: progressTerminal(),
	}, nil
}

// progressTerminal says whether stdout is a terminal that takes a
// rewritten progress line: a tty that is not a serial line (ttyS*,
// ttyAMA*, or /dev/console, which is serial on every Kestrel target);
// over serial, a log or a pipe, plain lines.
func progressTerminal() bool {
	if _, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS); err != nil {
		return false
	}
	name, _ := os.Readlink("/proc/self/fd/1")
	for _, serial := range []string{"/dev/ttyS", "/dev/ttyAMA", "/dev/console"} {
		if strings.HasPrefix(name, serial) {
			return false
		}
	}
	return true
}

// unattendedInstall is the live system's network-up hook: with
// install.device set (install: in the config, kestrel.install.device or
// k3os.install.device on the command line) it installs in the
// background, printing plain lines on the console, then powers off
// (install.power_off) or reboots. The config installed is
// install.config_url's or, without one, the live system's own merged
// config less its install section.
func unattendedInstall(cfg func() *config.Config) stage2.Hook {
	return stage2.Hook{Name: "install", Run: func(ctx context.Context, sys *stage2.System) error {
		c := cfg()
		if c == nil || c.Kestrel.Install.Device == "" || !sys.Live {
			return nil
		}
		in := c.Kestrel.Install
		go func() {
			logf := func(f string, args ...any) { fmt.Fprintf(os.Stdout, "kestrel install: "+f+"\n", args...) }
			err := func() error {
				if in.NoFormat {
					return install.ErrNoFormat
				}
				o, err := installOptions()
				if err != nil {
					return err
				}
				o.Device, o.Force, o.Terminal = in.Device, true, false
				if in.ConfigURL != "" {
					if o.Config, err = install.ReadConfig(in.ConfigURL); err != nil {
						return fmt.Errorf("install.config_url: %w", err)
					}
					o.ConfigName = in.ConfigURL
				} else {
					own := *c
					own.Kestrel.Install = config.Install{}
					if o.Config, err = yaml.Marshal(&own); err != nil {
						return err
					}
					o.ConfigName = "the live system's config"
				}
				return install.Run(ctx, o)
			}()
			if err != nil {
				logf("failed: %v (nothing booted from it; the live system stays up)", err)
				return
			}
			a := power.Reboot
			if in.PowerOff {
				a = power.Poweroff
			}
			logf("done: %s", a)
			sys.Power(a)
		}()
		return nil
	}}
}

package phases

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/boot/stage1"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
	"github.com/kestrel-os/kestrel/internal/node/provision/lastgood"
	"github.com/kestrel-os/kestrel/internal/node/provision/modprobe"
	"github.com/kestrel-os/kestrel/internal/node/provision/runcmd"
	"github.com/kestrel-os/kestrel/internal/sysctl"
)

// Initramfs is the initramfs phase, a stage 1 hook: it reads the local
// sources (image defaults, command line, ESP, state partition, NoCloud
// disk) from the assembled new root, then loads kestrel.modules from the
// new root's module tree, writes kestrel.sysctl and runs init_cmd
// chrooted into the new root (so paths mean what they mean later:
// /var, /etc, /state). Problems are logged, file:line:col first, with
// files named as stage 2 names them (/state/..., /boot/efi/...); it
// returns an error only when nothing could be read at all.
func Initramfs(h stage1.HookEnv) error {
	cfg, errs := loadInitramfs(h)
	// Name files as they are named once the system is up.
	names := strings.NewReplacer(h.NewRoot+"/", "/", h.ESP+"/", layout.ESPMount+"/")
	if h.ESP == "" {
		names = strings.NewReplacer(h.NewRoot+"/", "/")
	}
	for _, e := range errs {
		for _, line := range ErrorLines(e) {
			h.Logf("warning: config: %s", names.Replace(line))
		}
	}
	if cfg == nil {
		return fmt.Errorf("config: nothing merged")
	}
	warn := func(format string, args ...any) { h.Logf("warning: "+format, args...) }
	ApplyInitramfs(context.Background(), cfg, InitramfsTarget{
		Root: h.NewRoot, ProcSys: filepath.Join(h.NewRoot, "proc/sys"), Chroot: h.NewRoot,
		DevNull: filepath.Join(h.NewRoot, "dev/null"), Logf: h.Logf,
	}, warn)
	return nil
}

func loadInitramfs(h stage1.HookEnv) (*config.Config, []error) {
	loc := config.DefaultLocations(h.NewRoot, h.ESP, filepath.Join(h.NewRoot, "proc/cmdline"))
	if h.ESP == "" {
		loc.ESPConfig = ""
	}
	loaded := lastgood.Store{Dir: filepath.Join(h.NewRoot, layout.StateMount, lastgood.Dir)}.Load(loc)
	src := loaded.Sources
	datasource.Local(context.Background(), src, &datasource.NoCloud{
		Devices: datasource.NoCloudCandidates(filepath.Join(h.NewRoot, "sys/class/block"), filepath.Join(h.NewRoot, "dev")),
	})
	res, err := src.Merge()
	if err != nil {
		return nil, append(src.Errors(), err)
	}
	errs := res.Errors
	for _, f := range loaded.Replaced {
		errs = append(errs, fmt.Errorf("%s is invalid: its last good version is used instead", f))
	}
	return res.Config, errs
}

// InitramfsTarget says where the initramfs keys go.
type InitramfsTarget struct {
	Root    string // holds lib/modules (the new root)
	ProcSys string // /proc/sys
	Chroot  string // init_cmd runs chrooted here ("": no chroot)
	DevNull string // init_cmd's stdin ("": the default /dev/null)
	Logf    func(format string, args ...any)
}

// ApplyInitramfs applies kestrel.modules, kestrel.sysctl and init_cmd, in
// that order (a sysctl may need a module), each reported on its own.
func ApplyInitramfs(ctx context.Context, c *config.Config, t InitramfsTarget, warn func(string, ...any)) {
	if len(c.Kestrel.Modules) > 0 {
		step("kestrel.modules", warn, func() error { return modprobe.Load(modprobe.Options{Root: t.Root}, c.Kestrel.Modules) })
	}
	if len(c.Kestrel.Sysctl) > 0 {
		step("kestrel.sysctl", warn, func() error { return sysctl.Apply(t.ProcSys, c.Kestrel.Sysctl) })
	}
	if len(c.InitCmd) > 0 {
		step("init_cmd", warn, func() error {
			r := runcmd.Runner{Chroot: t.Chroot, Env: Environ(c), Log: logWriter(t.Logf), Timeout: CommandTimeout(c)}
			if t.DevNull != "" {
				null, err := os.Open(t.DevNull)
				if err != nil {
					return fmt.Errorf("stdin: %w", err)
				}
				defer null.Close()
				r.Stdin = null
			}
			return r.Run(ctx, "init_cmd", c.InitCmd)
		})
	}
}

package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/access/sshd"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
	"github.com/kestrel-os/kestrel/internal/node/init/supervisor"
	"github.com/kestrel-os/kestrel/internal/node/provision/phases"
)

func init() {
	register(command{"sshd", "the SSH server (run by PID 1 under the supervisor)", sshdCmd})
	register(command{"sftp-server", "SFTP on stdin/stdout (the SSH server's sftp subsystem)", func([]string) int {
		if err := sshd.ServeSFTP(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "kestrel sftp-server: %v\n", err)
			return 1
		}
		return 0
	}})
}

// sshHostKeys is where the host keys live: on the state partition, so the
// node keeps its identity across upgrades and reboots.
var sshHostKeys = filepath.Join(layout.StateMount, "ssh")

func sshdCmd(args []string) int {
	fs := flag.NewFlagSet("sshd", flag.ContinueOnError)
	listen := fs.String("listen", ":22", "address to listen on")
	root := fs.String("root", "/", "root holding etc/passwd, etc/shadow and the homes")
	keys := fs.String("host-keys", sshHostKeys, "host key directory (created 0700, keys 0600)")
	pw := fs.Bool("password-auth", false, "accept password logins (only when a password is configured)")
	rootLogin := fs.Bool("permit-root-login", false, "let uid-0 accounts log in (root is refused by default)")
	envFile := fs.String("environment", phases.EnvironmentPath, "sessions get this file's variables")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(os.Stderr, "sshd: ", log.LstdFlags)
	var env []string
	if b, err := os.ReadFile(filepath.Join(*root, *envFile)); err == nil {
		env = phases.ParseEnvironment(b)
	}
	srv, err := sshd.New(sshd.Config{
		Root: *root, HostKeyDir: *keys, PasswordAuth: *pw, PermitRootLogin: *rootLogin, Env: env, Logf: logger.Printf,
		SFTPServer: []string{layout.KestrelBin, "sftp-server"},
	})
	if err != nil {
		logger.Print(err)
		return 1
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Print(err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	logger.Printf("listening on %s (password login %v)", l.Addr(), *pw)
	if err := srv.Serve(l); err != nil && ctx.Err() == nil {
		logger.Print(err)
		return 1
	}
	return 0
}

// sshdHooks start the SSH server under the supervisor once the boot phase
// has written the accounts (keys only, unless a password is configured),
// and restart it after the network-up phase if that changed what it runs
// with: a datasource may turn password login on or change the session
// environment. Keys need no restart: sshd reads authorized_keys at each
// login.
// spec says how sshd runs for the config merged so far (sshdSpec).
func sshdHooks(spec func() supervisor.Spec) (boot, networkUp stage2.Hook) {
	var started supervisor.Spec
	boot = stage2.Hook{Name: "sshd", Run: func(ctx context.Context, sys *stage2.System) error {
		started = spec()
		return sys.Supervisor.Start(started)
	}}
	networkUp = stage2.Hook{Name: "sshd (network-up config)", Run: func(ctx context.Context, sys *stage2.System) error {
		spec := spec()
		if started.Name == "" || reflect.DeepEqual(spec, started) {
			return nil
		}
		started = spec
		return sys.Supervisor.Replace(spec)
	}}
	return boot, networkUp
}

// sshdSpec is how the SSH server runs for the merged config: from PID 1's
// own binary (layout.SelfExe, argv[0] still layout.KestrelBin), the same
// build, which stage 1 left in memory, so that sshd does not first page
// the root's copy in through dm-verity and squashfs.
func sshdSpec(cfg *phases.Runner) supervisor.Spec {
	args := []string{"sshd", "--host-keys", sshHostKeys}
	if phases.PasswordAuth(cfg.Config()) {
		args = append(args, "--password-auth")
	}
	return supervisor.Spec{Name: "sshd", Path: layout.KestrelBin, Exe: layout.SelfExe, Args: args, Env: cfg.Environ()}
}

package main

import (
	"errors"
	"flag"
	"log"

	"github.com/kestrel-os/kestrel/internal/build/pipeline"
	"github.com/kestrel-os/kestrel/internal/release"
)

// runKeygen is `kestrel-build keygen`.
func runKeygen(args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ExitOnError)
	out := fs.String("out", "", "directory receiving "+release.PrivateKeyFile+" (mode 0600) and "+release.PublicKeyFile+"; an existing key is never overwritten")
	fs.Parse(args)
	if *out == "" {
		return errors.New("keygen: -out DIR is required")
	}
	priv, pub, err := release.GenerateKeys(*out)
	if err != nil {
		return err
	}
	log.Printf("wrote %s and %s", priv, pub)
	return nil
}

// runBundle is `kestrel-build bundle`.
func runBundle(args []string) error {
	fs := flag.NewFlagSet("bundle", flag.ExitOnError)
	rel := releaseFlags(fs)
	out := fs.String("out", "out", "output directory holding the image build; receives kestrel-<version>-<target>.bundle")
	target := fs.String("target", "amd64", "target (image definition name) of the build to bundle")
	key := fs.String("key", "", "private key file signing the bundle (kestrel-build keygen)")
	fs.Parse(args)
	if *key == "" {
		return errors.New("bundle: -key FILE is required")
	}
	v, _, err := rel()
	if err != nil {
		return err
	}
	path, err := pipeline.Bundle(pipeline.BundleOptions{OutDir: *out, Version: v, Target: *target, Key: *key})
	if err != nil {
		return err
	}
	log.Printf("wrote %s (verified)", path)
	return nil
}

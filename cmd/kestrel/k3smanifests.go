package main

import (
	"context"

	"github.com/kestrel-os/kestrel/pkg/config"
	"github.com/kestrel-os/kestrel/pkg/k3smanifests"
	"github.com/kestrel-os/kestrel/pkg/stage2"
)

// k3sManifestsHook puts the upgrade controller's manifests into k3s's
// auto-deploy directory on servers, or takes them out when
// kestrel.k3s.upgrade_controller is false (pkg/k3smanifests). cfg is the
// phase runner's merged config.
func k3sManifestsHook(cfg func() *config.Config) stage2.Hook {
	return stage2.Hook{Name: "upgrade controller manifests", Run: func(context.Context, *stage2.System) error {
		return k3smanifests.Apply("/", cfg)
	}}
}

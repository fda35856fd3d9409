package main

import (
	"context"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/k3s/manifests"
	"github.com/kestrel-os/kestrel/internal/node/init/stage2"
)

// k3sManifestsHook puts the upgrade controller's manifests into k3s's
// auto-deploy directory on servers, or takes them out when
// kestrel.k3s.upgrade_controller is false (internal/k3s/manifests). cfg is the
// phase runner's merged config.
func k3sManifestsHook(cfg func() *config.Config) stage2.Hook {
	return stage2.Hook{Name: "upgrade controller manifests", Run: func(context.Context, *stage2.System) error {
		return manifests.Apply("/", cfg)
	}}
}

package upgradeimage_test

import (
	"context"
	"log"
	"time"

	"github.com/kestrel-os/kestrel/internal/build/upgradeimage"
)

// The builder's upgrade-image step, once every arch's kernel, initramfs
// and rootfs partition image are built and its release manifest signed:
// one index over all arches, written as an OCI archive and, when a
// registry is given, pushed.
func Example() {
	idx, manifests, err := upgradeimage.Build(upgradeimage.Release{
		Version: "v1.4.0",
		Created: time.Unix(1764000000, 0), // SOURCE_DATE_EPOCH
		Arches: []upgradeimage.Artifacts{{
			Arch:    "amd64",
			Kernel:  "out/kestrel-v1.4.0-x86_64.vmlinuz",
			Initrd:  "out/kestrel-v1.4.0-x86_64.initrd",
			Rootfs:  "out/kestrel-v1.4.0-x86_64.rootfs",
			Release: "out/kestrel-v1.4.0-x86_64.release.json",
			Kestrel: "out/amd64/kestrel",
		}, {
			Arch:    "arm64",
			Kernel:  "out/kestrel-v1.4.0-arm64.vmlinuz",
			Initrd:  "out/kestrel-v1.4.0-arm64.initrd",
			Rootfs:  "out/kestrel-v1.4.0-arm64.rootfs",
			Release: "out/kestrel-v1.4.0-arm64.release.json",
			Kestrel: "out/arm64/kestrel",
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range manifests {
		log.Printf("%s: %d files", m.Arch, len(m.Files))
	}
	if err := upgradeimage.WriteArchive("out/kestrel-upgrade-v1.4.0.oci.tar", "v1.4.0", idx); err != nil {
		log.Fatal(err)
	}
	digest, err := upgradeimage.Push(context.Background(), "registry.example.net/kestrel/"+upgradeimage.Repository+":"+upgradeimage.Tag("v1.4.0"), idx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("pushed %s", digest)
}

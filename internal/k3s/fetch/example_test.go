package fetch_test

import (
	"context"
	"log"
	"os"

	k3sfetch "github.com/kestrel-os/kestrel/internal/k3s/fetch"
	"github.com/kestrel-os/kestrel/internal/progress"
)

// The builder's k3s step, after the rootfs tree is assembled and before it
// is squashed: read the pin, get a verified binary (K3S_BINARY, cache or
// download), install it with its links and the airgap images.
func Example() {
	pin, err := k3sfetch.LoadPin("versions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	res, err := k3sfetch.Fetch(context.Background(), k3sfetch.Options{
		Pin:      pin,
		Arch:     "arm64", // the image definition's GOARCH
		CacheDir: ".cache/k3s",
		Log:      progress.New(os.Stderr), // what was chosen, download progress
	})
	if err != nil {
		log.Fatal(err) // names the URL and K3S_BINARY when offline
	}
	if err := k3sfetch.Install(res, "/path/to/rootfs-tree"); err != nil {
		log.Fatal(err)
	}
}

// Package buildinfo carries the release version stamped in at link time:
//
//	go build -ldflags "-X github.com/kestrel-os/kestrel/internal/buildinfo.Version=1.2.3"
//
// It is the only package-level variable the on-device binary has, and it is
// never written at run time.
package buildinfo

// Version is the Kestrel release version; "dev" when not stamped.
var Version = "dev"

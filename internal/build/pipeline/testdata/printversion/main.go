// Command printversion prints the version goBuild stamps in (TestGoBuildStampsVersion).
package main

import (
	"fmt"

	"github.com/kestrel-os/kestrel/internal/buildinfo"
)

func main() { fmt.Println(buildinfo.Version) }

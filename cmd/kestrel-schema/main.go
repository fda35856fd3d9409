// Command kestrel-schema writes the JSON Schema of config.yaml, generated
// from the Go types in internal/config (run by `go generate ./internal/config`).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kestrel-os/kestrel/internal/config"
)

func main() {
	out := flag.String("o", "", "output file (default: standard output)")
	flag.Parse()
	b, err := config.JSONSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kestrel-schema:", err)
		os.Exit(1)
	}
	if *out == "" {
		os.Stdout.Write(b)
		return
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "kestrel-schema:", err)
		os.Exit(1)
	}
}

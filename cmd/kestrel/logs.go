package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/init/rotlog"
)

func init() {
	register(command{"logs", "a service's log, rotated files included, oldest first (kestrel logs k3s)", logsCmd})
}

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func logsCmd(args []string) int {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	n := fs.Int("n", 0, "only the last `N` lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || !serviceNameRE.MatchString(fs.Arg(0)) {
		fmt.Fprintln(os.Stderr, "usage: kestrel logs [-n N] <service>")
		return 2
	}
	name := fs.Arg(0)
	files, err := rotlog.Files(filepath.Join(layout.LogDir, name+".log"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kestrel logs: %v\n", err)
		return 1
	}
	if len(files) == 0 {
		fmt.Fprintf(os.Stderr, "kestrel logs: no log for %s in %s (see kestrel status for the services)\n", name, layout.LogDir)
		return 1
	}
	var readers []io.Reader
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kestrel logs: %v\n", err)
			return 1
		}
		defer fh.Close()
		readers = append(readers, fh)
	}
	all := io.MultiReader(readers...)
	if *n <= 0 {
		io.Copy(os.Stdout, all)
		return 0
	}
	var ring []string
	sc := bufio.NewScanner(all)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > *n {
			ring = ring[1:]
		}
	}
	for _, l := range ring {
		fmt.Println(l)
	}
	return 0
}

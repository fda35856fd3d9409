// Package configcmd is `kestrel config`: validate files, show the merged
// config with the source of every value, print the JSON Schema and the
// key table. cmd/kestrel calls Run with the arguments after "config".
//
// Limits: `show` replays local files and the datasource documents stage 2
// cached (datasource.DefaultCache); it never fetches from the network
// itself, so it shows what this boot used, not what a fetch now would give.
// `show FILE...` merges just the files given (in order, "-" for standard
// input), to preview a config before it goes onto a node.
package configcmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/kestrel-os/kestrel/internal/config"
	"github.com/kestrel-os/kestrel/internal/layout"
	"github.com/kestrel-os/kestrel/internal/node/provision/datasource"
	"github.com/kestrel-os/kestrel/internal/node/provision/lastgood"
)

const usage = `usage: kestrel config COMMAND [flags]

commands:
  validate FILE...          check config files; exit 1 on any problem
  validate --cmdline LINE   check the config keys of a kernel command line
  show [flags]              the merged config, each value with its source
  show [flags] FILE...      the merged result of just these files ("-": stdin)
  schema                    the JSON Schema of config.yaml
  keys                      every key with its boot phase
`

// Run runs `kestrel config ARGS`; it returns the exit code: 0 fine, 1 a
// config problem, 2 a usage error. stdin is read by `show -`.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "show":
		return show(args[1:], stdin, stdout, stderr)
	case "schema":
		b, err := config.JSONSchema()
		if err != nil {
			fmt.Fprintln(stderr, "kestrel config schema:", err)
			return 1
		}
		stdout.Write(b)
		return 0
	case "keys":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tPHASE\tMEANING")
		for _, k := range config.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Path, config.PhaseOf(k.Path), k.Doc)
		}
		tw.Flush()
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "kestrel config: unknown command %q\n%s", args[0], usage)
	return 2
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kestrel config validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmdline := fs.String("cmdline", "", "validate this kernel command line instead of files")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cmdline == "" && fs.NArg() == 0 {
		fmt.Fprint(stderr, "kestrel config validate: give FILE... or --cmdline LINE\n")
		return 2
	}
	code := 0
	report := func(name string, err error) {
		if err == nil {
			fmt.Fprintf(stdout, "%s: ok\n", name)
			return
		}
		code = 1
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e)
			}
			return
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
	}
	if *cmdline != "" {
		_, err := config.ParseCmdline("cmdline", *cmdline)
		report("cmdline", err)
	}
	for _, f := range fs.Args() {
		data, err := os.ReadFile(f)
		if err != nil {
			report(f, err)
			continue
		}
		_, err = config.Parse(f, data)
		report(f, err)
	}
	return code
}

// Options says where `show` finds the sources.
type Options struct {
	Root    string // root filesystem ("/")
	ESP     string // ESP mount point (layout.ESPMount)
	Cmdline string // kernel command line file (/proc/cmdline)
	Cache   string // datasource cache (datasource.DefaultCache)
}

// Load merges the sources as stage 2 did: local files (a broken editable
// file replaced by its last good version, package lastgood), then the
// cached datasource documents. `kestrel status` can use its Errors.
func Load(o Options) (*config.Result, error) {
	s := lastgood.Store{Dir: filepath.Join(o.Root, layout.StateMount, lastgood.Dir)}.Load(config.DefaultLocations(o.Root, o.ESP, o.Cmdline)).Sources
	var cached []string
	if o.Cache != "" {
		c, err := datasource.LoadCache(o.Cache)
		if err != nil {
			s.AddError(err)
		}
		datasource.Add(s, c.Documents)
		cached = c.Errors
	}
	r, err := s.Merge()
	if err != nil {
		return nil, err
	}
	for _, e := range cached {
		r.Errors = append(r.Errors, errors.New(e))
	}
	return r, nil
}

func show(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kestrel config show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Root, "root", "/", "root filesystem")
	fs.StringVar(&o.ESP, "esp", layout.ESPMount, "ESP mount point")
	fs.StringVar(&o.Cmdline, "cmdline", "/proc/cmdline", "kernel command line file")
	fs.StringVar(&o.Cache, "cache", datasource.DefaultCache, "datasource cache written at boot")
	secrets := fs.Bool("secrets", false, "show passwords, tokens, environment values, k3s argument values and URL credentials")
	values := fs.Bool("values", false, "one line per value: key = value  source")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var r *config.Result
	var err error
	code := 0
	if fs.NArg() > 0 {
		r, err = loadFiles(fs.Args(), stdin)
	} else {
		r, err = Load(o)
	}
	if err != nil {
		fmt.Fprintln(stderr, "kestrel config show:", err)
		return 1
	}
	for _, e := range r.Errors {
		what := "left out"
		var es config.Errors
		if !errors.As(e, &es) || !es.OnlyUnknownKeys() {
			what = "skipped"
			if fs.NArg() > 0 { // a preview of files: a refused one fails
				code = 1
			}
		}
		for _, line := range strings.Split(e.Error(), "\n") {
			fmt.Fprintf(stderr, "%s: %s\n", what, line)
		}
	}
	if *values {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		for _, v := range r.Values() {
			val := v.Value
			if !*secrets {
				val = config.Redact(v.Path, v.Value)
			}
			fmt.Fprintf(tw, "%s\t= %q\t%s\n", v.Path, val, v.From)
		}
		tw.Flush()
		return code
	}
	if err := r.Show(stdout, *secrets); err != nil {
		fmt.Fprintln(stderr, "kestrel config show:", err)
		return 1
	}
	return code
}

// loadFiles merges the files given to `show FILE...` in order, "-" being
// standard input (read once, at most config.MaxSourceSize bytes). A
// missing file is an error here: it was named on purpose.
func loadFiles(names []string, stdin io.Reader) (*config.Result, error) {
	s := &config.Sources{}
	for _, n := range names {
		if n == "-" {
			data, err := io.ReadAll(io.LimitReader(stdin, config.MaxSourceSize+1))
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			s.Add("<stdin>", data)
			continue
		}
		data, err := config.ReadSource(n)
		if errors.Is(err, fs.ErrNotExist) {
			err = &config.Error{Pos: config.Pos{File: n}, Problem: "no such file"}
		}
		if err != nil {
			s.AddError(err)
			continue
		}
		s.Add(n, data)
	}
	return s.Merge()
}

package install

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kestrel-os/kestrel/internal/node/boot/blockdev"
	"github.com/kestrel-os/kestrel/internal/shacrypt"
)

// Ask is the interactive installer's dialogue: it lists the disks, asks
// for the one to install to (and, when it has partitions, whether to
// overwrite them), a config file or URL or else the answers to build one
// from (GitHub users whose SSH keys to install, a password, server or
// agent with its server URL and token), shows the config and asks for
// confirmation. It fills o.Device, o.Force, o.Config and o.ConfigName;
// ok is false when the operator declined.
//
// Answers are read one line at a time, so a script (the boot test, a
// serial console) can type them. Limits: the password is echoed (a
// serial console has no echo control here); a URL is fetched with
// net/http (https, or http when the operator typed it).
func Ask(in io.Reader, out io.Writer, o *Options, disks []Disk) (ok bool, err error) {
	r := bufio.NewReader(in)
	ask := func(q string) (string, error) {
		fmt.Fprint(out, q)
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("installer input: %w", err)
		}
		return strings.TrimSpace(line), nil
	}
	yes := func(q string) (bool, error) {
		a, err := ask(q + " [y/N]: ")
		return strings.EqualFold(a, "y") || strings.EqualFold(a, "yes"), err
	}

	fmt.Fprintln(out, "Disks:")
	for i, k := range disks {
		parts := "no partitions"
		if len(k.Partitions) > 0 {
			var names []string
			for _, p := range k.Partitions {
				names = append(names, p.Name)
			}
			parts = "partitions: " + strings.Join(names, " ")
		}
		model := k.Model
		if model == "" {
			model = "-"
		}
		use := ""
		if k.InUse != "" {
			use = "  (in use: " + k.InUse + ")"
		}
		fmt.Fprintf(out, "  %d) %-12s %9s  %-20s %s%s\n", i+1, k.Path, blockdev.HumanSize(k.Size), model, parts, use)
	}
	for {
		a, err := ask(fmt.Sprintf("Install to which disk? [1-%d]: ", len(disks)))
		if err != nil {
			return false, err
		}
		n, cerr := strconv.Atoi(a)
		if cerr != nil || n < 1 || n > len(disks) {
			fmt.Fprintf(out, "  %q: type a number from 1 to %d\n", a, len(disks))
			continue
		}
		k := disks[n-1]
		if k.InUse != "" {
			fmt.Fprintf(out, "  %s is in use (%s): pick another\n", k.Path, k.InUse)
			continue
		}
		o.Device = k.Path
		if len(k.Partitions) > 0 {
			if o.Force, err = yes(fmt.Sprintf("%s has partitions: erase them all?", k.Path)); err != nil {
				return false, err
			}
			if !o.Force {
				continue
			}
		}
		break
	}

	for {
		src, err := ask("Config file or URL to install (empty: answer a few questions instead): ")
		if err != nil {
			return false, err
		}
		if src == "" {
			if o.Config, err = askConfig(ask); err != nil {
				return false, err
			}
			o.ConfigName = "installer answers"
			break
		}
		data, err := ReadConfig(src)
		if err == nil {
			err = ValidateConfig(src, data)
		}
		if err != nil {
			fmt.Fprintf(out, "  %v\n", err)
			continue
		}
		o.Config, o.ConfigName = data, src
		break
	}
	fmt.Fprintf(out, "\nConfig to install (on the state partition, mode 0600):\n---\n%s---\n", o.Config)
	return yes(fmt.Sprintf("Install Kestrel to %s? Everything on it is erased.", o.Device))
}

// askConfig builds a config from answers.
func askConfig(ask func(string) (string, error)) ([]byte, error) {
	type section struct {
		Password  string `yaml:"password,omitempty"`
		ServerURL string `yaml:"server_url,omitempty"`
		Token     string `yaml:"token,omitempty"`
	}
	var c struct {
		SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
		Kestrel           section  `yaml:"kestrel,omitempty"`
	}
	users, err := ask("GitHub users whose SSH keys may log in (space-separated, empty: none): ")
	if err != nil {
		return nil, err
	}
	for _, u := range strings.Fields(users) {
		c.SSHAuthorizedKeys = append(c.SSHAuthorizedKeys, "github:"+u)
	}
	pw, err := ask("Password for the kestrel user (empty: SSH keys only): ")
	if err != nil {
		return nil, err
	}
	if pw != "" {
		if c.Kestrel.Password, err = shacrypt.HashSHA512(pw, rand.Reader); err != nil {
			return nil, err
		}
	}
	for {
		role, err := ask("Run k3s as server or agent? [server]: ")
		if err != nil {
			return nil, err
		}
		switch role {
		case "", "server":
		case "agent":
			if c.Kestrel.ServerURL, err = ask("Server URL (https://host:6443): "); err != nil {
				return nil, err
			}
			if c.Kestrel.Token, err = ask("Token: "); err != nil {
				return nil, err
			}
		default:
			continue
		}
		break
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	if string(b) == "{}\n" {
		b = []byte("# no settings: k3s server, console shell, no SSH keys\n")
	}
	return b, ValidateConfig("installer answers", b)
}

// ReadConfig reads a config from a file or an http(s) URL.
func ReadConfig(src string) ([]byte, error) {
	if !strings.HasPrefix(src, "https://") && !strings.HasPrefix(src, "http://") {
		return os.ReadFile(strings.TrimPrefix(src, "file://"))
	}
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(src)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", src, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

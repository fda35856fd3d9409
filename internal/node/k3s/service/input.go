package service

import (
	"github.com/kestrel-os/kestrel/internal/config"
	k3sconfig "github.com/kestrel-os/kestrel/internal/k3s/config"
)

// FromConfig maps the merged node config onto k3sconfig's Input. The
// k3OS keys (server_url, token, labels, taints, k3s_args) go into
// Input.Legacy rather than being folded into the k3s section here
// (config.Section.K3sSettings would let one silently win): k3sconfig
// then reports a conflict between the two spellings as an error. The
// environment key is the same in both spellings and goes to
// Input.Environment.
func FromConfig(cfg *config.Config, version, slot string) k3sconfig.Input {
	if cfg == nil {
		cfg = &config.Config{}
	}
	s := cfg.Kestrel
	k := s.K3s
	return k3sconfig.Input{
		Role:              k.Role,
		ServerURL:         k.ServerURL,
		Token:             k.Token,
		TokenFile:         k.TokenFile,
		DatastoreEndpoint: k.DatastoreEndpoint,
		NodeName:          k.NodeName,
		Labels:            k.Labels,
		Taints:            k.Taints,
		ExtraArgs:         k.Args,
		Environment:       s.Environment,
		Registries:        s.Registries,
		Legacy: k3sconfig.Legacy{
			K3sArgs:   s.K3sArgs,
			ServerURL: s.ServerURL,
			Token:     s.Token,
			Labels:    s.Labels,
			Taints:    s.Taints,
		},
		Version: version,
		Slot:    slot,
	}
}

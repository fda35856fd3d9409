package main

import "github.com/kestrel-os/kestrel/pkg/stage2"

// stage2Hooks wires the boot phases of other packages (config, k3s, sshd,
// ntp) into stage 2. It is the one place that knows all of them.
func stage2Hooks() stage2.Hooks {
	return stage2.Hooks{}
}

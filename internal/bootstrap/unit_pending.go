package bootstrap

import "fmt"

// Unit is a placeholder until the systemd unit lands.
type Unit struct{ Binary, Config, WorkingDirectory string }

func UnitName(port int) string { return fmt.Sprintf("zerodown-agent-%d.service", port) }

func SystemdUnit(u Unit) string { return "" }

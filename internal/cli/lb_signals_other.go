//go:build !unix

package cli

import "os"

// There is no such signal here: an upgrade needs a restart.
var upgradeSignal os.Signal

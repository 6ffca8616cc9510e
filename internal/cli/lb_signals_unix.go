//go:build unix

package cli

import (
	"os"
	"syscall"
)

// upgradeSignal asks `zerodown lb` to hand its sockets to a new process
// started from its executable's path (nginx uses the same signal for its
// binary upgrade).
var upgradeSignal os.Signal = syscall.SIGUSR2

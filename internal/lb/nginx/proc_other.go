//go:build !linux

package nginx

import (
	"errors"
	"runtime"
)

// procSupported tells that children does not work here: a change is
// made without confirming that nginx took it, and Targets cannot tell a
// drain's end.
const procSupported = false

// children would list nginx's workers; only Linux's /proc is read so far.
func children(int) ([]proc, error) {
	return nil, errors.New("telling when nginx's old workers have exited is only supported on Linux (it reads /proc), not on " + runtime.GOOS)
}

func titleOf(int) (string, error) {
	return "", errors.New("reading nginx's process titles is only supported on Linux")
}

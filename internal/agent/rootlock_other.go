//go:build !windows && !(unix && !aix && !solaris)

package agent

import "os"

// tryLock has no exclusive lock to take on these systems (package syscall
// has no flock here): the file records the pid, and keeping one agent per
// root is left to the operator, as docs/agent.md says.
func tryLock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}

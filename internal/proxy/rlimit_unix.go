//go:build unix

package proxy

import "syscall"

// openFilesLimit is the process's soft limit on open files (Go raises it to
// the hard limit at start).
func openFilesLimit() (uint64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == ^uint64(0) {
		return 0, false
	}
	return rl.Cur, true
}

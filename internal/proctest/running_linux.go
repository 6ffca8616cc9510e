package proctest

import (
	"bytes"
	"fmt"
	"os"
)

// Running reports whether pid is a live process; a zombie, dead but not
// yet reaped, is not.
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

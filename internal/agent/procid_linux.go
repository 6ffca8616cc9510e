package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// processStartID returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat), which differs between a process and a later
// one that got the same pid. A zombie counts as gone.
func processStartID(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) {
		return "", errGone
	}
	if err != nil {
		return "", fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return "", fmt.Errorf("read /proc/%d/stat: unexpected format", pid)
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 {
		return "", fmt.Errorf("read /proc/%d/stat: unexpected format", pid)
	}
	switch fields[0][0] { // field 3, the state
	case 'Z', 'X', 'x':
		return "", errGone
	}
	return string(fields[19]), nil // field 22, starttime
}

package nginx

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// procSupported tells that children works here.
const procSupported = true

// children lists the processes whose parent is master, with the title
// nginx gave each (it overwrites its argv, which /proc/PID/cmdline shows).
func children(master int) ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process may exit between ReadDir and these reads: skip it.
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || parentOf(stat) != master {
			continue
		}
		title, err := titleOf(pid)
		if err != nil {
			continue
		}
		out = append(out, proc{pid: pid, title: title})
	}
	return out, nil
}

// parentOf reads the ppid from /proc/PID/stat: "pid (comm) state ppid ...",
// where comm may hold spaces and parentheses, so it is found after the
// last ')'.
func parentOf(stat []byte) int {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return -1
	}
	return ppid
}

// titleOf is the title nginx gave process pid (it overwrites its argv,
// which /proc/PID/cmdline shows).
func titleOf(pid int) (string, error) {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), " ")), nil
}

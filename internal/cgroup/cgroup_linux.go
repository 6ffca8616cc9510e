package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Mount is where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or
// /sys/fs/cgroup/unified on a hybrid system) and which of its cgroups the
// mount shows at its top ("/" for all of it; less in some containers).
func Mount() (mount, root string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", fmt.Errorf("no cgroup v2: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) > 0 && fs[0] == "cgroup2" {
			if f := strings.Fields(pre); len(f) >= 5 {
				return unescape(f[4]), unescape(f[3]), nil
			}
		}
	}
	return "", "", errors.New("no cgroup v2 hierarchy is mounted")
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Of is the cgroup v2 path of process pid ("0::PATH" in /proc/PID/cgroup);
// pid 0 is the calling process.
func Of(pid int) (string, error) {
	proc := "self"
	if pid != 0 {
		proc = strconv.Itoa(pid)
	}
	data, err := os.ReadFile(filepath.Join("/proc", proc, "cgroup"))
	if err != nil {
		return "", fmt.Errorf("no cgroup v2: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %s is in no cgroup v2", proc)
}

// Dir is the directory of the cgroup at path (as Of gives it) under the
// mount; an error when the mount does not show it.
func Dir(path string) (string, error) {
	mount, root, err := Mount()
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(path, strings.TrimSuffix(root, "/"))
	if !ok || (rel != "" && rel[0] != '/') {
		return "", fmt.Errorf("cgroup %s is outside the mounted part of the hierarchy (%s at %s)", path, root, mount)
	}
	return filepath.Join(mount, rel), nil
}

// Pids lists the processes directly in the cgroup at dir; none when it is
// gone.
func Pids(dir string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range bytes.Fields(data) {
		if pid, err := strconv.Atoi(string(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Empty reports whether no process is left in the cgroup at dir or below
// it ("populated 0" in cgroup.events); a cgroup gone is empty.
func Empty(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		pids, _ := Pids(dir)
		return len(pids) == 0
	}
	return bytes.Contains(data, []byte("populated 0"))
}

// Signal sends sig to every process directly in the cgroup at dir, all of
// them whatever one refuses; it returns the first refusal.
func Signal(dir string, sig syscall.Signal) error {
	pids, err := Pids(dir)
	if err != nil {
		return err
	}
	var first error
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) && first == nil {
			first = fmt.Errorf("signal pid %d of cgroup %s: %w", pid, dir, err)
		}
	}
	return first
}

// Kill kills every process in the cgroup at dir and below it (cgroup.kill,
// or SIGKILL to each where the kernel has no cgroup.kill), waits until it
// is empty, and removes it with the cgroups below it, all before deadline.
// A cgroup already gone is no error.
func Kill(dir string, deadline time.Time) error {
	for !Empty(dir) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					_ = Signal(p, syscall.SIGKILL)
				}
				return nil
			})
		}
		if time.Now().After(deadline) {
			pids, _ := Pids(dir)
			return fmt.Errorf("cgroup %s still holds processes (%v directly) after SIGKILL", dir, pids)
		}
		time.Sleep(10 * time.Millisecond) // the kernel reaps asynchronously; poll its state
	}
	return Remove(dir, deadline)
}

// Remove removes the empty cgroup at dir and those below it, deepest
// first; a cgroup whose processes just died may be busy a moment longer
// (EBUSY), so each is retried until deadline.
func Remove(dir string, deadline time.Time) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := Remove(filepath.Join(dir, e.Name()), deadline); err != nil {
				return err
			}
		}
	}
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

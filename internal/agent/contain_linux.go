package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// newContainment finds the cgroup v2 hierarchy and the agent's own cgroup
// in it, and makes a child for the agent's instances there (name). It falls
// back to process groups, saying why, when any of that fails.
func newContainment(name string) *containment {
	mount, err := cgroup2Mount()
	if err != nil {
		return &containment{why: err.Error()}
	}
	own, err := ownCgroup()
	if err != nil {
		return &containment{why: err.Error()}
	}
	base := filepath.Join(mount, own, name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return &containment{why: fmt.Sprintf("cannot make a cgroup under %s: %v", filepath.Join(mount, own), err)}
	}
	// Prove a process can be put in a child: the parent may be one whose
	// controllers forbid it (under systemd without Delegate=yes).
	probe := filepath.Join(base, instanceName("probe"))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return &containment{why: fmt.Sprintf("cannot make a cgroup under %s: %v", base, err)}
	}
	cmd := exec.Command("/bin/sh", "-c", ":") // only where it starts matters
	err = startIn(cmd, probe)
	if err == nil {
		_ = cmd.Wait()
	}
	_ = os.Remove(probe)
	_ = os.Remove(base) // made again with the first instance; kept while a previous agent's live
	if err != nil {
		return &containment{why: fmt.Sprintf("cannot start a process in a cgroup under %s: %v", base, err)}
	}
	return &containment{base: base}
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup,
// or /sys/fs/cgroup/unified on a hybrid system).
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("no cgroup v2: %v", err)
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
				return unescapeMount(f[4]), nil
			}
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
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

// ownCgroup is the agent's cgroup v2 path ("0::PATH" in /proc/self/cgroup).
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("no cgroup v2: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("the agent is in no cgroup v2")
}

// startIn starts cmd inside the cgroup at dir from its first instruction
// (clone3 with CLONE_INTO_CGROUP), so nothing it does escapes it.
func startIn(cmd *exec.Cmd, dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	return cmd.Start()
}

// start starts cmd in a new instance cgroup (role names it), or in its own
// process group alone. It returns the cgroup's directory ("" for none).
func (c *containment) start(cmd *exec.Cmd, role string) (string, error) {
	if c.base == "" {
		return "", cmd.Start()
	}
	dir := filepath.Join(c.base, instanceName(role))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("make the app's cgroup %s: %w", dir, err)
	}
	if err := startIn(cmd, dir); err != nil {
		// A child whose exec failed was in the cgroup until it was reaped.
		_ = killCgroup(dir)
		return "", err
	}
	return dir, nil
}

// cgroupPids lists the processes in the cgroup at dir; none when it is gone.
func cgroupPids(dir string) ([]int, error) {
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

// signalCgroup sends the named signal to every process in the cgroup at dir.
func signalCgroup(dir, name string) error {
	sig, ok := signals[name]
	if !ok {
		return fmt.Errorf("unknown signal %q", name)
	}
	pids, err := cgroupPids(dir)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal pid %d of cgroup %s: %w", pid, dir, err)
		}
	}
	return nil
}

// killCgroup kills every process in the cgroup at dir (cgroup.kill, or
// SIGKILL to each where the kernel has no cgroup.kill), waits until it is
// empty, and removes it; the agent's cgroup goes too once it has no other
// instance. A cgroup already gone is no error.
func killCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	deadline := time.Now().Add(killWait)
	for {
		pids, err := cgroupPids(dir)
		if err != nil {
			return err
		}
		if len(pids) > 0 {
			if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
				_ = signalCgroup(dir, "SIGKILL")
			}
		} else {
			// Empty of live processes; the kernel may still count dying
			// ones for a moment (EBUSY).
			err := os.Remove(dir)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				_ = os.Remove(filepath.Dir(dir)) // fails while other instances live there
				return nil
			}
			if !errors.Is(err, syscall.EBUSY) {
				return fmt.Errorf("remove cgroup %s: %w", dir, err)
			}
		}
		if time.Now().After(deadline) {
			if len(pids) == 0 {
				return fmt.Errorf("cgroup %s is still busy %s after its processes were killed", dir, killWait)
			}
			return fmt.Errorf("cgroup %s still holds pids %v %s after SIGKILL", dir, pids, killWait)
		}
		time.Sleep(10 * time.Millisecond) // the kernel reaps asynchronously; poll its state
	}
}

// whoListens names the process listening on TCP port, for an error that
// must say what holds the app's port: "pid 42 (server), cgroup /x". ""
// when it cannot be found (another user's process, no /proc).
func whoListens(port int) string {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", d.Name(), "fd"))
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join("/proc", d.Name(), "fd", fd.Name())); err == nil && inodes[link] {
				comm, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
				who := fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
				if cg, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cgroup")); err == nil {
					for _, l := range strings.Split(string(cg), "\n") {
						if p, ok := strings.CutPrefix(l, "0::"); ok {
							who += ", cgroup " + p
						}
					}
				}
				return who
			}
		}
	}
	return ""
}

// sweep clears the agent's cgroup of what a previous agent lost track of:
// empty instance cgroups (it was killed between its app's exit and the
// cleanup) are removed, and populated ones other than keep (the instances
// adopted from pid files) are killed: an app started just before its pid
// file was written, a hook. It returns how many of each.
func (c *containment) sweep(keep map[string]bool) (removed, killed int) {
	if c.base == "" {
		return 0, 0
	}
	entries, _ := os.ReadDir(c.base)
	for _, e := range entries {
		dir := filepath.Join(c.base, e.Name())
		if !e.IsDir() || keep[dir] {
			continue
		}
		pids, err := cgroupPids(dir)
		switch {
		case err != nil:
		case len(pids) == 0:
			if os.Remove(dir) == nil {
				removed++
			}
		case killCgroup(dir) == nil:
			killed++
		}
	}
	_ = os.Remove(c.base) // kept while instances live
	return removed, killed
}

// groupIsApp reports whether the process group pgid still holds a process
// of the app instance rec names: a member whose environment has the PORT
// and VERSION the agent gave it. A pid is free for reuse once its group is
// empty, and a new session's leader takes its pid as its group: killing
// group pgid on the strength of the number alone could hit a stranger.
func groupIsApp(pgid int, rec pidRecord) bool {
	want := [][]byte{[]byte("PORT=" + strconv.Itoa(rec.Port)), []byte("VERSION=" + rec.Version)}
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// Field 5, the process group, after the parenthesised command.
		i := bytes.LastIndexByte(stat, ')')
		f := bytes.Fields(stat[i+1:])
		if i < 0 || len(f) < 3 || string(f[2]) != strconv.Itoa(pgid) {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		vars := bytes.Split(environ, []byte{0})
		found := 0
		for _, w := range want {
			for _, v := range vars {
				if bytes.Equal(v, w) {
					found++
					break
				}
			}
		}
		if found == len(want) {
			return true
		}
	}
	return false
}

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
	"sync"
	"syscall"
	"time"
)

// newContainment finds the cgroup v2 hierarchy and the agent's own cgroup
// in it, and makes a child for the agent's instances there (name). It falls
// back to process groups, saying why, when any of that fails.
func newContainment(name string) *containment {
	mount, mroot, err := cgroup2Mount()
	if err != nil {
		return &containment{why: err.Error()}
	}
	own, err := ownCgroup()
	if err != nil {
		return &containment{why: err.Error()}
	}
	// A mount of part of the hierarchy (in some containers) shows the
	// cgroups below its root only.
	rel, ok := strings.CutPrefix(own, strings.TrimSuffix(mroot, "/"))
	if !ok || (rel != "" && rel[0] != '/') {
		return &containment{why: fmt.Sprintf("the agent's cgroup %s is outside the mounted part of the hierarchy (%s at %s)", own, mroot, mount)}
	}
	parent := filepath.Join(mount, rel)
	base := filepath.Join(parent, name)
	baseMu.Lock()
	defer baseMu.Unlock()
	made := !exists(base)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return &containment{why: fmt.Sprintf("cannot make a cgroup under %s: %v", parent, err)}
	}
	// Prove a process can be put in a child: the parent may be one whose
	// controllers forbid it.
	probe := filepath.Join(base, instanceName("probe"))
	err = os.Mkdir(probe, 0o755)
	if err == nil {
		cmd := exec.Command("/bin/sh", "-c", ":") // only where it starts matters
		if err = startIn(cmd, probe); err == nil {
			_ = cmd.Wait()
		}
		_ = removeCgroupTree(probe, time.Now().Add(killWait))
	}
	if made {
		_ = os.Remove(base) // made again with the first instance
	}
	if err != nil {
		return &containment{why: fmt.Sprintf("cannot start a process in a cgroup under %s: %v", base, err)}
	}
	return &containment{base: base}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup,
// or /sys/fs/cgroup/unified on a hybrid system) and which of its cgroups
// the mount shows at its top ("/" for all of it).
func cgroup2Mount() (mount, root string, err error) {
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
				return unescapeMount(f[4]), unescapeMount(f[3]), nil
			}
		}
	}
	return "", "", errors.New("no cgroup v2 hierarchy is mounted")
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
	baseMu.Lock()
	err := os.MkdirAll(dir, 0o755) // once made, the base is not empty and stays
	baseMu.Unlock()
	if err != nil {
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
	var first error
	for _, pid := range pids {
		// Every one gets it, whatever one of them refuses (a setuid helper).
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) && first == nil {
			first = fmt.Errorf("signal pid %d of cgroup %s: %w", pid, dir, err)
		}
	}
	return first
}

// baseMu orders making an instance's cgroup (which keeps the agent's base
// cgroup from being removed) against removing the base once it is empty.
var baseMu sync.Mutex

// cgroupEmpty reports whether no process is left in the cgroup at dir or
// below it ("populated 0" in cgroup.events); a cgroup gone is empty.
func cgroupEmpty(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		pids, _ := cgroupPids(dir)
		return len(pids) == 0
	}
	return bytes.Contains(data, []byte("populated 0"))
}

// waitCgroupEmpty waits until the cgroup at dir is empty or deadline
// passes, and says whether it emptied.
func waitCgroupEmpty(dir string, deadline time.Time) bool {
	for !cgroupEmpty(dir) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // the kernel has no wait for this short of inotify
	}
	return true
}

// killCgroup kills every process in the cgroup at dir and below it
// (cgroup.kill, or SIGKILL to each where the kernel has no cgroup.kill),
// waits until it is empty, and removes it, with any cgroup the app made
// below it; the agent's base cgroup goes too once it has no other
// instance. A cgroup already gone is no error.
func killCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	deadline := time.Now().Add(killWait)
	for !cgroupEmpty(dir) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err != nil {
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					_ = signalCgroup(p, "SIGKILL")
				}
				return nil
			})
		}
		if time.Now().After(deadline) {
			pids, _ := cgroupPids(dir)
			return fmt.Errorf("cgroup %s still holds processes (%v directly) %s after SIGKILL", dir, pids, killWait)
		}
		time.Sleep(10 * time.Millisecond) // the kernel reaps asynchronously; poll its state
	}
	if err := removeCgroupTree(dir, deadline); err != nil {
		return err
	}
	baseMu.Lock()
	_ = os.Remove(filepath.Dir(dir)) // fails while other instances live there
	baseMu.Unlock()
	return nil
}

// removeCgroupTree removes the empty cgroup at dir and those below it,
// deepest first; a cgroup whose processes just died may be busy a moment
// longer (EBUSY), so each is retried until deadline.
func removeCgroupTree(dir string, deadline time.Time) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name()), deadline); err != nil {
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

// TCP states as /proc/net/tcp writes them.
const (
	tcpEstablished = "01"
	tcpListen      = "0A"
)

// portSockets are the inodes of the TCP sockets on local port in state.
func portSockets(port int, state string) []string {
	var inodes []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != state {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				inodes = append(inodes, f[9])
			}
		}
	}
	return inodes
}

// whoListens names the process listening on TCP port, for an error that
// must say what holds the app's port: "pid 42 (server), cgroup /x". ""
// when it cannot be found (another user's process, no /proc).
func whoListens(port int) string {
	inodes := map[string]bool{}
	for _, inode := range portSockets(port, tcpListen) {
		inodes["socket:["+inode+"]"] = true
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
// file was written, a hook. It returns how many of each, and the first
// failure.
func (c *containment) sweep(keep map[string]bool) (removed, killed int, err error) {
	if c.base == "" {
		return 0, 0, nil
	}
	entries, _ := os.ReadDir(c.base)
	for _, e := range entries {
		dir := filepath.Join(c.base, e.Name())
		if !e.IsDir() || keep[dir] {
			continue
		}
		empty := cgroupEmpty(dir)
		if kerr := killCgroup(dir); kerr != nil {
			if err == nil {
				err = kerr
			}
			continue
		}
		if empty {
			removed++
		} else {
			killed++
		}
	}
	baseMu.Lock()
	_ = os.Remove(c.base) // kept while instances live
	baseMu.Unlock()
	return removed, killed, err
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

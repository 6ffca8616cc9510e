package agent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/cgroup"
)

// newContainment finds the cgroup v2 hierarchy and the agent's own cgroup
// in it, and makes a child for the agent's instances there (name). It falls
// back to process groups, saying why, when any of that fails.
func newContainment(name string) *containment {
	own, err := cgroup.Of(0)
	if err != nil {
		return &containment{why: err.Error()}
	}
	parent, err := cgroup.Dir(own)
	if err != nil {
		return &containment{why: "the agent's cgroup: " + err.Error()}
	}
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
		_ = cgroup.Remove(probe, time.Now().Add(killWait))
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
func cgroupPids(dir string) ([]int, error) { return cgroup.Pids(dir) }

// signalCgroup sends the named signal to every process in the cgroup at dir.
func signalCgroup(dir, name string) error {
	sig, ok := signals[name]
	if !ok {
		return fmt.Errorf("unknown signal %q", name)
	}
	return cgroup.Signal(dir, sig)
}

// baseMu orders making an instance's cgroup (which keeps the agent's base
// cgroup from being removed) against removing the base once it is empty.
var baseMu sync.Mutex

// cgroupEmpty reports whether no process is left in the cgroup at dir or
// below it; a cgroup gone is empty.
func cgroupEmpty(dir string) bool { return cgroup.Empty(dir) }

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

// killCgroup kills every process in the cgroup at dir and below it, waits
// until it is empty, and removes it, with any cgroup the app made below
// it; the agent's base cgroup goes too once it has no other instance. A
// cgroup already gone is no error.
func killCgroup(dir string) error {
	if dir == "" {
		return nil
	}
	if err := cgroup.Kill(dir, time.Now().Add(killWait)); err != nil {
		return err
	}
	baseMu.Lock()
	_ = os.Remove(filepath.Dir(dir)) // fails while other instances live there
	baseMu.Unlock()
	return nil
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
				if cg, err := cgroup.Of(pid); err == nil {
					who += ", cgroup " + cg
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

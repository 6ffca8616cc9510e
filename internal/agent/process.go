package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
)

// errGone is what processStartID returns for a process that does not
// exist (or is a zombie).
var errGone = errors.New("no such process")

// killWait bounds how long a process may take to disappear after SIGKILL.
const killWait = 5 * time.Second

// adoptPoll is how often an adopted process, which is not the agent's
// child and cannot be waited for, is checked.
const adoptPoll = 50 * time.Millisecond

// process is one running app process: a child of this agent, or one a
// previous agent started and this one adopted. It leads its own process
// group and, where the agent has cgroups, is alone with what it starts in
// a cgroup, so all of them can be signalled and killed.
type process struct {
	pid int
	// cgroup is the directory of its cgroup; "" for none.
	cgroup string
	// startID tells this process from a later one with the same pid: its
	// start time as the OS reports it ("" where unknown).
	startID   string
	startedAt time.Time
	adopted   bool

	done     chan struct{} // closed when the process has exited
	mu       sync.Mutex
	exitDesc string
	ok       bool // exited with status 0
}

// succeeded reports whether the process exited with status 0.
func (p *process) succeeded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok
}

// exited returns how the process ended ("" while it runs).
func (p *process) exited() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitDesc
}

func (p *process) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// startProcess starts argv in dir with env as id, in its own process group
// and (under c) its own cgroup named after role, with stdout and stderr
// appended to logPath. The file is handed to the process itself, not piped
// through the agent, so the app keeps writing when the agent restarts.
func startProcess(c *containment, role string, id *runAs, argv []string, dir string, env []string, logPath string) (*process, error) {
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log %s: %w", logPath, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	setProcessGroup(cmd)
	if err := setCredential(cmd, id); err != nil {
		return nil, err
	}
	cg, err := c.start(cmd, role)
	if err != nil {
		return nil, fmt.Errorf("start %q in %s: %w", argv[0], dir, err)
	}
	p := &process{pid: cmd.Process.Pid, cgroup: cg, startedAt: time.Now(), done: make(chan struct{})}
	// Read before anything can reap it; a process that died already gets ""
	// and is simply not adoptable later.
	p.startID, _ = processStartID(p.pid)
	go func() {
		err := cmd.Wait()
		desc := "exited with status 0"
		if err != nil {
			desc = describeExit(err)
		}
		p.mu.Lock()
		p.exitDesc = desc
		p.ok = err == nil
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String() // "exit status 2", "signal: killed"
	}
	return err.Error()
}

// adoptProcess takes over a process a previous agent started, if it still
// runs and is the same process (same start time). Its exit is noticed by
// polling until ctx ends.
func adoptProcess(ctx context.Context, rec pidRecord) (*process, bool) {
	if rec.PID <= 0 {
		return nil, false
	}
	id, err := processStartID(rec.PID)
	if err != nil || id != rec.StartID {
		return nil, false
	}
	p := &process{pid: rec.PID, cgroup: rec.Cgroup, startID: id, startedAt: rec.StartedAt, adopted: true, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(adoptPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if id, err := processStartID(p.pid); err != nil || id != p.startID {
				p.mu.Lock()
				p.exitDesc = "exited (adopted process; exit status unknown)"
				p.mu.Unlock()
				close(p.done)
				return
			}
		}
	}()
	return p, true
}

// reapOrphans stops what is left of an instance whose leader is gone, as
// a running agent does when the leader exits: the processes of its cgroup,
// or of its process group when a member is proven to be the app's. It
// returns how many it found.
func reapOrphans(rec pidRecord) (int, error) {
	if rec.Cgroup != "" {
		pids, err := cgroupPids(rec.Cgroup)
		if err != nil {
			return 0, err
		}
		return len(pids), killCgroup(rec.Cgroup)
	}
	if rec.PID <= 0 || !groupAlive(rec.PID) || !groupIsApp(rec.PID, rec) {
		return 0, nil
	}
	return 1, killGroup(rec.PID)
}

// signal sends the named signal to every process of the cgroup, where
// there is one (a process that left the group, by setsid, gets it too),
// else to the process group. Once each: to many apps a second SIGTERM or
// SIGINT means "quit now, skip the drain".
func (p *process) signal(sig string) error {
	if p.cgroup != "" {
		return signalCgroup(p.cgroup, sig)
	}
	return signalGroup(p.pid, sig)
}

// killAll kills every process of the cgroup, or the process group, and
// waits, within killWait, until the cgroup is empty: after it, nothing the
// app started holds its port.
func (p *process) killAll() error {
	if p.cgroup != "" {
		return killCgroup(p.cgroup)
	}
	return killGroup(p.pid)
}

// stop ends the instance: sig to every process, then SIGKILL to what is
// left after timeout. With a cgroup, the others have until then too: a
// server a wrapper script started drains after the script has exited. It
// says how the process ended.
func (p *process) stop(sig string, timeout time.Duration) (how string, err error) {
	defer func() {
		// Stragglers: none, usually.
		if kerr := p.killAll(); kerr != nil && err == nil {
			err = kerr
		}
	}()
	if !p.alive() && (p.cgroup == "" || cgroupEmpty(p.cgroup)) {
		return p.exited(), nil
	}
	if err := p.signal(sig); err != nil && p.alive() {
		return "", fmt.Errorf("send %s to pid %d: %w", sig, p.pid, err)
	}
	deadline := time.Now().Add(timeout)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		if p.cgroup == "" || waitCgroupEmpty(p.cgroup, deadline) {
			return fmt.Sprintf("stopped by %s: %s", sig, p.exited()), nil
		}
	case <-t.C:
	}
	if err := p.killAll(); err != nil && p.alive() {
		return "", fmt.Errorf("kill pid %d: %w", p.pid, err)
	}
	t2 := time.NewTimer(killWait)
	defer t2.Stop()
	select {
	case <-p.done:
		return fmt.Sprintf("did not stop within %s of %s; killed", timeout, sig), nil
	case <-t2.C:
		return "", fmt.Errorf("pid %d still runs %s after SIGKILL", p.pid, killWait)
	}
}

// pidRecord is a pid file: enough to find the process again and to be
// sure it is the same one.
type pidRecord struct {
	PID       int       `json:"pid"`
	StartID   string    `json:"start_id"`
	Version   string    `json:"version"`
	Port      int       `json:"port"`
	StartedAt time.Time `json:"started_at"`
	// Cgroup is the instance's cgroup directory, "" for none: what a
	// restarted agent stops when the leader is gone but others live.
	Cgroup string `json:"cgroup,omitempty"`
}

func writePidFile(path string, p *process, version string, port int) error {
	data, err := json.Marshal(pidRecord{PID: p.pid, StartID: p.startID, Version: version, Port: port, StartedAt: p.startedAt, Cgroup: p.cgroup})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("write pid file %s: %w", path, err)
	}
	return nil
}

// readPidFile returns the record; ok is false when there is none.
func readPidFile(path string) (pidRecord, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pidRecord{}, false, nil
	}
	if err != nil {
		return pidRecord{}, false, fmt.Errorf("read pid file: %w", err)
	}
	var rec pidRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		// A damaged pid file is no reason to stay down: start afresh.
		return pidRecord{}, false, nil
	}
	return rec, true, nil
}

func removePidFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

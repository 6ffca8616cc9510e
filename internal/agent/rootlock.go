package agent

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// lockName is the file under the root that the running agent holds
// locked, with its pid in it: two agents on one root would fight over the
// current link, the app's port and each other's uploads.
const lockName = "agent.lock"

// errLocked is what tryLock returns when another process holds the lock.
var errLocked = errors.New("locked")

// lockRoot takes the root's lock for this agent and writes its pid into
// the lock file, or names the agent that holds it.
func lockRoot(root, path string) (*os.File, error) {
	f, err := tryLock(path)
	if errors.Is(err, errLocked) {
		return nil, fmt.Errorf("root %s is in use by another zerodown agent (%s): %s is locked; stop that agent first, or give this one another root", root, lockOwner(path), path)
	}
	if err != nil {
		return nil, fmt.Errorf("lock the release root: %s: %w", path, err)
	}
	// The pid is only for the message above; the lock is the file lock,
	// which the system drops when the process ends however it ends.
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write the agent's pid into %s: %w", path, err)
	}
	return f, nil
}

// unlockRoot gives the root up. The file stays: removing it would let a
// third agent lock a new file while a second one holds the old.
func unlockRoot(f *os.File) {
	_ = f.Truncate(0) // no stale pid for the next reader
	f.Close()
}

// lockOwner says which pid holds the lock, as its file says.
func lockOwner(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "pid unknown: " + err.Error()
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return "pid unknown: it has not written it yet"
	}
	return "pid " + strconv.Itoa(pid)
}

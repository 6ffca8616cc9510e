package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"
)

// containment is how the agent keeps every process of an app instance
// (the app, the preflight's copy, a hook) together, so that stopping it
// stops them all: on Linux a cgroup v2 of its own per instance, which a
// process cannot leave (setsid, a double fork); elsewhere, or where no
// cgroup can be made, the process group the app leads, which a process
// leaves by calling setsid.
type containment struct {
	// base is the directory of the agent's cgroup for its instances; ""
	// when process groups are all there is, and why says why.
	base string
	why  string
}

// instanceSeq keeps instance cgroup names unique within one agent.
var instanceSeq atomic.Uint64

// instanceName is a fresh cgroup name: the time and a counter keep it
// apart from this agent's other instances and a previous agent's.
func instanceName(role string) string {
	return fmt.Sprintf("%s-%d-%d", role, time.Now().UnixNano(), instanceSeq.Add(1))
}

// containName is the agent's cgroup for its instances: one per root, so
// two agents on one machine never share one.
func containName(root string) string {
	abs, err := filepath.Abs(root)
	if err != nil {
		abs = root
	}
	sum := sha256.Sum256([]byte(abs))
	return "zerodown-agent-" + hex.EncodeToString(sum[:6])
}

// String says what the agent contains its apps with, for the start log.
func (c *containment) String() string {
	if c.base != "" {
		return "cgroup v2 per app instance under " + c.base
	}
	return "process groups (" + c.why + "); a process that leaves its group (setsid, a daemon's double fork) is not stopped with the app"
}

package nginx

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// proc is a child process of nginx's master and the title nginx gave it.
type proc struct {
	pid   int
	title string
}

// The titles nginx gives its workers: a worker of the old configuration
// after a reload takes the second until its last connection ends.
const (
	titleMaster       = "nginx: master process"
	titleWorker       = "nginx: worker process"
	titleShuttingDown = "nginx: worker process is shutting down"
)

// workers reads the master's pid from the pid file and lists its workers,
// leaving out the cache manager and loader.
func (b *Balancer) workers() (master int, ws []proc, err error) {
	return workers(b.cfg.PidFile)
}

func workers(pidFile string) (master int, ws []proc, err error) {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, nil, fmt.Errorf("read nginx's pid file: %w", err)
	}
	master, err = strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || master <= 0 {
		return 0, nil, fmt.Errorf("nginx's pid file %s holds %q, not a pid", pidFile, strings.TrimSpace(string(data)))
	}
	// A stale or wrong pid file would make every drain look over and every
	// reload look untaken: the pid must be a running nginx master.
	title, err := titleOf(master)
	if err == nil && !strings.HasPrefix(title, titleMaster) {
		err = fmt.Errorf("its title is %q", title)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("pid_file %s names pid %d, which is not a running nginx master (%v): is it the pid file nginx writes (its `pid` directive)?",
			pidFile, master, err)
	}
	all, err := children(master)
	if err != nil {
		return 0, nil, fmt.Errorf("the workers of nginx's master (pid %d from %s): %w", master, pidFile, err)
	}
	for _, p := range all {
		if strings.HasPrefix(p.title, titleWorker) {
			ws = append(ws, p)
		}
	}
	return master, ws, nil
}

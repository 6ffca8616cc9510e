package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/supervise"
)

// stopMargin is how much longer than the agent's shutdown_timeout the
// supervisor waits for the agent to exit before it kills it.
const stopMargin = 10 * time.Second

// agentSuperviseCmd is the hidden `zerodown agent supervise`: the agent
// under a small supervisor, for hosts where `zerodown hosts bootstrap`
// cannot leave it to systemd (no systemd, or a login that is not root).
// It is bootstrap's tool, not a feature of its own, hence hidden.
type agentSuperviseCmd struct {
	config      string
	pidFile     string
	log         string
	stopTimeout time.Duration
	setsid      bool
}

func newAgentSuperviseCmd() *cobra.Command {
	s := &agentSuperviseCmd{}
	cmd := &cobra.Command{
		Use:   "supervise --config agent.yaml --pid-file agent.pid --log agent.log",
		Short: "Run the agent under a supervisor that restarts it, for hosts without systemd",
		Long: `Run 'zerodown agent --config FILE' and keep it running: restart it when it
exits (after 1s, doubling up to 30s, back to 1s once it stayed up 30s), and
append its output and the supervisor's own lines to the log.

The supervisor writes its own pid to the pid file and refuses to start while
the file names another running supervisor. The agent is started from the
path this command was started as, looked up again at every start, so an
upgrade that switches that path (a symlink) to a new binary takes effect at
the next start.

Signals to the supervisor: SIGTERM and SIGINT stop the agent (SIGTERM, then
SIGKILL after --stop-timeout) and the supervisor, which removes its pid file;
the app keeps running, as whenever the agent stops. SIGHUP stops the agent
and re-executes the supervisor from the same path, which then starts the
agent again: after an upgrade, both run the new binary.

zerodown hosts bootstrap starts it detached from the SSH session:
  setsid zerodown agent supervise ... </dev/null >/dev/null 2>&1 &
See docs/agent.md, "Without systemd".`,
		Hidden: true,
		Args:   noArgs,
		RunE:   s.run,
	}
	f := cmd.Flags()
	f.StringVarP(&s.config, "config", "c", "agent.yaml", "the agent's config file")
	f.StringVar(&s.pidFile, "pid-file", "", "where the supervisor writes its own pid (required)")
	f.StringVar(&s.log, "log", "", "the file the agent's output and the supervisor's lines are appended to (required)")
	f.DurationVar(&s.stopTimeout, "stop-timeout", 0, "how long the agent has to exit after SIGTERM before it is killed (default: the agent's shutdown_timeout + 10s, at least 1m)")
	f.BoolVar(&s.setsid, "setsid", false, "start a new session first, as setsid(1) does, so a hangup of the calling session does not reach the supervisor")
	_ = cmd.MarkFlagRequired("pid-file")
	_ = cmd.MarkFlagRequired("log")
	return cmd
}

func (s *agentSuperviseCmd) run(c *cobra.Command, _ []string) error {
	// A broken agent.yaml is said now, not once a second in a restart loop.
	cfg, err := config.LoadAgent(s.config)
	if err != nil {
		return badInput(err)
	}
	program, err := programPath(os.Args[0])
	if err != nil {
		return err
	}
	// Absolute, so the agent finds its config whatever its directory, and
	// the command line names the pid file for a second supervisor to see.
	var configPath, pidFile, logFile string
	for _, p := range []struct {
		dst  *string
		path string
	}{{&configPath, s.config}, {&pidFile, s.pidFile}, {&logFile, s.log}} {
		if *p.dst, err = filepath.Abs(p.path); err != nil {
			return err
		}
	}
	stop := s.stopTimeout
	if stop <= 0 {
		stop = max(supervise.DefaultStopTimeout, time.Duration(cfg.ShutdownTimeout)+stopMargin)
	}
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return supervise.Run(ctx, supervise.Options{
		Program:     program,
		Args:        []string{"agent", "--config", configPath},
		PidFile:     pidFile,
		Log:         logFile,
		StopTimeout: stop,
		Setsid:      s.setsid,
	})
}

// programPath is the path this process was started as, made absolute: the
// symlink an upgrade switches, not the binary it pointed to at the start
// (which os.Executable would give). A bare name was found on PATH.
func programPath(argv0 string) (string, error) {
	p := argv0
	if !strings.ContainsRune(p, filepath.Separator) && !strings.ContainsRune(p, '/') {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("find the path zerodown was started as (%s): %w", argv0, err)
		}
		p = found
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("find the path zerodown was started as (%s): %w", argv0, err)
	}
	return abs, nil
}

// Package demo wires the whole product on loopback in a temporary
// directory: `zerodown lb`, a few `zerodown agent`s and the sample app's
// releases, ready for `zerodown deploy`. `zerodown demo` and the end-to-end
// tests use it.
package demo

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/freeport"
	"github.com/zerodown/zerodown/internal/reaper"
)

// Options shape a sandbox.
type Options struct {
	Hosts int // agents, each with its own app port
	Rate  int // requests per second the verifier fires during deploys
	// Swap gives every agent a second slot and deploys with the swap
	// strategy, as a fleet of one must be.
	Swap bool
	// Zerodown is the zerodown executable that runs the load balancer and
	// the agents.
	Zerodown string
	// App is the sample app the releases carry.
	App App
	// Dir holds everything; a new temporary directory when empty.
	Dir string
	// Log receives the sandbox's own progress lines.
	Log io.Writer
}

// Sandbox is a running loopback fleet.
type Sandbox struct {
	Dir string
	// LB is the load balancer's listener URL, Admin its admin API URL.
	LB, Admin string
	// Config is a zerodown.yaml for the fleet's environment "staging" whose
	// deploys run under the load verifier (which, on the first deploy onto
	// hosts that serve nothing yet, counts from the first healthy one);
	// FailConfig is the same with a release that fails its health check.
	Config, FailConfig string
	// Artifact is the sample app as a release archive.
	Artifact string
	Hosts    []Host

	procs []*exec.Cmd
	mu    sync.Mutex
}

// Host is one agent and the port its app serves on.
type Host struct {
	Name, Agent, Target, TokenFile string
	// SwapTarget is the app's second slot, for a fleet of one (swap).
	SwapTarget string
}

// readyTimeout bounds how long a started process may take to be ready.
const readyTimeout = 20 * time.Second

// Start builds the sandbox and starts its processes; on error nothing is
// left running.
func Start(ctx context.Context, o Options) (_ *Sandbox, err error) {
	if o.Hosts < 1 {
		return nil, errors.New("a sandbox needs at least one host")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "zerodown-demo-"); err != nil {
			return nil, err
		}
	}
	// Not the result: a failure returns nil, and what started must still
	// be stopped.
	s := &Sandbox{Dir: o.Dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Artifact, err = makeArtifact(o.App, filepath.Join(o.Dir, "hello.tar.gz")); err != nil {
		return nil, err
	}
	var targets []string
	for i := 1; i <= o.Hosts; i++ {
		h, err := s.startAgent(ctx, o, i, o.Swap)
		if err != nil {
			return nil, err
		}
		s.Hosts = append(s.Hosts, h)
		targets = append(targets, fmt.Sprintf("%q", h.Target))
	}
	if err := s.startLB(ctx, o, targets); err != nil {
		return nil, err
	}
	if s.Config, err = s.writeConfig(o, "zerodown.yaml"); err != nil {
		return nil, err
	}
	if s.FailConfig, err = s.writeConfig(o, "zerodown-fail.yaml", "--fail-health"); err != nil {
		return nil, err
	}
	return s, nil
}

// freeAddr picks an address for a process of the sandbox to listen on:
// outside the ephemeral range, so that nothing else is handed it before
// the process binds it.
func freeAddr() (string, error) { return freeport.Addr() }

func (s *Sandbox) start(o Options, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(s.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(o.Zerodown, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.mu.Lock()
	s.procs = append(s.procs, cmd)
	s.mu.Unlock()
	go func() { _ = cmd.Wait(); logf.Close() }()
	return nil
}

// waitFile waits until path has content: the token a process generates
// once it is up.
func waitFile(ctx context.Context, path, what string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not start within %s (no %s)", what, readyTimeout, path)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Sandbox) startAgent(ctx context.Context, o Options, i int, swap bool) (Host, error) {
	name := fmt.Sprintf("staging-%d", i)
	listen, err := freeAddr()
	if err != nil {
		return Host{}, err
	}
	app, err := freeAddr()
	if err != nil {
		return Host{}, err
	}
	_, port, _ := net.SplitHostPort(app)
	root := filepath.Join(s.Dir, name)
	// The demo's sample app runs as whoever runs the demo, root included.
	cfg := fmt.Sprintf("listen: %s\nroot: %s\nport: %s\nrestart: { backoff: 100ms, max_backoff: 2s }\nallow_root: true\n", listen, root, port)
	swapTarget := ""
	if swap {
		if swapTarget, err = freeAddr(); err != nil {
			return Host{}, err
		}
		_, swapPort, _ := net.SplitHostPort(swapTarget)
		cfg += "swap_port: " + swapPort + "\n"
	}
	cfgPath := filepath.Join(s.Dir, name+"-agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return Host{}, err
	}
	if err := s.start(o, name+"-agent", "agent", "--config", cfgPath); err != nil {
		return Host{}, err
	}
	h := Host{Name: name, Agent: "http://" + listen, Target: app, TokenFile: filepath.Join(root, "agent.token"), SwapTarget: swapTarget}
	if err := waitFile(ctx, h.TokenFile, "agent "+name); err != nil {
		return Host{}, err
	}
	fmt.Fprintf(o.Log, "  agent %s on %s, app port %s\n", name, h.Agent, port)
	return h, nil
}

func (s *Sandbox) startLB(ctx context.Context, o Options, targets []string) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	admin, err := freeAddr()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`listeners:
  - address: %s
    routes: [ { pool: hello } ]
admin: { address: %s, token_file: %s }
state_file: %s
pools:
  hello:
    targets: [ %s ]
    health: { path: /healthz, interval: 250ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }
    deregistration_delay: 30s
`, listen, admin, filepath.Join(s.Dir, "lb-admin.token"), filepath.Join(s.Dir, "lb-state.json"), strings.Join(targets, ", "))
	cfgPath := filepath.Join(s.Dir, "lb.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := s.start(o, "lb", "lb", "--config", cfgPath); err != nil {
		return err
	}
	s.LB, s.Admin = "http://"+listen, "http://"+admin
	if err := waitFile(ctx, filepath.Join(s.Dir, "lb-admin.token"), "the load balancer"); err != nil {
		return err
	}
	fmt.Fprintf(o.Log, "  load balancer on %s, admin API on %s\n", s.LB, s.Admin)
	return nil
}

func (s *Sandbox) writeConfig(o Options, name string, extraFlags ...string) (string, error) {
	var hosts strings.Builder
	strategy := fmt.Sprintf("rolling: { batch: 1, min_healthy: %d, bake: 1s }", min(1, len(s.Hosts)-1))
	for _, h := range s.Hosts {
		swap := ""
		if h.SwapTarget != "" {
			swap = fmt.Sprintf(", swap_target: %q", h.SwapTarget)
			// A rolling deploy of one host leaves nobody serving.
			strategy = "swap: {}"
		}
		fmt.Fprintf(&hosts, "      - { name: %s, agent: %q, target: %q, token_file: %q%s }\n", h.Name, h.Agent, h.Target, h.TokenFile, swap)
	}
	cfg := fmt.Sprintf(`# A zerodown.yaml for the demo's loopback fleet.
app:
  name: hello
  run: %s
  health: { path: /healthz, interval: 250ms, timeout: 5s }
  stop: { signal: SIGTERM, timeout: 10s }
state: %s
environments:
  staging:
    lb: { driver: builtin, admin: %q, pool: hello, token_file: %q }
    hosts:
%s    strategy:
      %s
`, o.App.run(append([]string{"--listen", "127.0.0.1:${PORT}", "--name", "demo"}, extraFlags...)...), filepath.Join(s.Dir, "state.db"), s.Admin, filepath.Join(s.Dir, "lb-admin.token"),
		hosts.String(), strategy)
	cfg += fmt.Sprintf("    verify: { url: %q, rate: %d, max_failed: 0, max_dropped: 0, post_echo: true }\n", s.LB+"/", o.Rate)
	p := filepath.Join(s.Dir, name)
	return p, os.WriteFile(p, []byte(cfg), 0o644)
}

// makeArtifact packs the sample app as a release: a tar.gz with the one
// executable, named app.Name.
func makeArtifact(app App, out string) (string, error) {
	in, err := os.Open(app.Exe)
	if err != nil {
		return "", fmt.Errorf("sample app: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return "", err
	}
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Stored, not compressed: on loopback the upload costs nothing, while
	// inflating tens of megabytes (the zerodown binary as the app) costs the
	// hosts CPU in the middle of a deploy that the load verifier needs.
	gz, _ := gzip.NewWriterLevel(f, gzip.NoCompression)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: app.Name, Mode: 0o755, Size: st.Size(), Typeflag: tar.TypeReg, ModTime: st.ModTime()}); err != nil {
		return "", err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", err
	}
	return out, f.Close()
}

// Close stops the load balancer and the agents, then the apps the agents
// started (they outlive their agent by design), so nothing is left running.
func (s *Sandbox) Close() {
	var pids []int
	for _, h := range s.Hosts {
		tok, err := os.ReadFile(h.TokenFile)
		if err != nil {
			continue
		}
		c, err := agent.NewClient(agent.ClientConfig{URL: h.Agent, Token: strings.TrimSpace(string(tok))})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if st, err := c.AgentStatus(ctx); err == nil && st.PID > 0 {
			pids = append(pids, st.PID)
			if st.Retiring != nil {
				pids = append(pids, st.Retiring.PID)
			}
		}
		cancel()
	}
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range procs {
		_ = p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		waitExit(p.Process.Pid, 5*time.Second)
		_ = p.Process.Kill()
	}
	reaper.Stop(pids, 5*time.Second)
	// Any the agents' status did not name (one started by a crash restart
	// during shutdown).
	reaper.KillUnder(s.Dir)
}

// waitExit waits until pid is gone or the bound passes.
func waitExit(pid int, bound time.Duration) {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		p, err := os.FindProcess(pid)
		if err != nil || p.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

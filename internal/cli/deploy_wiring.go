package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// ExitNeedsAttention: the run left a host in a state that needs a person.
const ExitNeedsAttention = 3

// Lock timing: the holder beats every lockHeartbeat; a lock whose beat is
// older than lockStale belongs to a process that is gone.
const (
	lockHeartbeat = 5 * time.Second
	lockStale     = 30 * time.Second
)

// loadDeployConfig reads zerodown.yaml; problems are the user's (exit 2).
func loadDeployConfig(path string) (*config.Deploy, error) {
	cfg, err := config.LoadDeploy(path)
	if err != nil {
		return nil, badInput(err)
	}
	return cfg, nil
}

func environment(cfg *config.Deploy, name string) (*config.Environment, error) {
	env, ok := cfg.Environments[name]
	if !ok {
		return nil, badInput(fmt.Errorf("%s: no environment %q (environments: %s)", cfg.Path, name, strings.Join(cfg.EnvOrder, ", ")))
	}
	return env, nil
}

// secret returns an inline token or the trimmed content of a token file.
func secret(token, file, what string) (string, error) {
	if token != "" {
		return token, nil
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s token: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// balancerFor builds the environment's load balancer driver.
func balancerFor(env *config.Environment) (lb.Balancer, error) {
	switch env.LB.Driver {
	case config.DriverBuiltin, "":
		tok, err := secret(env.LB.Token, env.LB.TokenFile, "load balancer")
		if err != nil {
			return nil, err
		}
		c, err := builtin.New(builtin.Config{Admin: env.LB.Admin, Token: tok})
		if err != nil {
			return nil, fmt.Errorf("environment %s: load balancer: %w", env.Name, err)
		}
		return c.Balancer(env.LB.Pool), nil
	}
	return nil, fmt.Errorf("environment %s: load balancer driver %q is not available yet", env.Name, env.LB.Driver)
}

// hostsFor builds an agent client per host.
func hostsFor(env *config.Environment) (map[string]engine.Host, error) {
	out := map[string]engine.Host{}
	for _, h := range env.Hosts {
		tok, err := secret(h.Token, h.TokenFile, "agent "+h.Name)
		if err == nil && tok == "" {
			tok, err = secret(env.Agents.Token, env.Agents.TokenFile, "agent "+h.Name)
		}
		if err != nil {
			return nil, err
		}
		c, err := agent.NewClient(agent.ClientConfig{URL: h.Agent, Token: tok})
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		out[h.Name] = engine.Host{Name: h.Name, Target: h.Target, Deployer: c}
	}
	return out, nil
}

// release describes the artifact at path, hashing it once.
func release(path, version string, app config.App) (host.Release, error) {
	f, err := os.Open(path)
	if err != nil {
		return host.Release{}, badInput(fmt.Errorf("artifact: %w", err))
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return host.Release{}, fmt.Errorf("artifact %s: %w", path, err)
	}
	r := host.Release{Version: version, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Spec: app,
		Open: func() (io.ReadCloser, error) { return os.Open(path) }}
	switch base := filepath.Base(path); {
	case strings.HasSuffix(base, ".tar.gz"), strings.HasSuffix(base, ".tgz"):
		r.Format = host.FormatTarGz
	case strings.HasSuffix(base, ".zip"):
		r.Format = host.FormatZip
	default:
		r.Format, r.Name = host.FormatFile, base
	}
	return r, nil
}

// minHealthy resolves the environment's min_healthy.
func minHealthy(env *config.Environment) int {
	if env.Strategy.Rolling == nil {
		return 0
	}
	return env.Strategy.Rolling.MinHealthy.Of(len(env.Hosts))
}

// alreadyDone returns hosts that run version and are healthy in the load
// balancer: a re-run leaves them alone.
func alreadyDone(ctx context.Context, env *config.Environment, hosts map[string]engine.Host, bal lb.Balancer, version string) (map[string]bool, error) {
	targets, err := bal.Targets(ctx)
	if err != nil {
		return nil, fmt.Errorf("read load balancer targets: %w", err)
	}
	healthy := map[string]bool{}
	for _, t := range targets {
		healthy[t.Address] = t.State == lb.StateHealthy
	}
	skip := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(env.Hosts))
	for i, h := range env.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := hosts[h.Name].Deployer.Status(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("host %s: status: %w", h.Name, err)
				return
			}
			if st.Version == version && healthy[h.Target] {
				mu.Lock()
				skip[h.Name] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return skip, errors.Join(errs...)
}

// pipelineFor picks the hand-written pipeline named, or expands the
// environment's strategy.
func pipelineFor(cfg *config.Deploy, env *config.Environment, name string, skip map[string]bool) (*pipeline.Pipeline, error) {
	if name != "" {
		pc, ok := cfg.Pipelines[name]
		if !ok {
			return nil, badInput(fmt.Errorf("%s: no pipeline %q", cfg.Path, name))
		}
		if pc.Environment != env.Name {
			return nil, badInput(fmt.Errorf("pipeline %s is for environment %s, not %s", name, pc.Environment, env.Name))
		}
		return pipeline.FromConfig(name, pc), nil
	}
	return pipeline.Rolling(env, skip)
}

func countTasks(p *pipeline.Pipeline) int {
	n := 0
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			n += len(j.Tasks)
		}
	}
	return n
}

func openStore(ctx context.Context, cfg *config.Deploy) (store.Store, error) {
	return sqlite.Open(ctx, cfg.State, sqlite.Options{})
}

// ownerGone reports whether a lock owner written by store.ProcessOwner is a
// process on this machine that no longer runs.
func ownerGone(owner string) bool {
	at := strings.LastIndex(owner, "@")
	sp := strings.LastIndex(owner, " pid ")
	if at < 0 || sp < at {
		return false
	}
	hostname, _ := os.Hostname()
	if owner[at+1:sp] != hostname {
		return false
	}
	pid, err := strconv.Atoi(owner[sp+len(" pid "):])
	if err != nil || pid <= 0 {
		return false
	}
	return !processAlive(pid)
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// holdLock takes env's lock for runID; takeOver also takes a stale lock, or
// one whose owner process on this machine is gone. onLost is called if the
// lock is taken from this process while it runs (the run must stop). It
// returns a release func that stops the heartbeat.
func holdLock(ctx context.Context, st store.Store, env, runID string, takeOver bool, w io.Writer, onLost func(error)) (func(), error) {
	owner := store.ProcessOwner()
	_, err := st.AcquireLock(ctx, env, owner, runID, lockStale)
	var le *store.LockedError
	if errors.As(err, &le) && (takeOver || le.Lock.RunID == runID) && (le.Stale || ownerGone(le.Lock.Owner)) {
		fmt.Fprintf(w, "taking over the lock of environment %s from %s (run %s), which is gone\n", env, le.Lock.Owner, le.Lock.RunID)
		// Only a heartbeat as old as the one just seen counts as stale, so
		// if someone else took the lock meanwhile (a fresh heartbeat) this
		// fails instead of taking it from a live process.
		_, err = st.TakeOverLock(ctx, env, owner, runID, max(le.Age, time.Millisecond))
	}
	if err != nil {
		if errors.As(err, &le) && le.Stale && !takeOver {
			return nil, fmt.Errorf("%w; run again with --take-over to take it", err)
		}
		return nil, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(lockHeartbeat)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				hctx, cancel := context.WithTimeout(context.Background(), lockHeartbeat)
				err := st.Heartbeat(hctx, env, owner, runID)
				cancel()
				if errors.Is(err, store.ErrLockLost) {
					fmt.Fprintf(w, "the lock of environment %s was taken by someone else: stopping this run\n", env)
					if onLost != nil {
						onLost(fmt.Errorf("%w: lock of environment %s lost", engine.ErrAborted, env))
					}
					return
				}
				if err != nil {
					fmt.Fprintf(w, "warning: lock heartbeat: %v\n", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = st.ReleaseLock(rctx, env, owner, runID)
	}, nil
}

// exitFor maps an engine result to the documented exit codes.
func exitFor(res engine.Result) error {
	switch res.Status {
	case engine.StatusSucceeded:
		return nil
	case engine.StatusNeedsAttention:
		return &exitError{code: ExitNeedsAttention, err: fmt.Errorf("run needs attention: %v\n%s", res.Err, res.Summary())}
	}
	return &exitError{code: ExitFailed, err: fmt.Errorf("run failed and was rolled back: %w", res.Err)}
}

func storeStatus(res engine.Result) store.RunStatus {
	switch res.Status {
	case engine.StatusSucceeded:
		return store.RunSucceeded
	case engine.StatusRolledBack:
		if res.Aborted {
			return store.RunAborted
		}
		return store.RunRolledBack
	case engine.StatusNeedsAttention:
		return store.RunNeedsAttention
	}
	if res.Aborted {
		return store.RunAborted
	}
	return store.RunFailed
}

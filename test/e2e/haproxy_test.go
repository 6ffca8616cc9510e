package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb/haproxy"
	"github.com/zerodown/zerodown/internal/proctest"
)

// haproxyHead is the global and defaults sections of the tests' HAProxy
// configurations: the Runtime API on a TCP socket at level admin, HTTP
// mode, short connect timeouts.
func haproxyHead(stats string) string {
	return fmt.Sprintf(`global
    stats socket ipv4@%s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
`, stats)
}

// haproxyFleetCfg keeps runtime state across reloads the way docs/deploy.md
// says to: a server-state-file, written from `show servers state` before
// each reload and loaded by every backend.
const haproxyFleetCfg = `global
    stats socket ipv4@%s level admin
    server-state-file %s
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    load-server-state-from-file global
frontend web
    bind %s
    # On a reload the old worker keeps idle keep-alive connections until
    # their next request, answered with Connection: close, instead of
    # closing them under a client that is sending one (a POST lost).
    option idle-close-on-response
    default_backend app
backend app
    option httpchk GET /healthz
%s`

// haproxyFixture is a real HAProxy in master-worker mode in front of a
// driver fleet's agents, one server per host (web1, web2, ...).
type haproxyFixture struct {
	master    *proctest.Proc
	rt        *haproxy.Runtime
	stateFile string
}

// startHAProxyFor starts HAProxy for f and points f's driver at it.
func startHAProxyFor(t *testing.T, f *driverFleet) *haproxyFixture {
	t.Helper()
	haproxyBin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	var servers strings.Builder
	names := map[string]string{}
	for i := range f.agents {
		fmt.Fprintf(&servers, "    server web%d %s check inter 100ms rise 2 fall 2\n", i+1, f.target(i))
		names[f.target(i)] = fmt.Sprintf("web%d", i+1)
	}
	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	h := &haproxyFixture{stateFile: filepath.Join(f.dir, "haproxy.state")}
	cfgPath := filepath.Join(f.dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, haproxyFleetCfg, stats, h.stateFile, front, servers.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h.master = proctest.Start(t, "haproxy", haproxyBin, "-W", "-db", "-f", cfgPath)
	proctest.WaitListening(t, stats, 10*time.Second)
	var err error
	if h.rt, err = haproxy.NewRuntime(stats); err != nil {
		t.Fatal(err)
	}
	if f.bal, err = haproxy.New(haproxy.Config{Socket: stats, Backend: "app", Servers: names}); err != nil {
		t.Fatal(err)
	}
	f.front = "http://" + front
	f.lbYAML = fmt.Sprintf("{ driver: haproxy, socket: %q, backend: app, check_inter: 100ms }", stats)
	f.hostYAML = func(i int) string { return fmt.Sprintf("server: web%d", i+1) }
	return h
}

// TestDeployThroughHAProxy runs the drivers' rolling test through a real
// HAProxy in master-worker mode, reloaded while a host is detached: the
// reload must not put the host back in rotation.
func TestDeployThroughHAProxy(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	h := startHAProxyFor(t, f)
	rt, stateFile, master := h.rt, h.stateFile, h.master

	// While v2 is deployed: once a server is in maintenance (detached and
	// drained), save the state and reload, then check the new worker
	// still has it in maintenance.
	reloadMidDeploy := func() {
		var detached string
		proctest.Eventually(t, 2*time.Minute, "a server in maintenance during the deploy", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ss, err := rt.Servers(ctx, "app")
			if err != nil {
				return false
			}
			for _, s := range ss {
				if strings.HasPrefix(s.Status, "MAINT") {
					detached = s.Name
					return true
				}
			}
			return false
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		state, err := rt.Command(ctx, "show servers state")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stateFile, []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
		before := workerPid(t, rt)
		master.Signal(syscall.SIGUSR2)
		proctest.Eventually(t, 20*time.Second, "a new HAProxy worker after the reload", func() bool {
			return workerPid(t, rt) != before
		})
		ss, err := rt.Servers(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			if s.Name == detached && !s.Detached {
				t.Errorf("the reload put %s back in rotation (%s): the server-state-file was not applied", detached, s.Status)
			}
		}
		t.Logf("reloaded HAProxy with %s in maintenance", detached)
	}
	rollingThrough(t, f, reloadMidDeploy)
}

// workerPid is the pid of the HAProxy worker answering the Runtime API.
func workerPid(t *testing.T, rt *haproxy.Runtime) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := rt.Command(ctx, "show info")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "Pid: "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/haproxy"
	"github.com/zerodown/zerodown/internal/proctest"
)

const haproxyFleetCfg = `global
    stats socket ipv4@%s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend web
    bind %s
    default_backend app
backend app
    option httpchk GET /healthz
%s`

// TestDeployThroughHAProxy runs rolling deploys with the haproxy driver
// against a real HAProxy in front of three agents: a first deploy, then
// v2 under GET and slow-POST load with no failed request, every host on
// v2 and UP in HAProxy at the end.
func TestDeployThroughHAProxy(t *testing.T) {
	t.Parallel()
	haproxyBin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	dir := t.TempDir()
	var agents []*agentFixture
	var servers strings.Builder
	for i := 0; i < 3; i++ {
		a := startAgent(t, true)
		agents = append(agents, a)
		fmt.Fprintf(&servers, "    server web%d 127.0.0.1:%d check inter 100ms rise 2 fall 2\n", i+1, a.port)
	}
	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, haproxyFleetCfg, stats, front, servers.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", haproxyBin, "-f", cfgPath, "-db")
	proctest.Eventually(t, 10*time.Second, "haproxy's stats socket", func() bool {
		c, err := net.DialTimeout("tcp", stats, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	bal, err := haproxy.New(haproxy.Config{Socket: stats, Backend: "app"})
	if err != nil {
		t.Fatal(err)
	}

	var hosts strings.Builder
	for i, a := range agents {
		fmt.Fprintf(&hosts, "      - { name: staging-%d, agent: %q, target: \"127.0.0.1:%d\", token_file: %q }\n",
			i+1, a.url, a.port, filepath.Join(a.root, "agent.token"))
	}
	cfg := fmt.Sprintf(`app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:${PORT}", "--name", "e2e"]
  health: { path: /healthz, interval: 50ms, timeout: 3s }
  stop: { signal: SIGTERM, timeout: 10s }
state: %s
environments:
  staging:
    lb: { driver: haproxy, socket: %q, backend: app }
    hosts:
%s    strategy:
      rolling: { min_healthy: 1, drain_timeout: 30s, health_timeout: 20s }
`, filepath.Join(dir, "state.db"), stats, hosts.String())
	cfgFile := filepath.Join(dir, "zerodown.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	artifact := helloTarGz(t)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin.zerodown, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return string(out), ee.ExitCode()
			}
			t.Fatal(err)
		}
		return string(out), 0
	}
	onVersion := func(version string) {
		t.Helper()
		for i, a := range agents {
			if v, err := appVersion(a.app); err != nil || v != version {
				t.Fatalf("staging-%d answers %q (%v), want %s", i+1, v, err, version)
			}
		}
		proctest.Eventually(t, 10*time.Second, "every server UP in HAProxy", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ts, err := bal.Targets(ctx)
			if err != nil || len(ts) != len(agents) {
				return false
			}
			for _, tg := range ts {
				if tg.State != lb.StateHealthy {
					return false
				}
			}
			return true
		})
	}

	if out, code := run("deploy", "staging", "--version", "v1", "--artifact", artifact, "-c", cfgFile, "-o", "log"); code != 0 {
		t.Fatalf("first deploy through HAProxy: exit %d\n%s", code, out)
	}
	onVersion("v1")

	url := "http://" + front
	l := startLoad(url, 100, 20000, 3*time.Minute)
	posts := startSlowPosts(url, 3, 3*time.Minute)
	out, code := run("deploy", "staging", "--version", "v2", "--artifact", artifact, "-c", cfgFile, "-o", "log")
	l.finish()
	postReport := posts.finish()
	if code != 0 {
		t.Fatalf("deploy v2 through HAProxy: exit %d\n%s", code, out)
	}
	onVersion("v2")
	if l.failed.Load() > 0 || l.ok.Load() == 0 || posts.failed.Load() > 0 || posts.ok.Load() == 0 {
		t.Fatalf("requests through HAProxy during the deploy: GET %s; POST %s\n%s", l.report(), postReport, out)
	}
	t.Logf("GET %d ok; POST %s", l.ok.Load(), postReport)
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb/lbtest"
	"github.com/zerodown/zerodown/internal/lb/nginx"
	"github.com/zerodown/zerodown/internal/proctest"
)

// startNginxFor starts a real nginx in front of f's agents and points f's
// driver at it.
func startNginxFor(t *testing.T, f *driverFleet) {
	t.Helper()
	bin := proctest.NeedProgram(t, "nginx", "/usr/sbin/nginx")
	dir := filepath.Join(f.dir, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	front := proctest.FreeAddr(t)
	conf := filepath.Join(dir, "nginx.conf")
	// No client keep-alive: at a reload nginx closes its old workers' idle
	// keep-alive connections, and a request a client sends on one at that
	// instant is lost — a POST for good (docs/drivers.md). nginx has no
	// setting that answers it instead.
	if err := os.WriteFile(conf, []byte(lbtest.NginxConf(dir, front, "worker_shutdown_timeout 10s;", "keepalive_timeout 0;")), 0o644); err != nil {
		t.Fatal(err)
	}
	var up strings.Builder
	up.WriteString("upstream app {\n")
	var targets []string
	for i := range f.agents {
		fmt.Fprintf(&up, "    server %s;\n", f.target(i))
		targets = append(targets, f.target(i))
	}
	up.WriteString("}\n")
	upstream := filepath.Join(dir, "upstream.conf")
	if err := os.WriteFile(upstream, []byte(up.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")}
	proctest.Start(t, "nginx", bin, append(base[1:], "-g", "daemon off;")...)
	f.front = "http://" + front
	// No app runs before the first deploy: nginx is up when it accepts.
	proctest.WaitListening(t, front, 10*time.Second)
	cfg := nginx.Config{UpstreamFile: upstream, Upstream: "app", PidFile: filepath.Join(dir, "nginx.pid"),
		Test: append(append([]string{}, base...), "-t"), Reload: append(append([]string{}, base...), "-s", "reload"),
		Targets: targets, HealthPath: "/healthz"}
	var err error
	if f.bal, err = nginx.New(cfg); err != nil {
		t.Fatal(err)
	}
	f.lbYAML = fmt.Sprintf("{ driver: nginx, upstream_file: %q, upstream: app, pid_file: %q, test: %s, reload: %s }",
		upstream, cfg.PidFile, yamlList(cfg.Test), yamlList(cfg.Reload))
}

// yamlList writes argv as a YAML flow sequence.
func yamlList(argv []string) string {
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// TestDeployThroughNginx runs the drivers' rolling test through a real
// nginx: open-source nginx checks no health and reports no state, so
// zerodown checks the apps itself and counts a drain done when the workers
// of the configuration before the reload have exited.
func TestDeployThroughNginx(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startNginxFor(t, f)
	rollingThrough(t, f, nil)
}

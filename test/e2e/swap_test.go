package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// swapHost is one agent with two slots behind a balancer.
type swapHost struct {
	agent         *agentFixture
	slotA, slotB  string // target and swap_target
	front, lbYAML string
	hostExtra     string
	dir           string
}

func startSwapAgent(t *testing.T) *swapHost {
	swapPort := proctest.FreePort(t)
	a := startAgentWith(t, true, fmt.Sprintf("swap_port: %d\n", swapPort))
	return &swapHost{agent: a, slotA: fmt.Sprintf("127.0.0.1:%d", a.port), slotB: fmt.Sprintf("127.0.0.1:%d", swapPort), dir: t.TempDir()}
}

// config writes zerodown.yaml for the one host; strategy "" leaves the
// default (swap, for one host with a swap_target).
func (s *swapHost) config(t *testing.T, name, strategy string, extraArgs ...string) string {
	t.Helper()
	cfg := fmt.Sprintf(appYAML, appArgs(extraArgs...), filepath.Join(s.dir, "state.db")) + fmt.Sprintf(`environments:
  staging:
    lb: %s
    hosts:
      - { name: web-1, agent: %q, target: %q, swap_target: %q, token_file: %q%s }
%s`, s.lbYAML, s.agent.url, s.slotA, s.slotB, filepath.Join(s.agent.root, "agent.token"), s.hostExtra, strategy)
	p := filepath.Join(s.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *swapHost) serves(t *testing.T, version string) {
	t.Helper()
	for i := range 10 {
		if v, err := appVersion(s.front); err != nil || v != version {
			t.Fatalf("request %d through the load balancer: %q (%v), want %s", i, v, err, version)
		}
	}
}

// swapThrough is the single-host test: v1 from nothing; v2 under GET and
// slow-POST load with no failed request, the release moving to the other
// slot and the old one stopped; a rollback of that run, as clean; a
// release that fails its health check in the idle slot, which never
// serves and leaves the running one untouched.
func swapThrough(t *testing.T, s *swapHost) {
	cfg := s.config(t, "zerodown.yaml", "")
	art := helloTarGz(t)
	out, err := exec.Command(bin.zerodown, "plan", "staging", "-c", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "{deploy: web-1, slot: idle}") || !strings.Contains(string(out), "{retire: web-1}") {
		t.Fatalf("zerodown plan (one host with a swap_target picks swap): %v\n%s", err, out)
	}
	if out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v1", "--artifact", art, "-c", cfg, "-o", "log"); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	s.serves(t, "v1")
	slotOf := func() int {
		st, err := s.agent.client.AgentStatus(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if st.Retiring != nil {
			t.Fatalf("after the run the agent still has %s retiring on port %d", st.Retiring.Version, st.Retiring.Port)
		}
		return st.Port
	}
	first := slotOf()

	for _, step := range []struct {
		name string
		args []string
		want string
	}{
		{"deploy v2", []string{"deploy", "staging", "--version", "v2", "--artifact", art}, "v2"},
		{"rollback of the v2 run", []string{"rollback", "staging"}, "v1"},
	} {
		l := startLoad(s.front, 100, 20000, 3*time.Minute)
		posts := startSlowPosts(s.front, 3, 3*time.Minute)
		log, code := zerodownWhile(t, nil, append(step.args, "-c", cfg, "-o", "log")...)
		l.finish()
		postReport := posts.finish()
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", step.name, code, log)
		}
		s.serves(t, step.want)
		if l.failed.Load() > 0 || l.ok.Load() == 0 || posts.failed.Load() > 0 || posts.ok.Load() == 0 {
			t.Fatalf("requests during %s on a fleet of one: GET/POST %s; slow POST %s\n%s", step.name, l.report(), postReport, log)
		}
		now := slotOf()
		if now == first {
			t.Fatalf("%s: the app is on port %d as before; a swap moves it to the other slot", step.name, now)
		}
		first = now
		t.Logf("%s: %d requests ok, slow POST %s; the app now on port %d", step.name, l.ok.Load(), postReport, now)
	}

	// A release that fails its health check in the idle slot: the run
	// fails, nothing served it, v1 keeps serving in its slot.
	bad := s.config(t, "bad.yaml", "", "--fail-health")
	l := startLoad(s.front, 100, 20000, 3*time.Minute)
	log, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v3", "--artifact", art, "-c", bad, "-o", "log")
	l.finish()
	if code == 0 || !strings.Contains(log, "idle slot") {
		t.Fatalf("a release failing its health check: exit %d\n%s", code, log)
	}
	s.serves(t, "v1")
	if l.failed.Load() > 0 {
		t.Fatalf("requests during the failed swap: %s\n%s", l.report(), log)
	}
	if slotOf() != first {
		t.Fatal("the failed swap moved the running release")
	}

	// validate warns about rolling on one host.
	rolling := s.config(t, "rolling.yaml", "    strategy: { rolling: { min_healthy: 0 } }\n")
	b, err := os.ReadFile(rolling)
	if err != nil {
		t.Fatal(err)
	}
	// One slot: rolling has no use for a swap_target.
	if err := os.WriteFile(rolling, []byte(strings.Replace(string(b), fmt.Sprintf(", swap_target: %q", s.slotB), "", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin.zerodown, "validate", "-c", rolling, "--skip-token-files").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "a rolling deploy of a single host") {
		t.Fatalf("validate of rolling on one host: %v\n%s", err, out)
	}
}

// TestSwapSingleHostBuiltin: a fleet of one behind zerodown lb.
func TestSwapSingleHostBuiltin(t *testing.T) {
	t.Parallel()
	s := startSwapAgent(t)
	l := startLB(t, s.dir, fmt.Sprintf("%q", s.slotA))
	s.front = l.url
	s.lbYAML = fmt.Sprintf("{ driver: builtin, admin: %q, pool: hello, token_file: %q }", l.admin, filepath.Join(s.dir, "admin.token"))
	swapThrough(t, s)
}

// TestSwapSingleHostHAProxy: a fleet of one behind HAProxy, whose backend
// has a server for each slot.
func TestSwapSingleHostHAProxy(t *testing.T) {
	t.Parallel()
	haproxyBin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	s := startSwapAgent(t)
	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := haproxyHead(stats) + fmt.Sprintf(`frontend web
    bind %s
    option idle-close-on-response
    default_backend app
backend app
    option httpchk GET /healthz
    server web1 %s check inter 100ms rise 2 fall 2
    server web1b %s check inter 100ms rise 2 fall 2
`, front, s.slotA, s.slotB)
	cfgPath := filepath.Join(s.dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", haproxyBin, "-W", "-db", "-f", cfgPath)
	proctest.WaitListening(t, stats, 10*time.Second)
	s.front = "http://" + front
	s.lbYAML = fmt.Sprintf("{ driver: haproxy, socket: %q, backend: app, check_inter: 100ms }", stats)
	s.hostExtra = ", server: web1"
	swapThrough(t, s)
}

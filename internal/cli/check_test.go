package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/lb/builtin"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/proxy"
)

const (
	checkLBToken    = "lb-admin-token-for-check"
	checkAgentToken = "agent-token-for-check-0123456789"
)

// checkFleet is an environment on loopback: a real zerodown lb whose pool
// hello has the targets of web-1 and web-2, a real agent on web-1 (no
// release yet), and an agent API served by a handler on web-2 that runs v2
// (previous v1), healthy.
type checkFleet struct {
	dir              string // holds zerodown.yaml and the token files
	admin            string
	agent1, agent2   string
	target1, target2 string
	// web2 answers as web-2's agent; a test may replace it (setWeb2).
	web2 atomic.Pointer[http.HandlerFunc]
}

// setWeb2 makes h web-2's agent until the test ends.
func (f *checkFleet) setWeb2(t *testing.T, h http.HandlerFunc) {
	old := f.web2.Swap(&h)
	t.Cleanup(func() { f.web2.Store(old) })
}

func newCheckFleet(t *testing.T) *checkFleet {
	t.Helper()
	f := &checkFleet{dir: t.TempDir()}
	for name, content := range map[string]string{
		"lb.token":          checkLBToken + "\n",
		"agents.token":      checkAgentToken + "\n",
		"wrong.token":       "not-the-token-0123456789\n",
		"secrets/lb.token":  checkLBToken + "\n",
		"secrets/web.token": checkAgentToken + "\n",
	} {
		p := filepath.Join(f.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The apps behind the targets.
	app := func() string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	f.target1, f.target2 = app(), app()

	// The load balancer, from an lb.yaml as a user writes it. The file
	// wants real ports; the listeners then take free ones.
	lbDir := t.TempDir()
	lbPath := filepath.Join(lbDir, "lb.yaml")
	lbCfg, err := config.ParseLB(lbPath, []byte(fmt.Sprintf(`listeners: [{name: web, address: "127.0.0.1:8080", routes: [{pool: hello}]}]
admin: {address: "127.0.0.1:9100", token: %s}
pools:
  hello:
    targets: [%q, %q]
    health: {path: /healthz, interval: 200ms, timeout: 150ms, healthy_threshold: 1, unhealthy_threshold: 5}
`, checkLBToken, f.target1, f.target2)))
	if err != nil {
		t.Fatal(err)
	}
	lbCfg.Listeners[0].Address, lbCfg.Admin.Address = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := proxy.New(lbCfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	f.admin = "http://" + srv.AdminAddr()
	// Attach with a wait returns once the balancer has seen the target
	// healthy: the balancer itself does the waiting.
	cl, err := builtin.New(builtin.Config{Admin: f.admin, Token: checkLBToken})
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{f.target1, f.target2} {
		if _, err := cl.Attach(context.Background(), "hello", builtin.AttachRequest{Target: target, Wait: true, Timeout: "10s"}); err != nil {
			t.Fatal(err)
		}
	}

	// web-1: a real agent.
	agentCfg, err := config.ParseAgent(filepath.Join(lbDir, "agent.yaml"), fmt.Appendf(nil,
		"listen: 127.0.0.1:7101\ntoken: %s\nroot: %s\nport: %d\n", checkAgentToken, t.TempDir(), proctest.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	agentCfg.Listen = "127.0.0.1:0"
	a, err := agent.New(agentCfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	f.agent1 = "http://" + a.Addr()

	// web-2: the agent API as docs/agent.md describes it.
	web2 := agentStatusHandler(web2Status)
	f.web2.Store(&web2)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*f.web2.Load())(w, r) }))
	t.Cleanup(s.Close)
	f.agent2 = s.URL
	return f
}

// web2Status is what web-2's agent answers unless a test changes it.
const web2Status = `{"version":"v2","previous":"v1","port":8102,"state":"running","pid":4242,"healthy":true,"restarts":0,"adopted":false,"activation":null,"releases":[]}`

// agentStatusHandler answers GET /v1/status with status after checking the
// token, as the agent does.
func agentStatusHandler(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer "+checkAgentToken {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"missing or wrong bearer token","code":"unauthorized"}`))
			return
		}
		if r.URL.Path != "/v1/status" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"not found","code":"not_found"}`))
			return
		}
		_, _ = w.Write([]byte(status))
	}
}

// fleetConfig is what zerodown.yaml says about the fleet; tests change it.
type fleetConfig struct {
	lbTokenFile      string
	agent1, agent2   string
	web1TokenFile    string
	target1, target2 string
	drainTimeout     string
}

func (f *checkFleet) config() fleetConfig {
	return fleetConfig{lbTokenFile: "secrets/lb.token", agent1: f.agent1, agent2: f.agent2, target1: f.target1, target2: f.target2}
}

// write writes zerodown.yaml with relative token files: the tests run in
// the package's directory, so they are found only beside the file.
func (f *checkFleet) write(t *testing.T, c fleetConfig) string {
	t.Helper()
	web1Token := ""
	if c.web1TokenFile != "" {
		web1Token = ", token_file: " + c.web1TokenFile
	}
	strategy := ""
	if c.drainTimeout != "" {
		strategy = "\n    strategy: {rolling: {drain_timeout: " + c.drainTimeout + "}}"
	}
	return writeDeployConfig(t, f.dir, fmt.Sprintf(`app: {run: [./hello]}
environments:
  web:%s
    lb: {admin: %q, pool: hello, token_file: %s}
    agents: {token_file: agents.token}
    hosts:
      - {name: web-1, agent: %q, target: %q%s}
      - {name: web-2, agent: %q, target: %q}
`, strategy, f.admin, c.lbTokenFile, c.agent1, c.target1, web1Token, c.agent2, c.target2))
}

func runCheck(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(append([]string{"check"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheck(t *testing.T) {
	f := newCheckFleet(t)
	good := f.config()

	t.Run("all good", func(t *testing.T) {
		path := f.write(t, good)
		code, stdout, stderr := runCheck(t, "web", "-c", path)
		if code != ExitOK || stderr != "" {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"pool hello of zerodown lb at " + f.admin + "  builtin  yes        accepted",
			"drain          1m0s     1m0s        the load balancer's draining bound 30s",
			"health         1m0s     1m0s        zerodown.yaml (the load balancer gives no bound)",
			f.target1 + "  healthy",
			"web-1  " + f.agent1 + "  yes        accepted  -        -         no release  " + f.target1 + "  healthy",
			"web-2  " + f.agent2,
			"accepted  v2       v1        healthy     " + f.target2 + "  healthy",
			"ok: the load balancer and 2 agents answered and accepted their tokens",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout without %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("drain_timeout not above the deregistration delay", func(t *testing.T) {
		c := good
		c.drainTimeout = "30s"
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, c))
		want := "warning: drain_timeout 30s is not above the load balancer's draining bound 30s: a deploy waits 35s instead"
		if code != ExitOK || stderr != "" || !strings.Contains(stdout, want) {
			t.Fatalf("exit %d, want 0 with %q\nstdout:\n%s\nstderr:\n%s", code, want, stdout, stderr)
		}
		c.drainTimeout = "35s"
		if _, stdout, _ := runCheck(t, "web", "-c", f.write(t, c)); strings.Contains(stdout, "warning:") {
			t.Fatalf("warned with drain_timeout above the bound:\n%s", stdout)
		}
	})

	t.Run("json", func(t *testing.T) {
		path := f.write(t, good)
		code, stdout, stderr := runCheck(t, "web", "-c", path, "-o", "json")
		if code != ExitOK || stderr != "" {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		var rep struct {
			Environment  string `json:"environment"`
			OK           bool   `json:"ok"`
			LoadBalancer struct {
				Reachable     bool  `json:"reachable"`
				TokenAccepted *bool `json:"token_accepted"`
				Targets       []struct {
					Address, State, Host string
				} `json:"targets"`
			} `json:"load_balancer"`
			Hosts []struct {
				Name          string  `json:"name"`
				Reachable     bool    `json:"reachable"`
				TokenAccepted *bool   `json:"token_accepted"`
				Version       *string `json:"version"`
				Previous      *string `json:"previous"`
				Healthy       *bool   `json:"healthy"`
				InBalancer    *bool   `json:"in_balancer"`
				TargetState   *string `json:"target_state"`
			} `json:"hosts"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		lbr := rep.LoadBalancer
		if rep.Environment != "web" || !rep.OK || len(rep.Problems) != 0 || !lbr.Reachable || lbr.TokenAccepted == nil || !*lbr.TokenAccepted ||
			len(lbr.Targets) != 2 || len(rep.Hosts) != 2 {
			t.Fatalf("report:\n%s", stdout)
		}
		for _, tg := range lbr.Targets {
			if tg.State != "healthy" || (tg.Host != "web-1" || tg.Address != f.target1) && (tg.Host != "web-2" || tg.Address != f.target2) {
				t.Errorf("target %+v", tg)
			}
		}
		web2 := rep.Hosts[1]
		if web2.Name != "web-2" || !web2.Reachable || !*web2.TokenAccepted || *web2.Version != "v2" || *web2.Previous != "v1" ||
			!*web2.Healthy || !*web2.InBalancer || *web2.TargetState != "healthy" {
			t.Errorf("web-2:\n%s", stdout)
		}
		if web1 := rep.Hosts[0]; web1.Name != "web-1" || *web1.Version != "" || *web1.Healthy {
			t.Errorf("web-1:\n%s", stdout)
		}
	})

	t.Run("an agent down", func(t *testing.T) {
		c := good
		c.agent2 = "http://" + proctest.FreeAddr(t)
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, c), "--timeout", "1s")
		want := "zerodown: check web: 1 problem:\n  web-2: agent " + c.agent2 + " unreachable: dial tcp "
		if code != ExitFailed || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "connection refused") {
			t.Fatalf("exit %d\nstderr %q\nwant it to start with %q", code, stderr, want)
		}
		if !strings.Contains(stdout, "web-2  "+c.agent2+"  no         -") || strings.Contains(stdout, "ok:") {
			t.Errorf("stdout:\n%s", stdout)
		}
	})

	t.Run("an agent that does not answer", func(t *testing.T) {
		f.setWeb2(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		code, _, stderr := runCheck(t, "web", "-c", f.write(t, good), "--timeout", "300ms")
		if code != ExitFailed || !strings.Contains(stderr, "web-2: agent "+f.agent2+" unreachable: no answer within 300ms") {
			t.Fatalf("exit %d\nstderr %q", code, stderr)
		}
	})

	t.Run("an unhealthy app", func(t *testing.T) {
		f.setWeb2(t, agentStatusHandler(`{"version":"v3","previous":"v2","state":"running","healthy":false,"health_error":"GET /healthz: 503"}`))
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, good))
		if code != ExitFailed || !strings.Contains(stderr, "web-2: app v3 is not healthy: GET /healthz: 503") || !strings.Contains(stdout, "v3       v2        unhealthy") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr %q", code, stdout, stderr)
		}
	})

	t.Run("a target the balancer does not know", func(t *testing.T) {
		c := good
		c.target2 = proctest.FreeAddr(t)
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, c))
		if code != ExitOK || !strings.Contains(stdout, c.target2+"  not in pool") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr %q", code, stdout, stderr)
		}
	})

	t.Run("a wrong agent token", func(t *testing.T) {
		c := good
		c.web1TokenFile = "wrong.token"
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, c))
		want := "zerodown: check web: 1 problem:\n  web-1: agent " + f.agent1 + ": token refused (401: missing or wrong bearer token)\n"
		if code != ExitBadInput || stderr != want {
			t.Fatalf("exit %d\nstderr %q\nwant   %q", code, stderr, want)
		}
		if !strings.Contains(stdout, "web-1  "+f.agent1+"  yes        refused") {
			t.Errorf("stdout:\n%s", stdout)
		}
	})

	t.Run("a wrong load balancer token", func(t *testing.T) {
		c := good
		c.lbTokenFile = "wrong.token"
		code, stdout, stderr := runCheck(t, "web", "-c", f.write(t, c))
		want := "zerodown: check web: 1 problem:\n  load balancer (pool hello of zerodown lb at " + f.admin + "): token refused (401: missing or wrong bearer token)\n"
		if code != ExitBadInput || stderr != want {
			t.Fatalf("exit %d\nstderr %q\nwant   %q", code, stderr, want)
		}
		// The agents are still checked; the targets' states are unknown.
		if !strings.Contains(stdout, "yes        refused") || !strings.Contains(stdout, "accepted  v2       v1        healthy     "+f.target2+"  -") {
			t.Errorf("stdout:\n%s", stdout)
		}
	})

	t.Run("a refused token outweighs a host down", func(t *testing.T) {
		c := good
		c.lbTokenFile = "wrong.token"
		c.agent2 = "http://" + proctest.FreeAddr(t)
		code, _, stderr := runCheck(t, "web", "-c", f.write(t, c), "--timeout", "1s")
		if code != ExitBadInput || !strings.Contains(stderr, "2 problems") || !strings.Contains(stderr, "token refused") || !strings.Contains(stderr, "web-2") {
			t.Fatalf("exit %d\nstderr %q", code, stderr)
		}
	})
}

func TestCheckBadInput(t *testing.T) {
	dir := t.TempDir()
	cfg := writeDeployConfig(t, dir, `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token_file: lb.token}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101', token: some-token}]
`)
	noToken := filepath.Join(dir, "no-token.yaml")
	if err := os.WriteFile(noToken, []byte(`app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token: lb-token}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no environment", []string{"-c", cfg}, "zerodown check wants ENV, got 0 argument(s)"},
		{"unknown environment", []string{"prod", "-c", cfg}, `no environment "prod" (environments: web)`},
		{"missing config", []string{"web", "-c", filepath.Join(dir, "nope.yaml")}, "read deploy config"},
		{"token file missing", []string{"web", "-c", cfg},
			cfg + ":4:55: environments.web.lb.token_file: " + filepath.Join(abs, "lb.token") + " does not exist\nzerodown: " + cfg + ": 1 problem\n"},
		{"no agent token", []string{"web", "-c", noToken}, "host web-1: agent token is empty"},
		{"bad output", []string{"web", "-c", cfg, "-o", "yaml"}, "--output must be text or json"},
		{"bad timeout", []string{"web", "-c", cfg, "--timeout", "0s"}, "--timeout must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCheck(t, tt.args...)
			if code != ExitBadInput || stdout != "" || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d\nstdout %q\nstderr %q\nwant it to contain %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestCheckHelp(t *testing.T) {
	code, stdout, _ := runCheck(t, "--help")
	for _, want := range []string{"zerodown check ENV", "--timeout duration", "(default 5s)", "token refused", "not in pool", "--output json"} {
		if code != ExitOK || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, help without %q:\n%s", code, want, stdout)
		}
	}
}

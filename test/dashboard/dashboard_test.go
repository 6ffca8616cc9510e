package dashboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zerodown/zerodown/internal/demo"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/server/api"
)

// gatedPipeline is a hand-written pipeline for the sandbox's staging: a
// manual approval first, then each host in turn, as the rolling strategy
// does it.
const gatedPipeline = `pipelines:
  gated:
    environment: staging
    stages:
      - name: approval
        jobs: [ { name: gate, tasks: [ { approve: { message: "Ship it to staging?" } } ] } ]
      - name: upload
        jobs: [ { name: upload-1, tasks: [ { upload: staging-1 } ] }, { name: upload-2, tasks: [ { upload: staging-2 } ] } ]
      - name: update-staging-1
        jobs: [ { name: staging-1, tasks: [ { detach: staging-1 }, { wait-drained: staging-1 }, { deploy: staging-1 }, { attach: staging-1 }, { wait-healthy: staging-1 } ] } ]
      - name: update-staging-2
        jobs: [ { name: staging-2, tasks: [ { detach: staging-2 }, { wait-drained: staging-2 }, { deploy: staging-2 }, { attach: staging-2 }, { wait-healthy: staging-2 } ] } ]
`

// fleetServer is a `zerodown server` process over a sandbox fleet, with a
// token per role the test uses.
type fleetServer struct {
	url      string
	deployer string
	approver string
	proc     *proctest.Proc
}

// startServer writes the server's config beside the sandbox's, makes its
// tokens with `zerodown server token create`, starts it and waits until
// it answers.
func startServer(t *testing.T, sb *demo.Sandbox) *fleetServer {
	t.Helper()
	dir := t.TempDir()
	deployCfg, err := os.ReadFile(sb.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "zerodown.yaml"), append(deployCfg, gatedPipeline...), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	srvCfg := filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(srvCfg, []byte(fmt.Sprintf("listen: %s\ndeploy: zerodown.yaml\ndata: data\nlease: 5s\nshutdown_timeout: 5s\n", addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &fleetServer{url: "http://" + addr}
	for _, tok := range []struct {
		role string
		into *string
	}{{"deployer", &s.deployer}, {"approver", &s.approver}} {
		var out, errOut bytes.Buffer
		cmd := exec.Command(bin.zerodown, "server", "token", "create", "--config", srvCfg, "--name", "test-"+tok.role, "--role", tok.role)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("zerodown server token create --role %s: %v\n%s", tok.role, err, errOut.String())
		}
		*tok.into = strings.TrimSpace(out.String())
	}
	s.proc = proctest.Start(t, "zerodown server", bin.zerodown, "server", "--config", srvCfg)
	c := &http.Client{Timeout: time.Second}
	proctest.Eventually(t, 30*time.Second, "zerodown server to answer /healthz on "+addr, func() bool {
		resp, err := c.Get(s.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

// load is the test's own traffic through the load balancer, besides the
// verifier's: GETs, and POSTs to the sample app's slow path whose echoed
// body is checked. It is bounded in requests and in time.
type load struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
	stop         chan struct{}
	wg           sync.WaitGroup
}

const (
	loadMaxRequests = 20000
	loadMaxTime     = 2 * time.Minute
)

func startLoad(lb string) *load {
	l := &load{stop: make(chan struct{})}
	c := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(loadMaxTime)
	fire := func(method string, every time.Duration, req func(n int64) (*http.Request, string)) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			var inflight sync.WaitGroup
			defer inflight.Wait()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				n := l.sent.Add(1)
				if n > loadMaxRequests || time.Now().After(deadline) {
					return
				}
				r, want := req(n)
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					if err := check(c, r, want); err != nil {
						l.failed.Add(1)
						l.mu.Lock()
						if len(l.errs) < 10 {
							l.errs = append(l.errs, fmt.Sprintf("%s %s: %v", method, r.URL, err))
						}
						l.mu.Unlock()
					}
				}()
			}
		}()
	}
	fire("GET", 20*time.Millisecond, func(int64) (*http.Request, string) {
		r, _ := http.NewRequest("GET", lb+"/", nil)
		return r, "hello from"
	})
	fire("POST", 100*time.Millisecond, func(n int64) (*http.Request, string) {
		body := fmt.Sprintf("slow post %d", n)
		r, _ := http.NewRequest("POST", lb+"/slow?sleep=400ms", strings.NewReader(body))
		r.Header.Set("Content-Type", "text/plain")
		return r, body
	})
	return l
}

func check(c *http.Client, r *http.Request, want string) error {
	resp, err := c.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), want) {
		return fmt.Errorf("answer %.200q lacks %q", b, want)
	}
	return nil
}

// end stops the load and returns how many requests it sent.
func (l *load) end(t *testing.T) int64 {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	sent := min(l.sent.Load(), loadMaxRequests)
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d of %d requests of the test's own load failed during the deploys: %s", f, sent, strings.Join(l.errs, "; "))
	}
	return sent
}

// deploy starts a run through the API.
func deploy(t *testing.T, ctx context.Context, cl *api.Client, sha, version, pipeline string) string {
	t.Helper()
	res, err := cl.CreateRun(ctx, api.CreateRun{Env: "staging", Version: version, SHA256: sha, Pipeline: pipeline})
	if err != nil {
		t.Fatalf("start the run of %s: %v", version, err)
	}
	if res.Run == nil {
		t.Fatalf("start the run of %s: nothing to do", version)
	}
	return res.Run.ID
}

// follow waits for a run's end through the API's event stream.
func follow(t *testing.T, ctx context.Context, cl *api.Client, id string) api.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	end, err := cl.Follow(ctx, id, 0, func(api.Event) {})
	if err != nil {
		t.Fatalf("follow run %s to its end: %v", id, err)
	}
	return end
}

// JavaScript the test reads pages with.
const (
	hostVersions = `[...document.querySelectorAll('tr[data-host]')].map(r => r.dataset.host + '=' + r.querySelector('.version').textContent).join(' ')`
	runState     = `(() => {
		const st = document.getElementById('run-status');
		const stages = [...document.querySelectorAll('#pipeline .stage')].map(s => s.dataset.stage + ':' + s.className.replace('stage ', '') + ':' + s.querySelector('.state .label').textContent);
		return 'status ' + (st ? st.dataset.status + ' "' + st.textContent.trim() + '"' : 'none') + '; stages ' + stages.join(', ') + '; ' + document.querySelectorAll('#events li').length + ' events';
	})()`
	// allPassed: the run says it succeeded, in words, and every stage is
	// green and says passed.
	allPassed = `(() => {
		const st = document.getElementById('run-status');
		const stages = [...document.querySelectorAll('#pipeline .stage')];
		return st.dataset.status === 'succeeded' && /succeeded/.test(st.textContent) && stages.length > 0 &&
			stages.every(s => s.classList.contains('st-passed') && s.querySelector('.state .label').textContent === 'passed' &&
				getComputedStyle(s).borderTopColor === 'rgb(26, 127, 55)');
	})()`
	// markPage leaves a mark that a reload would wipe, and counts the
	// events the page takes from its stream.
	markPage = `window.zdMark = 'live'; window.zdEvents = 0; document.addEventListener('zerodown:event', () => window.zdEvents++); true`
)

// TestDashboardLive deploys a real fleet through zerodown server while
// Chromium shows the dashboard: signed in through the form, the
// environments page turns each host to the new version by itself, the run
// page turns its stages green and ends "succeeded" from its event stream,
// without a reload; a gated run waits on its Approve button, which the
// test presses from the keyboard. The test's own GETs and slow POSTs
// through the load balancer all succeed. Screenshots are kept.
func TestDashboardLive(t *testing.T) {
	browser := startBrowser(t, t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sb, err := demo.Start(ctx, demo.Options{Hosts: 2, Rate: 50, Zerodown: bin.zerodown, App: demo.HelloApp(bin.hello), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	srv := startServer(t, sb)
	cl, err := api.NewClient(srv.url, srv.deployer)
	if err != nil {
		t.Fatal(err)
	}
	sha, err := cl.Upload(ctx, sb.Artifact)
	if err != nil {
		t.Fatal(err)
	}
	if end := follow(t, ctx, cl, deploy(t, ctx, cl, sha, "v1", "")); end.Status != "succeeded" {
		t.Fatalf("the first deploy, v1: %s (%s)", end.Status, end.Error)
	}

	// Sign in as a person would: the page asks, the token is typed, Enter.
	overview := newTab(t, browser)
	step := func(tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(tab, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step(overview, "open the dashboard and find the sign-in form",
		chromedp.Navigate(srv.url+"/"), chromedp.WaitVisible("#token"))
	step(overview, "type the token and press Enter",
		chromedp.SendKeys("#token", srv.approver), chromedp.KeyEvent("\r"), chromedp.WaitVisible("#env-staging"))
	waitFor(t, overview, 20*time.Second, "the environments page to show both hosts on v1",
		`document.querySelectorAll('tr[data-host]').length === 2 && [...document.querySelectorAll('tr[data-host] .version')].every(v => v.textContent === 'v1')`, hostVersions)
	step(overview, "mark the environments page", chromedp.Evaluate[chromedp.Void](markPage))

	// v2 under load: both pages follow it live.
	ld := startLoad(sb.LB)
	id := deploy(t, ctx, cl, sha, "v2", "")
	runTab := newTab(t, browser)
	step(runTab, "open the run page", chromedp.Navigate(srv.url+"/runs/"+id), chromedp.WaitVisible("#pipeline"))
	status, err := chromedp.Run(runTab, chromedp.Evaluate[string](`document.getElementById('run-status').dataset.status`))
	if err != nil {
		t.Fatal(err)
	}
	// On a machine busy enough, the run can end before its page has
	// loaded; the gated run below is watched live for sure.
	v2Live := status == "running"
	if !v2Live {
		t.Logf("the run of v2 had ended (%s) when its page loaded: its page is checked, not its liveness", status)
	}
	step(runTab, "mark the run page", chromedp.Evaluate[chromedp.Void](markPage))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The environments tab is in the background meanwhile: its
		// polling goes on there.
		waitFor(t, overview, 60*time.Second, "each host's version on the environments page to turn to v2 by itself",
			`window.zdMark === 'live' && [...document.querySelectorAll('tr[data-host] .version')].every(v => v.textContent === 'v2')`, hostVersions)
	}()
	waitFor(t, runTab, 60*time.Second, "the run page to show every stage passed and the run succeeded, live", allPassed, runState)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	facts, err := chromedp.Run(runTab, chromedp.Evaluate[struct {
		Mark    string
		Events  int
		Samples string
		Points  int
		Report  bool
	}](`({Mark: window.zdMark, Events: window.zdEvents, Samples: document.getElementById('verify-sum').textContent,
		Points: (document.querySelector('#chart-rate polyline') || {getAttribute: () => ''}).getAttribute('points').split(' ').filter(Boolean).length,
		Report: !!document.querySelector('#run-summary a[href$="/report"]')})`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run page of %s: %d events taken live; %s; %d points on the rate chart", id, facts.Events, facts.Samples, facts.Points)
	if v2Live && (facts.Mark != "live" || facts.Events == 0) {
		t.Errorf("the run page did not follow the run live: mark %q, %d events from the stream", facts.Mark, facts.Events)
	}
	if facts.Points == 0 || !strings.Contains(facts.Samples, " 0 failed") {
		t.Errorf("the verifier's charts: %d points, %q", facts.Points, facts.Samples)
	}
	if !facts.Report {
		t.Error("the ended run links no HTML report")
	}
	screenshot(t, runTab, "run-v2-succeeded")
	screenshot(t, overview, "environments-v2")

	// v3 waits for its approval; the button is pressed from the keyboard.
	id = deploy(t, ctx, cl, sha, "v3", "gated")
	step(runTab, "open the gated run's page", chromedp.Navigate(srv.url+"/runs/"+id), chromedp.WaitVisible("#pipeline"))
	waitFor(t, runTab, 30*time.Second, "the Approve button of the gated run",
		`!!document.getElementById('approve-btn') && document.querySelector('[data-stage="approval"] .state .label').textContent === 'awaiting approval'`, runState)
	screenshot(t, runTab, "run-v3-awaiting-approval")
	step(runTab, "mark the gated run's page", chromedp.Evaluate[chromedp.Void](markPage))
	step(runTab, "focus Approve and press Enter", chromedp.Focus("#approve-btn"), chromedp.KeyEvent("\r"))
	waitFor(t, runTab, 60*time.Second, "the gated run to pass every stage and succeed after the approval, live",
		`window.zdMark === 'live' && window.zdEvents > 0 && `+allPassed, runState)
	approved, err := chromedp.Run(runTab, chromedp.Evaluate[string](`document.getElementById('run-summary').textContent`))
	if err != nil || !strings.Contains(approved, "approval by test-approver") {
		t.Errorf("the summary does not say who approved: %q %v", approved, err)
	}
	screenshot(t, runTab, "run-v3-succeeded")
	waitFor(t, overview, 30*time.Second, "each host's version on the environments page to turn to v3",
		`[...document.querySelectorAll('tr[data-host] .version')].every(v => v.textContent === 'v3')`, hostVersions)

	sent := ld.end(t)
	if sent < 100 {
		t.Errorf("the test's own load sent only %d requests", sent)
	}
	t.Logf("the test's own load: %d requests (GETs and slow POSTs), none failed", sent)
	// The server saw the approval from the browser's session.
	if end := follow(t, ctx, cl, id); end.Status != "succeeded" {
		t.Errorf("the gated run ended %s", end.Status)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the test ran out of time")
	}
}

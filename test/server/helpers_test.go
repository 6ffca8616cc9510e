package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/demo"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/server/api"
)

// startFleet starts a loopback fleet of hosts behind `zerodown lb`, with a
// zerodown.yaml for its environment "staging", and stops it when t ends.
func startFleet(t testing.TB, hosts int) *demo.Sandbox {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sb, err := demo.Start(ctx, demo.Options{Hosts: hosts, Rate: 50, Zerodown: bin.zerodown, App: demo.HelloApp(bin.hello), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sb.Close()
		if t.Failed() {
			// The balancer's and the agents' own logs say what the hosts saw.
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("--- %s ---\n%s", filepath.Base(l), tail(string(b), 4000))
			}
		}
	})
	return sb
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// serverOpts are the settings of one replica's server.yaml.
type serverOpts struct {
	deploy    string // the zerodown.yaml
	data      string // the replica's own directory
	artifacts string // shared by replicas
	postgres  string // empty: SQLite under data
	lease     time.Duration
}

// writeServerConfig writes dir/server.yaml on a free loopback port and
// returns its path and the server's URL.
func writeServerConfig(t testing.TB, dir string, o serverOpts) (path, url string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\ndeploy: %q\ndata: %q\nartifacts: %q\nlease: %s\nshutdown_timeout: 10s\n",
		addr, o.deploy, o.data, o.artifacts, o.lease)
	if o.postgres != "" {
		// Replicas sign dashboard sessions with one key, beside the
		// artifacts they share.
		fmt.Fprintf(&b, "postgres: %q\nsession_key_file: %q\n", o.postgres, filepath.Join(o.artifacts, "..", "session.key"))
	}
	path = filepath.Join(dir, "server.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	return path, "http://" + addr
}

// createToken makes a token the way an operator does, with the binary on
// the server's journal, and returns its secret.
func createToken(t testing.TB, cfg, name, role string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.zerodown, "server", "token", "create", "--config", cfg, "--name", name, "--role", role)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("server token create %s: %v\n%s", name, err, stderr.String())
	}
	secret := strings.TrimSpace(string(out))
	if !strings.HasPrefix(secret, "zdt_") || strings.Contains(secret, "\n") {
		t.Fatalf("server token create printed %q, want the token alone", out)
	}
	return secret
}

// replica is one running `zerodown server`.
type replica struct {
	name, cfg, url string
	p              *proctest.Proc
}

// startServer starts `zerodown server --config cfg` and waits for its
// /healthz; the process is killed when t ends.
func startServer(t testing.TB, name, cfg, url string) *replica {
	t.Helper()
	r := &replica{name: name, cfg: cfg, url: url}
	r.p = proctest.Start(t, name, bin.zerodown, "server", "--config", cfg)
	t.Cleanup(func() {
		if t.Failed() {
			logVerifierErrors(t, cfg)
		}
	})
	c := &http.Client{Timeout: time.Second}
	proctest.Eventually(t, 30*time.Second, name+" to answer /healthz", func() bool {
		if r.p.Exited() {
			t.Fatalf("%s exited:\n%s", name, r.p.Output())
		}
		resp, err := c.Get(url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// ownsAs reports whether owner, as the journal names a run's or a lock's
// owner (store.ProcessOwner, which ends with the pid), is this replica.
func (r *replica) ownsAs(owner string) bool {
	return strings.HasSuffix(owner, " pid "+strconv.Itoa(r.p.Pid()))
}

// client is a token's client of a replica.
func client(t testing.TB, url, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var plain = &http.Client{Timeout: 30 * time.Second}

// getJSON reads path from a server with a token into out.
func getJSON(ctx context.Context, url, token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := plain.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	if s, ok := out.(*string); ok {
		*s = string(b)
		return nil
	}
	return json.Unmarshal(b, out)
}

// follow reads one SSE connection to a run's events after `after` (sent as
// Last-Event-ID), handing each event to fn in the order received. It
// returns the run the end event carries, or why the stream stopped first.
func follow(ctx context.Context, url, token, id string, after int64, fn func(api.Event)) (*api.Run, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/runs/"+id+"/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	// No client timeout: the stream lasts as long as the run; ctx bounds it.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("events of %s: %s: %s", id, resp.Status, b)
	}
	var end *api.Run
	err = api.ReadSSE(resp.Body, func(name, data string) error {
		if name == api.SSEEnd {
			end = new(api.Run)
			if err := json.Unmarshal([]byte(data), end); err != nil {
				return err
			}
			return io.EOF
		}
		var e api.Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event %q: %w", data, err)
		}
		fn(e)
		return nil
	})
	if end != nil {
		return end, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// waitHosts waits until every host of staging runs version and is healthy,
// in the eyes of the server (the agents and the balancer, asked now).
func waitHosts(t testing.TB, url, token, version string, n int) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("every host on %s and healthy", version), func() (bool, string) {
		var hs api.Hosts
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := getJSON(ctx, url, token, "/api/v1/environments/staging/hosts", &hs); err != nil {
			return false, err.Error()
		}
		good := 0
		for _, h := range hs.Hosts {
			if h.Version == version && h.Running && h.Healthy && h.LBState == "healthy" {
				good++
			}
		}
		return hs.Error == "" && len(hs.Hosts) == n && good == n, fmt.Sprintf("%+v", hs)
	})
}

// eventually polls cond until it holds, failing t after within with what
// cond last saw.
func eventually(t testing.TB, within time.Duration, what string, cond func() (ok bool, saw string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s; last saw: %s", within, what, saw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load is user traffic through the load balancer during deploys: GETs at
// a steady pace and slow POSTs, which keep requests in flight on every
// host so that each drain has something to wait for. A POST is never
// retried by a proxy, so a POST failure is one a user would see. Each
// worker stops by itself after loadMaxRequests or maxTime.
type load struct {
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	gets   atomic.Int64
	posts  atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	errs   []string // the first failures
}

const (
	loadMaxRequests = 50000
	getEvery        = 25 * time.Millisecond // 40 requests/s per worker at most
)

// startLoad starts getters GET workers and posters slow-POST workers
// against lbURL for at most maxTime; each POST asks the app to answer
// after postSleep.
func startLoad(t testing.TB, lbURL string, getters, posters int, postSleep, maxTime time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: getters + posters, IdleConnTimeout: 30 * time.Second}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	until := time.Now().Add(maxTime)
	for w := range getters + posters {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(getEvery)
			defer tick.Stop()
			for i := 0; i < loadMaxRequests && time.Now().Before(until); i++ {
				if w < getters {
					l.get(c, lbURL+"/")
				} else {
					l.post(c, fmt.Sprintf("%s/?sleep=%s", lbURL, postSleep), fmt.Sprintf("post %d-%d", w, i))
				}
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
	t.Cleanup(func() { l.finish(); tr.CloseIdleConnections() })
	return l
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+msg)
	}
}

func (l *load) get(c *http.Client, url string) {
	resp, err := c.Get(url)
	if err != nil {
		l.fail("GET: " + err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, []byte("hello from")) {
		l.fail(fmt.Sprintf("GET: %d %q %v", resp.StatusCode, tail(string(b), 200), err))
		return
	}
	l.gets.Add(1)
}

func (l *load) post(c *http.Client, url, body string) {
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		l.fail("POST: " + err.Error())
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != body {
		l.fail(fmt.Sprintf("POST %q: %d %q %v", body, resp.StatusCode, tail(string(b), 200), err))
		return
	}
	l.posts.Add(1)
}

// finish stops the load and waits for the requests in flight.
func (l *load) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// check stops the load and fails t unless every request succeeded and
// there were enough of them to mean something.
func (l *load) check(t testing.TB, minGets, minPosts int64) {
	t.Helper()
	l.finish()
	gets, posts, failed := l.gets.Load(), l.posts.Load(), l.failed.Load()
	t.Logf("load through the balancer: %d GETs and %d slow POSTs ok, %d failed", gets, posts, failed)
	if failed > 0 {
		l.mu.Lock()
		t.Errorf("%d requests failed through the balancer; the first:\n%s", failed, strings.Join(l.errs, "\n"))
		l.mu.Unlock()
	}
	if gets < minGets || posts < minPosts {
		t.Errorf("only %d GETs and %d POSTs went through; want at least %d and %d", gets, posts, minGets, minPosts)
	}
}

// clientEnv is this process's environment for the CLI as a server's
// client: ZERODOWN_SERVER and ZERODOWN_TOKEN as given (left out when
// empty), nothing of the kind inherited.
func clientEnv(server, token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZERODOWN_") {
			env = append(env, kv)
		}
	}
	if server != "" {
		env = append(env, "ZERODOWN_SERVER="+server)
	}
	if token != "" {
		env = append(env, "ZERODOWN_TOKEN="+token)
	}
	return env
}

// cliResult is how a run of the CLI ended.
type cliResult struct {
	stdout, stderr string
	code           int
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// zerodown runs the CLI to its end in an empty directory (no zerodown.yaml
// to fall back on) with env.
func zerodown(t testing.TB, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.zerodown, args...)
	cmd.Dir, cmd.Env = t.TempDir(), env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("zerodown %v: %v", args, err)
	}
	return cliResult{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode()}
}

// jsonLine is a line of `zerodown deploy -o json`: run_started carries the
// run as an object, run_finished its ID.
type jsonLine struct {
	Type     string          `json:"type"`
	Run      json.RawMessage `json:"run"`
	Status   string          `json:"status"`
	ExitCode int             `json:"exit_code"`
	Error    string          `json:"error"`
}

// jsonRun reads the lines of `-o json` in out and returns the run's ID
// (from run_started) and its run_finished line. Lines that are not JSON
// objects (the CLI's message on stderr, when out has both) are left to the
// caller.
func jsonRun(t testing.TB, out string) (id string, fin *jsonLine) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l jsonLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("-o json printed a line that is not JSON: %q", line)
		}
		switch l.Type {
		case "run_started":
			var s struct{ ID string }
			if err := json.Unmarshal(l.Run, &s); err != nil || s.ID == "" {
				t.Fatalf("run_started without the run's id: %q", line)
			}
			id = s.ID
		case "run_finished":
			fin = &l
		}
	}
	return id, fin
}

// logVerifierErrors logs what the load verifiers of the runs a server
// executed saw fail: their reports' error samples, beside the journal.
func logVerifierErrors(t testing.TB, cfgPath string) {
	cfg, err := config.LoadServer(cfgPath)
	if err != nil {
		return
	}
	reports, _ := filepath.Glob(filepath.Join(cfg.Data, "reports", "*.json"))
	for _, p := range reports {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var rep struct {
			Failed int64 `json:"failed"`
			Errors []struct {
				Outcome string  `json:"outcome"`
				T       float64 `json:"t"`
				Message string  `json:"message"`
			} `json:"errors"`
		}
		if json.Unmarshal(b, &rep) != nil || len(rep.Errors) == 0 {
			continue
		}
		t.Logf("--- %s: the verifier's failures ---", filepath.Base(p))
		for _, e := range rep.Errors {
			t.Logf("  at %.2fs: %s: %s", e.T, e.Outcome, e.Message)
		}
	}
}

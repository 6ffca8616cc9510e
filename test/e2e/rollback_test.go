package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// slowPosts is a client that is not the verifier: workers POST to an
// endpoint that takes 500 ms, as a user's checkout would, and count every
// answer that is not the echo of what they sent. A load balancer may retry
// a failed GET and hide it; a POST it never retries.
type slowPosts struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup
}

func startSlowPosts(url string, workers int, maxDuration time.Duration) *slowPosts {
	s := &slowPosts{stop: make(chan struct{})}
	client := &http.Client{Timeout: 15 * time.Second}
	deadline := time.Now().Add(maxDuration)
	for w := 0; w < workers; w++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
				select {
				case <-s.stop:
					return
				default:
				}
				body := fmt.Sprintf("order %d-%d", w, i)
				resp, err := client.Post(url+"/checkout?sleep=500ms", "text/plain", strings.NewReader(body))
				if err != nil {
					s.fail(fmt.Sprintf("POST %s: %v", body, err))
					continue
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(got) != body {
					s.fail(fmt.Sprintf("POST %s: %d %q %v", body, resp.StatusCode, got, err))
					continue
				}
				s.ok.Add(1)
			}
		}()
	}
	return s
}

func (s *slowPosts) fail(msg string) {
	s.failed.Add(1)
	s.mu.Lock()
	if len(s.failures) < 10 {
		s.failures = append(s.failures, msg)
	}
	s.mu.Unlock()
}

func (s *slowPosts) finish() string {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return fmt.Sprintf("%d ok, %d failed %v", s.ok.Load(), s.failed.Load(), s.failures)
}

// withVerify adds a verify block to the staging environment of a config.
func withVerify(t *testing.T, path, verify string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "pipelines:\n", "    verify: "+verify+"\npipelines:\n", 1)
	out := strings.TrimSuffix(path, ".yaml") + "-verify.yaml"
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// hostSteps returns, from `zerodown show RUN`, the events of host from its
// first "rolling-back" on, keeping the steps of a host change.
func hostSteps(show, host string) []string {
	steps := []string{"detaching", "drained", "activated", "attaching", "healthy", "rolled-back"}
	var out []string
	seen := false
	sc := bufio.NewScanner(strings.NewReader(show))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[1] != host {
			continue
		}
		if f[2] == "rolling-back" {
			seen = true
		}
		if seen && slices.Contains(steps, f[2]) {
			out = append(out, f[2])
		}
	}
	return out
}

var rollbackSteps = []string{"detaching", "drained", "activated", "attaching", "healthy", "rolled-back"}

// TestRollbackThroughTheBalancer: a first deploy with the verifier onto a
// fleet that serves nothing yet; then, while a client that is not the
// verifier POSTs to an endpoint taking 500 ms, a release that fails its
// health check on the third host: the two hosts already changed roll back
// through the load balancer (detach, drained, previous release, attach,
// healthy), and not one POST fails. The same for `zerodown rollback RUN`
// after the deploying process was SIGKILLed.
func TestRollbackThroughTheBalancer(t *testing.T) {
	f := startFleet(t)
	// The verifier judges the first deploy; afterwards the slow POSTs do,
	// which a starved test machine cannot make drop a request the way it
	// can delay the verifier's own schedule.
	verify := fmt.Sprintf("{ url: %q, rate: 20, post: /echo }", f.lb.url+"/")
	first := withVerify(t, f.config("zerodown-first.yaml", 1, ""), verify)
	good := f.config("zerodown.yaml", 1, "")

	out, code := f.zerodown("deploy", "staging", "--version", "v1", "--artifact", f.artifact, "-c", first, "-o", "json")
	if code != 0 {
		t.Fatalf("first deploy with verify onto an empty fleet: exit %d\n%s", code, out)
	}
	sum := checkJSONRun(t, out, "succeeded", 0)
	if sum == nil || sum.Failed != 0 || sum.Dropped != 0 || sum.Requests == 0 || !sum.Pass || !strings.Contains(sum.Note, "no serving target") {
		t.Fatalf("first deploy's verifier: %+v\n%s", sum, out)
	}
	f.onVersion(all, "v1")

	posts := startSlowPosts(f.lb.url, 12, 4*time.Minute)
	defer func() {
		if t.Failed() {
			t.Log(posts.finish())
		}
	}()
	proctest.Eventually(t, 10*time.Second, "slow POSTs answered", func() bool { return posts.ok.Load() > 10 })

	t.Run("the third host fails: the first two roll back through the balancer", func(t *testing.T) {
		bad := f.failingOn(t, 2, "zerodown-bad.yaml")
		out, code := f.zerodown("deploy", "staging", "--version", "v2", "--artifact", f.artifact, "-c", bad, "-o", "json")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, out)
		}
		checkJSONRun(t, out, "rolled_back", 1)
		f.onVersion(all, "v1")
		runID := runIDOf(t, out)
		show, _ := f.zerodown("show", runID, "-c", good)
		for _, h := range []string{"staging-1", "staging-2"} {
			if got := hostSteps(show, h); !slices.Equal(got, rollbackSteps) {
				t.Fatalf("rollback of %s: %v, want %v\n%s", h, got, rollbackSteps, show)
			}
		}
		if n := posts.failed.Load(); n != 0 {
			t.Fatalf("slow POSTs failed during the rollback: %d %v", n, posts.failures)
		}
	})

	t.Run("zerodown rollback RUN after SIGKILL", func(t *testing.T) {
		// Killed once staging-1 serves v3 and staging-2 is being changed.
		runID := f.deployKilledAt(t, good, "v3", func(line string) bool {
			return strings.Contains(line, `"host":"staging-2"`) && strings.Contains(line, `"type":"detaching"`)
		})
		out, code := f.zerodown("rollback", runID, "-c", good, "-o", "log")
		if code != 0 {
			t.Fatalf("rollback: exit %d\n%s", code, out)
		}
		f.onVersion(all, "v1")
		show, _ := f.zerodown("show", runID, "-c", good)
		if got := hostSteps(show, "staging-1"); !slices.Equal(got, rollbackSteps) {
			t.Fatalf("rollback of staging-1: %v, want %v\n%s", got, rollbackSteps, show)
		}
		// The task the kill interrupted is not shown as still running.
		tasks := strings.SplitN(show, "\nAT", 3)
		if len(tasks) < 2 || slices.Contains(strings.Fields(tasks[1]), "running") {
			t.Fatalf("show lists a task of the ended run as running:\n%s", show)
		}
		if n := posts.failed.Load(); n != 0 {
			t.Fatalf("slow POSTs failed during the rollback: %d %v", n, posts.failures)
		}
	})
	t.Logf("slow POSTs: %s", posts.finish())
}

// runIDOf finds the run id in `-o json` output.
func runIDOf(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if id := runIDOfLine(line); id != "" {
			return id
		}
	}
	t.Fatalf("no run_started line:\n%s", out)
	return ""
}

func runIDOfLine(line string) string {
	const key = `"type":"run_started","run":{"id":"`
	i := strings.Index(line, key)
	if i < 0 {
		return ""
	}
	rest := line[i+len(key):]
	return rest[:strings.IndexByte(rest, '"')]
}

// verifySummary is the part of the verify line the tests read.
type verifySummary struct {
	Pass                      bool
	Requests, Failed, Dropped int64
	Note                      string
	LBRetries                 *uint64 `json:"lb_retries"`
}

// checkJSONRun parses `deploy -o json` output against docs/deploy.md:
// every line a JSON object with a type; run_started first with the run's
// id, environment, version and hosts; events with a time; at most one
// verify summary; run_finished last with the status and exit code. It
// returns the verify summary, if any.
func checkJSONRun(t *testing.T, out, status string, exit int) *verifySummary {
	t.Helper()
	// The output holds stderr too (f.zerodown merges them): the JSON lines
	// are the ones that start with a brace.
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "{") {
			lines = append(lines, l)
		}
	}
	var sum *verifySummary
	for i, line := range lines {
		var head struct {
			Type string
			At   time.Time
			Run  json.RawMessage
		}
		if err := json.Unmarshal([]byte(line), &head); err != nil || head.Type == "" {
			t.Fatalf("line %d is not a JSON object with a type: %q (%v)", i+1, line, err)
		}
		switch {
		case i == 0:
			var start struct {
				Type string
				Run  struct {
					ID, Env, Version, Pipeline, Mode string
					Hosts                            []string
					Tasks                            int
				}
			}
			_ = json.Unmarshal([]byte(line), &start)
			if start.Type != "run_started" || start.Run.ID == "" || start.Run.Env != "staging" || start.Run.Version == "" ||
				len(start.Run.Hosts) == 0 || start.Run.Tasks == 0 || start.Run.Mode != "deploy" {
				t.Fatalf("first line is not a complete run_started: %s", line)
			}
		case i == len(lines)-1:
			var fin struct {
				Type, Run, Status string
				ExitCode          int `json:"exit_code"`
			}
			_ = json.Unmarshal([]byte(line), &fin)
			if fin.Type != "run_finished" || fin.Run == "" || fin.Status != status || fin.ExitCode != exit {
				t.Fatalf("last line is not run_finished %s exit %d: %s", status, exit, line)
			}
		case head.Type == "verify":
			var v struct{ Summary verifySummary }
			if err := json.Unmarshal([]byte(line), &v); err != nil || sum != nil {
				t.Fatalf("bad or second verify line: %s", line)
			}
			sum = &v.Summary
		case head.At.IsZero():
			t.Fatalf("event without a time: %s", line)
		}
	}
	return sum
}

// deployKilledAt starts `zerodown deploy -o json` of version, reads its
// lines until at says so, and SIGKILLs it there, as a crash would. It
// returns the run's id, and fails the test if the deploy ended first.
func (f *fleetFixture) deployKilledAt(t *testing.T, cfg, version string, at func(line string) bool) string {
	t.Helper()
	cmd := exec.Command(bin.zerodown, "deploy", "staging", "--version", version, "--artifact", f.artifact, "-c", cfg, "-o", "json")
	var stderr proctest.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	runID, reached := "", false
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if id := runIDOfLine(line); id != "" {
			runID = id
		}
		if at(line) {
			reached = true
			break
		}
	}
	_ = cmd.Process.Kill()
	go io.Copy(io.Discard, stdout)
	_ = cmd.Wait()
	if runID == "" || !reached {
		t.Fatalf("the deploy ended before the point to kill it:\n%s\n%s", strings.Join(seen, "\n"), stderr.String())
	}
	return runID
}

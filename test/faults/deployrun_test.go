package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/loadgen"
	"github.com/zerodown/zerodown/internal/proctest"
)

// deployRun is a `zerodown deploy` (or resume) process started with -o
// json, whose lines are read as they come so a fault can be injected at a
// chosen step of the run.
type deployRun struct {
	name   string
	cmd    *exec.Cmd
	stderr proctest.Buffer
	done   chan struct{}

	mu     sync.Mutex
	lines  []string
	events []event
	runID  string
	verify *verifySummary
	finish *runFinished
}

// event is a line of `-o json` that reports a step of a host.
type event struct {
	Type    string `json:"type"`
	Host    string `json:"host"`
	Message string `json:"message"`
}

// verifySummary is the part of the verify line the table reports.
type verifySummary struct {
	Pass      bool    `json:"pass"`
	Requests  int64   `json:"requests"`
	Failed    int64   `json:"failed"`
	Dropped   int64   `json:"dropped"`
	LBRetries *uint64 `json:"lb_retries"`
	Note      string  `json:"note"`
	// JSON is the verifier's full report, which holds its failures.
	JSON string `json:"json"`
}

// verifierErrors returns the verifier's failure samples from its report.
func (v *verifySummary) verifierErrors() string {
	if v == nil || v.JSON == "" {
		return ""
	}
	b, err := os.ReadFile(v.JSON)
	if err != nil {
		return "report unreadable: " + err.Error()
	}
	var rep struct {
		Errors []loadgen.ErrorSample `json:"errors"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return "report unreadable: " + err.Error()
	}
	var out []string
	for _, e := range rep.Errors {
		out = append(out, fmt.Sprintf("%s at %.3fs: %s", e.Outcome, e.T, e.Message))
	}
	return strings.Join(out, "\n")
}

// runFinished is the last line of `-o json`.
type runFinished struct {
	Status   string            `json:"status"`
	ExitCode int               `json:"exit_code"`
	Error    string            `json:"error"`
	Stranded map[string]string `json:"stranded"`
}

func (f *fleet) startDeploy(name string, args ...string) *deployRun {
	t := f.t
	t.Helper()
	d := &deployRun{name: name, cmd: exec.Command(bin.zerodown, args...), done: make(chan struct{})}
	d.cmd.Stderr = &d.stderr
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.line(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, d.output())
		}
	})
	return d
}

func (d *deployRun) line(l string) {
	var head struct {
		Type    string          `json:"type"`
		Run     json.RawMessage `json:"run"`
		Summary *verifySummary  `json:"summary"`
	}
	_ = json.Unmarshal([]byte(l), &head)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lines = append(d.lines, l)
	switch head.Type {
	case "":
	case "run_started":
		var s struct{ ID string }
		_ = json.Unmarshal(head.Run, &s)
		d.runID = s.ID
	case "verify":
		d.verify = head.Summary
	case "run_finished":
		var fin runFinished
		_ = json.Unmarshal([]byte(l), &fin)
		d.finish = &fin
	default:
		var e event
		_ = json.Unmarshal([]byte(l), &e)
		d.events = append(d.events, e)
	}
}

func (d *deployRun) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// await waits until the run reports host's step typ, and fails the test
// if the run ends or the deadline passes first.
func (d *deployRun) await(t *testing.T, host, typ string, within time.Duration) {
	t.Helper()
	proctest.Eventually(t, within, fmt.Sprintf("%s to report %s %s", d.name, host, typ), func() bool {
		if d.seen(host, typ) {
			return true
		}
		if d.exited() && !d.seen(host, typ) {
			t.Fatalf("%s ended without reporting %s %s:\n%s", d.name, host, typ, d.output())
		}
		return false
	})
}

func (d *deployRun) seen(host, typ string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.events {
		if e.Host == host && e.Type == typ {
			return true
		}
	}
	return false
}

// wait waits for the process to exit and returns its exit code.
func (d *deployRun) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s did not end within %s:\n%s", d.name, within, d.output())
		return -1
	}
}

// kill SIGKILLs the process, as a crash would, and waits for it.
func (d *deployRun) kill() {
	if !d.exited() {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
}

func (d *deployRun) id() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runID
}

func (d *deployRun) summary() (*verifySummary, *runFinished) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.verify, d.finish
}

func (d *deployRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n") + "\n" + d.stderr.String()
}

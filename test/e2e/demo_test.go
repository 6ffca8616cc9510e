package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

var reportLine = regexp.MustCompile(`report: \S+ \(JSON: (\S+)\)`)

type demoReport struct {
	Requests struct {
		Total, OK, Failed, Dropped int64
	} `json:"requests"`
	Versions []struct {
		Version string `json:"version"`
		Count   int64  `json:"count"`
	} `json:"versions"`
	Pass   bool `json:"pass"`
	Events []struct {
		Type string `json:"type"`
	} `json:"events"`
}

// runDemo runs `zerodown demo` to completion and returns its verifier report.
func runDemo(t *testing.T, args ...string) demoReport {
	t.Helper()
	p := proctest.Start(t, "zerodown demo", bin.zerodown, append([]string{"demo", "--app", bin.hello, "--rate", "300"}, args...)...)
	if code := p.Wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("demo %v: exit %d\n%s", args, code, p.Output())
	}
	return passingReport(t, p.Output())
}

// passingReport reads the verifier report of the demo's last deploy (the
// first deploy prints one too) and checks that it passed with zero failed
// and zero dropped requests.
func passingReport(t *testing.T, output string) demoReport {
	t.Helper()
	all := reportLine.FindAllStringSubmatch(output, -1)
	if len(all) == 0 {
		t.Fatalf("demo printed no report path:\n%s", output)
	}
	m := all[len(all)-1]
	data, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var r demoReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Requests.Total < 100 || r.Requests.Failed != 0 || r.Requests.Dropped != 0 || !r.Pass {
		t.Fatalf("demo: %+v\n%s", r.Requests, output)
	}
	return r
}

func versionsSeen(r demoReport) map[string]bool {
	seen := map[string]bool{}
	for _, v := range r.Versions {
		if v.Count > 0 {
			seen[v.Version] = true
		}
	}
	return seen
}

// TestDemo runs the demo's scenario through the real binary: a rollout under
// load with zero failed and zero dropped requests that serves both
// versions, and a failing release rolled back with zero failed requests.
func TestDemo(t *testing.T) {
	t.Run("rollout", func(t *testing.T) {
		r := runDemo(t)
		if seen := versionsSeen(r); !seen["v1"] || !seen["v2"] {
			t.Fatalf("versions seen %v, want v1 and v2", r.Versions)
		}
	})
	t.Run("a fleet of one, by swap", func(t *testing.T) {
		// A swap of one host takes well under a second: a higher rate gives
		// the verifier enough requests to count.
		r := runDemo(t, "--hosts", "1", "--rate", "600")
		if seen := versionsSeen(r); !seen["v1"] || !seen["v2"] {
			t.Fatalf("versions seen %v, want v1 and v2", r.Versions)
		}
	})
	t.Run("failing release rolled back", func(t *testing.T) {
		r := runDemo(t, "--fail")
		if seen := versionsSeen(r); !seen["v1"] || seen["v2"] {
			t.Fatalf("versions seen %v, want only v1", r.Versions)
		}
		rolledBack := false
		for _, e := range r.Events {
			rolledBack = rolledBack || e.Type == "rolled-back"
		}
		if !rolledBack {
			t.Fatalf("no rolled-back event on the report's time axis: %+v", r.Events)
		}
	})
}

// TestDemoInstalled runs the demo the way someone who installed zerodown
// does: the binary alone in a directory outside the source tree, started
// from another such directory, with no go command on PATH. The demo then
// deploys the sample app that the binary itself contains, with zero failed
// requests, and with --keep prints commands that run as shown.
func TestDemoInstalled(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "zerodown")
	data, err := os.ReadFile(bin.zerodown)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	// The sandbox goes into TMPDIR; the test's own one is removed at the end.
	env := append(withoutVar(withoutVar(os.Environ(), "PATH"), "TMPDIR"),
		"PATH="+pathWithout("go", "zerodown"), "TMPDIR="+t.TempDir())

	cmd := exec.Command(exe, "demo", "--keep", "--rate", "300")
	cmd.Dir, cmd.Env = work, env
	p := proctest.StartCmd(t, "installed zerodown demo", cmd)
	proctest.Eventually(t, 3*time.Minute, "the demo to print the commands of --keep", func() bool {
		if p.Exited() {
			t.Fatalf("demo exited before the sandbox was ready:\n%s", p.Output())
		}
		return keepLines.MatchString(p.Output())
	})
	out := p.Output()
	if !strings.Contains(out, "no zerodown source tree here: the sample app is this zerodown binary (zerodown sample-app)") {
		t.Errorf("the demo did not say it deploys its own sample app:\n%s", out)
	}
	r := passingReport(t, out)
	if seen := versionsSeen(r); !seen["v1"] || !seen["v2"] {
		t.Fatalf("versions seen %v, want v1 and v2", r.Versions)
	}

	// The printed commands name the binary by its absolute path (it is not
	// on PATH) and work when pasted into a shell in the same directory.
	m := keepLines.FindStringSubmatch(out)
	deploy, history := m[1], m[2]
	for _, line := range []string{deploy, history} {
		if !strings.HasPrefix(line, exe+" ") {
			t.Errorf("printed command %q does not start with the executable %s", line, exe)
		}
	}
	shell := func(line string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", line)
		c.Dir, c.Env = work, env
		got, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, got)
		}
		return string(got)
	}
	passingReport(t, shell(deploy))
	if got := shell(history); !regexp.MustCompile(`staging +v3 +succeeded`).MatchString(got) {
		t.Errorf("history after the v3 deploy:\n%s", got)
	}

	p.Signal(os.Interrupt)
	if code := p.Wait(t, time.Minute); code != 0 {
		t.Fatalf("demo --keep after Ctrl-C: exit %d\n%s", code, p.Output())
	}
}

// keepLines finds the deploy and history commands demo --keep prints.
var keepLines = regexp.MustCompile(`\ntry:\n  (.+ deploy staging --version v3 .+)\n  (.+ history -c .+)\n`)

// pathWithout is $PATH without the directories that hold any of progs.
func pathWithout(progs ...string) string {
	var keep []string
dirs:
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		for _, prog := range progs {
			if _, err := os.Stat(filepath.Join(dir, prog)); err == nil {
				continue dirs
			}
		}
		keep = append(keep, dir)
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}

// withoutVar is env without the variable name.
func withoutVar(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestSampleAppSubcommand checks the hidden `zerodown sample-app`: the
// sample app's answers from the zerodown binary, and its graceful exit on
// SIGTERM; and that the command stays out of the help.
func TestSampleAppSubcommand(t *testing.T) {
	addr := proctest.FreeAddr(t)
	p := proctest.Start(t, "zerodown sample-app", bin.zerodown, "sample-app", "--listen", addr, "--name", "s1", "--version", "v4")
	waitHTTP(t, "http://"+addr+"/healthz", 200, 10*time.Second)
	resp, err := http.Post("http://"+addr+"/orders", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(echo) != `{"n":1}` || resp.Header.Get("X-Version") != "v4" {
		t.Errorf("POST echo %q, X-Version %q", echo, resp.Header.Get("X-Version"))
	}
	resp, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	hello, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(hello) != "hello from s1 version v4\n" || resp.Header.Get("X-Host") != "s1" {
		t.Errorf("GET / %q, X-Host %q", hello, resp.Header.Get("X-Host"))
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(t, 30*time.Second); code != 0 {
		t.Fatalf("sample-app after SIGTERM: exit %d\n%s", code, p.Output())
	}
	if !strings.Contains(p.Output(), "hello: got terminated, finishing in-flight requests") {
		t.Errorf("no graceful shutdown in the output:\n%s", p.Output())
	}

	help, err := exec.Command(bin.zerodown, "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(help), "sample-app") {
		t.Errorf("sample-app is listed in the help:\n%s", help)
	}
}

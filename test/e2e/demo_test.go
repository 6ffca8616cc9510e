package e2e

import (
	"encoding/json"
	"os"
	"regexp"
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
	m := reportLine.FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("demo printed no report path:\n%s", p.Output())
	}
	data, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	var r demoReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Requests.Total < 100 || r.Requests.Failed != 0 || r.Requests.Dropped != 0 || !r.Pass {
		t.Fatalf("demo %v: %+v\n%s", args, r.Requests, p.Output())
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

package server

import (
	"context"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/store"
)

// TestStepMetrics: a task started and finished through the server's
// journal is observed once, by kind and outcome; one cancelled before it
// started is not a step that took time.
func TestStepMetrics(t *testing.T) {
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	ctx := context.Background()
	rec := store.TaskRecord{RunID: run.ID, Stage: "update-web-1", Job: "web-1", Index: 0, Kind: "detach", Host: "web-1"}
	if _, err := f.srv.st.StartTask(ctx, rec); err != nil {
		t.Fatal(err)
	}
	rec.Status = store.TaskPassed
	if err := f.srv.st.FinishTask(ctx, rec); err != nil {
		t.Fatal(err)
	}
	never := store.TaskRecord{RunID: run.ID, Stage: "update-web-2", Job: "web-2", Index: 0, Kind: "detach", Host: "web-2", Status: store.TaskCancelled}
	if err := f.srv.st.FinishTask(ctx, never); err != nil {
		t.Fatal(err)
	}
	_, body := f.do(t, "GET", "/metrics", f.tokens[RoleViewer], "")
	page := string(body)
	if !strings.Contains(page, `zerodown_server_step_seconds_count{kind="detach",status="passed"} 1`) {
		t.Errorf("the passed detach is not observed once:\n%s", grepMetric(page, "zerodown_server_step_seconds_count"))
	}
	if strings.Contains(page, `zerodown_server_step_seconds_count{kind="detach",status="cancelled"}`) {
		t.Errorf("a task cancelled before it started is observed:\n%s", grepMetric(page, "zerodown_server_step_seconds_count"))
	}
}

// A run this replica stops executing (ended, or lost to another replica
// mid-task) leaves nothing behind in the step timer.
func TestStepMetricsForgetRun(t *testing.T) {
	m := newMetrics()
	lost := store.TaskRecord{RunID: "r-1", Stage: "s", Job: "web-1", Kind: "detach"}
	other := store.TaskRecord{RunID: "r-2", Stage: "s", Job: "web-1", Kind: "detach"}
	m.taskStarted(lost)
	m.taskStarted(other)
	m.forgetRun("r-1")
	m.mu.Lock()
	_, kept := m.started[taskKey{"r-2", "s", "web-1", 0}]
	left := len(m.started)
	m.mu.Unlock()
	if left != 1 || !kept {
		t.Fatalf("after forgetting r-1, %d tasks kept (r-2's kept: %v); want r-2's alone", left, kept)
	}
}

func grepMetric(page, name string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, name) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// history prune deletes the old runs from the journal and their report
// files, keeps each environment's newest, and refuses a missing or bad
// flag with exit 2 and nothing deleted.
func TestHistoryPrune(t *testing.T) {
	dir := t.TempDir()
	cfg := writeDeployConfig(t, dir, validDeployConfig+"state: state.db\n")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reports := filepath.Join(dir, "reports")
	if err := os.MkdirAll(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, age := range []time.Duration{100 * 24 * time.Hour, 95 * 24 * time.Hour, 91 * 24 * time.Hour, time.Hour} {
		r, err := st.CreateRun(ctx, store.Run{Env: "web", Version: "v" + string(rune('1'+i)), Owner: "ci", Status: store.RunSucceeded,
			StartedAt: time.Now().Add(-age), EndedAt: time.Now().Add(-age + time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
		for _, ext := range []string{".html", ".json"} {
			if err := os.WriteFile(filepath.Join(reports, r.ID+ext), []byte("report"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.Close()

	prune := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(append([]string{"history", "prune", "-c", cfg}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for _, bad := range [][]string{nil, {"--older-than", "-1h"}, {"--older-than", "2160h", "--keep", "0"}, {"--older-than", "ninety days"}} {
		if code, _, stderr := prune(bad...); code != ExitBadInput || stderr == "" {
			t.Errorf("history prune %q: exit %d, stderr %q; want exit %d with a reason", bad, code, stderr, ExitBadInput)
		}
	}

	// Not with a server named: that one prunes its own journal.
	t.Setenv("ZERODOWN_SERVER", "http://127.0.0.1:1")
	if code, _, stderr := prune("--older-than", "2160h"); code != ExitBadInput || !strings.Contains(stderr, "retention") {
		t.Errorf("history prune with ZERODOWN_SERVER set: exit %d, stderr %q; want exit 2 pointing at retention", code, stderr)
	}
	t.Setenv("ZERODOWN_SERVER", "")

	// Three runs are older than 90 days; --keep 2 keeps the newest of them
	// (the newest two runs of the environment), so two go.
	code, stdout, stderr := prune("--older-than", "2160h", "--keep", "2")
	if code != ExitOK || !strings.HasPrefix(stdout, "pruned 2 runs that ended before ") {
		t.Fatalf("history prune: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	for i, id := range ids {
		gone := i < 2
		if strings.Contains(stdout, id) != gone {
			t.Errorf("run %d (%s): listed as pruned %v, want %v:\n%s", i, id, !gone, gone, stdout)
		}
		_, err := os.Stat(filepath.Join(reports, id+".html"))
		if os.IsNotExist(err) != gone {
			t.Errorf("run %d (%s): report file gone %v, want %v", i, id, os.IsNotExist(err), gone)
		}
	}
	code, stdout, _ = runHistory(t, cfg)
	if code != ExitOK || strings.Contains(stdout, ids[0]) || !strings.Contains(stdout, ids[2]) || !strings.Contains(stdout, ids[3]) {
		t.Errorf("history after the prune: exit %d\n%s", code, stdout)
	}
}

func runHistory(t *testing.T, cfg string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main([]string{"history", "-c", cfg}, &out, &errOut)
	return code, out.String(), errOut.String()
}

package deploy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// Prune goes through more runs than one batch holds, and removes the
// report files of every run it deleted.
func TestPruneBatches(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reports := filepath.Join(dir, "reports")
	if err := os.MkdirAll(reports, 0o755); err != nil {
		t.Fatal(err)
	}
	const old = 2*pruneBatch + 50
	start := time.Now().Add(-48 * time.Hour)
	for i := range old + 3 {
		at := start.Add(time.Duration(i) * time.Second)
		if i >= old {
			at = time.Now() // recent: kept
		}
		r, err := st.CreateRun(ctx, store.Run{Env: "web", Version: "v1", Owner: "ci", Status: store.RunSucceeded, StartedAt: at, EndedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(reports, r.ID+".html"), []byte("r"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ids, err := Prune(ctx, st, reports, time.Now().Add(-time.Hour), 0)
	if err != nil || len(ids) != old {
		t.Fatalf("Prune = %d runs, %v; want %d", len(ids), err, old)
	}
	left, err := st.ListRuns(ctx, "", 0)
	if err != nil || len(left) != 3 {
		t.Fatalf("runs left: %d, %v; want the 3 recent ones", len(left), err)
	}
	files, err := os.ReadDir(reports)
	if err != nil || len(files) != 3 {
		t.Errorf("report files left: %d, %v; want the 3 recent runs'", len(files), err)
	}
}

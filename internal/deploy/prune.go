package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/zerodown/zerodown/internal/store"
)

// Prune deletes from the journal the runs that ended and started before
// `before`, except each environment's newest keep and any run still
// running or needing attention (store.PruneRuns), then their report files
// under reportDir. It returns the runs deleted; a report file that could
// not be removed is said in the error, after the journal has let go of it.
func Prune(ctx context.Context, st store.Store, reportDir string, before time.Time, keep int) ([]string, error) {
	ids, err := st.PruneRuns(ctx, before, keep)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, id := range ids {
		for _, ext := range []string{".html", ".json"} {
			if err := os.Remove(filepath.Join(reportDir, id+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ids, fmt.Errorf("pruned %d runs, but not all their report files: %w", len(ids), err)
	}
	return ids, nil
}

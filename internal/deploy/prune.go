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

// pruneBatch is how many runs one transaction of a prune deletes: runs in
// progress write to the journal between batches.
const pruneBatch = 100

// Prune deletes from the journal the runs that ended before `before`,
// except each environment's newest keep and any run still running or
// needing attention (store.PruneRuns, a batch at a time), then
// their report files under reportDir. It returns the runs deleted, those
// of the batches done when it fails; a report file that could not be
// removed is said in the error, after the journal has let go of it.
func Prune(ctx context.Context, st store.Store, reportDir string, before time.Time, keep int) ([]string, error) {
	var ids []string
	var errs []error
	for {
		batch, err := st.PruneRuns(ctx, before, keep, pruneBatch)
		ids = append(ids, batch...)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if len(batch) < pruneBatch {
			break
		}
	}
	for _, id := range ids {
		for _, ext := range []string{".html", ".json"} {
			if err := os.Remove(filepath.Join(reportDir, id+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ids, fmt.Errorf("pruned %d runs, then: %w", len(ids), err)
	}
	return ids, nil
}

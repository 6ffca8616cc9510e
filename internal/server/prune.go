package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/store"
)

// pruneEvery is how often retention prunes the journal.
const pruneEvery = time.Hour

// pruneLoop prunes the journal on start and every pruneEvery when
// server.yaml sets retention. Replicas may prune at once: deleting what
// another deleted deletes nothing.
func (s *Server) pruneLoop(ctx context.Context) {
	if s.cfg.Retention == nil {
		return
	}
	tick := time.NewTicker(pruneEvery)
	defer tick.Stop()
	for {
		s.prune(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// prune deletes the runs retention no longer keeps, with their report
// files under this replica's data, and audits how many went.
func (s *Server) prune(ctx context.Context) {
	r := s.cfg.Retention
	before := s.now().Add(-time.Duration(r.OlderThan))
	ids, err := deploy.Prune(ctx, s.st, deploy.ReportDir(s.deploy), before, *r.Keep)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("prune the journal", "err", err)
	}
	if err := s.sweepReports(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("remove the report files of pruned runs", "err", err)
	}
	if len(ids) > 0 {
		s.log.Info("pruned the journal", "runs", len(ids), "ended_before", before)
		s.audit(ctx, nil, "server", "runs.prune", fmt.Sprintf("%d runs", len(ids)),
			fmt.Sprintf("runs that ended before %s, keeping the newest %d of each environment", before.UTC().Format(time.RFC3339), *r.Keep))
	}
}

// sweepReports removes this replica's report files of runs the journal no
// longer has: another replica pruned them, and removed only its own files.
func (s *Server) sweepReports(ctx context.Context) error {
	dir := deploy.ReportDir(s.deploy)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".html")
		if !ok {
			id, ok = strings.CutSuffix(e.Name(), ".json")
		}
		if !ok || !e.Type().IsRegular() || !strings.HasPrefix(id, "r-") {
			continue
		}
		if _, err := s.st.GetRun(ctx, id); !errors.Is(err, store.ErrNotFound) {
			continue // kept, or the journal could not say: leave the file
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

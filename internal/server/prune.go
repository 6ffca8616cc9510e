package server

import (
	"context"
	"fmt"
	"time"

	"github.com/zerodown/zerodown/internal/deploy"
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
	if len(ids) > 0 {
		s.log.Info("pruned the journal", "runs", len(ids), "started_before", before)
		s.audit(ctx, nil, "server", "runs.prune", fmt.Sprintf("%d runs", len(ids)),
			fmt.Sprintf("runs that ended and started before %s, keeping the newest %d of each environment", before.UTC().Format(time.RFC3339), *r.Keep))
	}
}

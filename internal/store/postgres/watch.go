package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// WatchRuns tells fn of every change of a run that any replica commits to
// the database, so that a server replica can follow a run that another
// replica executes without polling: fn(run, seq) when the event seq was
// appended to run, fn(run, 0) when the run itself changed (created,
// updated, abort requested). Before any of these it calls fn("", 0) once it
// listens: every change committed after that call is told. A change is
// told once it can be read; fn should read it (GetRun, or Events after the
// last seq it saw) rather than take the note for the whole change. fn runs
// on WatchRuns's goroutine, and notifications wait while it does.
//
// WatchRuns holds a connection of its own (outside the pool's count) until
// it returns: with ctx.Err() when ctx ends, or with the error when the
// connection fails. A caller that keeps watching calls it again, then
// reads what changed meanwhile. Cancel ctx before Close: Close does not
// end it.
func (s *Store) WatchRuns(ctx context.Context, fn func(runID string, seq int64)) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return watchErr(ctx, err)
	}
	// A listening session must not serve other queries: taken out of the
	// pool, it is closed rather than returned, and its LISTEN goes with it.
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+runsChannel); err != nil {
		return watchErr(ctx, err)
	}
	fn("", 0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return watchErr(ctx, err)
		}
		if n == nil || n.Channel != runsChannel {
			continue
		}
		if id, seq, ok := parseChange(n.Payload); ok {
			fn(id, seq)
		}
	}
}

// watchErr is ctx.Err() when ctx ended, else what failed.
func watchErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("watch runs: %w", err)
}

// parseChange reads a payload of the runs channel, "<run> <seq>". A payload
// that is not one (someone else's NOTIFY) is ignored.
func parseChange(payload string) (runID string, seq int64, ok bool) {
	i := strings.LastIndexByte(payload, ' ')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(payload[i+1:], 10, 64)
	if err != nil || seq < 0 {
		return "", 0, false
	}
	return payload[:i], seq, true
}

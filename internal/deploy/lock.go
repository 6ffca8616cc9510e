package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/store"
)

// DefaultLease is how old a lock's heartbeat must be for its holder to
// count as gone; the holder beats every third of its lease.
const DefaultLease = 30 * time.Second

// ownerGone reports whether a lock owner written by store.ProcessOwner is a
// process on this machine that no longer runs.
func ownerGone(owner string) bool {
	at := strings.LastIndex(owner, "@")
	sp := strings.LastIndex(owner, " pid ")
	if at < 0 || sp < at {
		return false
	}
	hostname, _ := os.Hostname()
	if owner[at+1:sp] != hostname {
		return false
	}
	pid, err := strconv.Atoi(owner[sp+len(" pid "):])
	if err != nil || pid <= 0 {
		return false
	}
	return !processAlive(pid)
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// OwnerGone reports whether a run's owning process is known to be gone: a
// run still marked running then was interrupted.
func OwnerGone(r store.Run) bool { return r.Status == store.RunRunning && ownerGone(r.Owner) }

// holdLock takes env's lock for runID; takeOver also takes a lock stale
// past lease, or one whose owner process on this machine is gone. onLost is
// called if the lock is taken from this process while it runs (the run must
// stop). It returns a release func that stops the heartbeat.
func holdLock(ctx context.Context, st store.Store, env, runID string, lease time.Duration, takeOver bool, w io.Writer, onLost func(error)) (func(), error) {
	owner := store.ProcessOwner()
	beat := lease / 3
	_, err := st.AcquireLock(ctx, env, owner, runID, lease)
	var le *store.LockedError
	if errors.As(err, &le) && (takeOver || le.Lock.RunID == runID) && (le.Stale || ownerGone(le.Lock.Owner)) {
		fmt.Fprintf(w, "taking over the lock of environment %s from %s (run %s), which is gone\n", env, le.Lock.Owner, le.Lock.RunID)
		// Only a heartbeat as old as the one just seen counts as stale, so
		// if someone else took the lock meanwhile (a fresh heartbeat) this
		// fails instead of taking it from a live process.
		_, err = st.TakeOverLock(ctx, env, owner, runID, max(le.Age, time.Millisecond))
	}
	if err != nil {
		if errors.As(err, &le) {
			if le.Stale && !takeOver {
				err = fmt.Errorf("%w; run again with --take-over to take it", err)
			}
			return nil, &RefusedError{Err: err}
		}
		return nil, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(beat)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				hctx, cancel := context.WithTimeout(context.Background(), beat)
				err := st.Heartbeat(hctx, env, owner, runID)
				cancel()
				if errors.Is(err, store.ErrLockLost) {
					fmt.Fprintf(w, "the lock of environment %s was taken by someone else: stopping this run\n", env)
					if onLost != nil {
						onLost(fmt.Errorf("%w: lock of environment %s lost", engine.ErrAborted, env))
					}
					return
				}
				if err != nil {
					fmt.Fprintf(w, "warning: lock heartbeat: %v\n", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = st.ReleaseLock(rctx, env, owner, runID)
	}, nil
}

package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
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

// holdLock takes env's lock for runID, held with lease; takeOver also takes
// a lock stale past its holder's lease, or one whose owner process on this
// machine is gone. onLost is
// called if the lock is taken from this process while it runs: the run
// must stop where it is (the cause wraps engine.ErrTakenOver). The lease
// returned beats the lock's heartbeat until its release.
func holdLock(ctx context.Context, st store.Store, env, runID string, lease time.Duration, takeOver bool, w io.Writer, onLost func(error)) (*runLease, error) {
	owner := store.ProcessOwner()
	beat := lease / 3
	_, err := st.AcquireLock(ctx, env, owner, runID, lease)
	var le *store.LockedError
	if errors.As(err, &le) && (takeOver || le.Lock.RunID == runID) && (le.Stale || ownerGone(le.Lock.Owner)) {
		fmt.Fprintf(w, "taking over the lock of environment %s from %s (run %s), which is gone\n", env, le.Lock.Owner, le.Lock.RunID)
		// Only a heartbeat as old as the one just seen counts as stale, so
		// if someone else took the lock meanwhile (a fresh heartbeat) this
		// fails instead of taking it from a live process.
		_, err = st.TakeOverLock(ctx, env, owner, runID, lease, max(le.Age, time.Millisecond))
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
	l := &runLease{st: st, env: env, owner: owner, runID: runID, w: w, onLost: onLost, lease: lease, beat: beat,
		stop: make(chan struct{}), done: make(chan struct{})}
	l.beatOK()
	go func() {
		defer close(l.done)
		tick := time.NewTicker(beat)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				hctx, cancel := context.WithTimeout(context.Background(), beat)
				err := st.Heartbeat(hctx, env, owner, runID)
				cancel()
				if l.checkBeat(err) {
					return
				}
			}
		}
	}()
	return l, nil
}

// runLease is a run's hold on its environment's lock. Once another
// executor has taken the lock (this one was paused or cut off past the
// lease), the run is the other's: this process stops it, writes nothing
// more to its journal and undoes nothing.
type runLease struct {
	st                store.Store
	env, owner, runID string
	w                 io.Writer
	onLost            func(error)
	lease, beat       time.Duration
	lastOK            atomic.Int64 // unix nanoseconds of the last confirmed heartbeat
	lost              atomic.Bool
	lostOnce          sync.Once
	stop, done        chan struct{}
	releaseOnce       sync.Once
}

func (l *runLease) beatOK() { l.lastOK.Store(time.Now().UnixNano()) }

// checkBeat takes a heartbeat's outcome and reports whether the lease is
// lost. A lease that could not be confirmed for longer than lease minus a
// beat counts as lost too: by the time this process could act on it,
// another executor may rightly have taken the run (a journal unreachable,
// this process paused), so it stops without undoing anything.
func (l *runLease) checkBeat(err error) bool {
	switch {
	case err == nil:
		l.beatOK()
		return false
	case errors.Is(err, store.ErrLockLost):
		l.markLost("was taken by another executor")
		return true
	}
	since := time.Since(time.Unix(0, l.lastOK.Load()))
	if since > l.lease-l.beat {
		l.markLost(fmt.Sprintf("could not be confirmed for %s (%v), so another executor may have it", since.Round(time.Millisecond), err))
		return true
	}
	fmt.Fprintf(l.w, "warning: lock heartbeat: %v\n", err)
	return false
}

// markLost records that the lock is (or may be) another executor's and
// stops the run.
func (l *runLease) markLost(why string) {
	l.lostOnce.Do(func() {
		l.lost.Store(true)
		fmt.Fprintf(l.w, "the lock of environment %s %s: stopping run %s where it is, without rolling back (the holder of the lock carries it on; zerodown resume %s if none does)\n", l.env, why, l.runID, l.runID)
		if l.onLost != nil {
			l.onLost(fmt.Errorf("%w: the lock of environment %s was taken from %s", engine.ErrTakenOver, l.env, l.owner))
		}
	})
}

// isLost reports whether the lock was taken by another executor.
func (l *runLease) isLost() bool { return l.lost.Load() }

// confirm checks, with a heartbeat, that the lock is still this run's:
// the run acts on hosts only after it.
func (l *runLease) confirm(ctx context.Context) error {
	if !l.isLost() {
		err := l.st.Heartbeat(ctx, l.env, l.owner, l.runID)
		if !l.checkBeat(err) {
			return err
		}
	}
	return fmt.Errorf("%w: the lock of environment %s is no longer %s's", engine.ErrTakenOver, l.env, l.owner)
}

// release stops the heartbeat and frees the lock, unless it was taken;
// again, it does nothing.
func (l *runLease) release() {
	l.releaseOnce.Do(func() {
		close(l.stop)
		<-l.done
		if l.isLost() {
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.st.ReleaseLock(rctx, l.env, l.owner, l.runID)
	})
}

// fencedJournal is a run's journal while it holds its lease: a task acts
// only once the lease is confirmed, and once the lease is lost nothing
// more is written: the journal is the new executor's.
type fencedJournal struct {
	engine.Journal
	lease *runLease
}

func (j fencedJournal) TaskStarted(ctx context.Context, k engine.TaskKey, t pipeline.Task) error {
	if err := j.lease.confirm(ctx); err != nil {
		return err
	}
	return j.Journal.TaskStarted(ctx, k, t)
}

func (j fencedJournal) TaskFinished(ctx context.Context, k engine.TaskKey, st engine.TaskStatus, err error) error {
	if j.lease.isLost() {
		return nil
	}
	return j.Journal.TaskFinished(ctx, k, st, err)
}

func (j fencedJournal) Event(ctx context.Context, e engine.Event) error {
	if j.lease.isLost() {
		return nil
	}
	return j.Journal.Event(ctx, e)
}

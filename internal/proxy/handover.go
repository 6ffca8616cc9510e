package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// A zerodown lb process can hand its listening sockets to a new process (a
// new binary, or the same one restarted) without refusing a connection: the
// sockets stay open across both, the new process starts accepting, then the
// old one stops accepting and finishes its requests. The process side (fd
// passing, readiness) is the caller's: Options.Listen and Options.Upgrade.
// The server's side is below: no change is accepted while the new process
// reads the state file, and targets detached by the old process read
// draining until it has exited.

// errHandingOver refuses changes while a new process takes over: it read
// the state file when it started, so a change made here now would be lost.
// The admin API answers 503 and clients try again, reaching the new process.
var errHandingOver = errors.New("load balancer is handing over to a new process; try again in a moment")

// errNoUpgrade answers an upgrade request to a server that cannot pass its
// sockets on (tests, or a platform without fd passing).
var errNoUpgrade = errors.New("this load balancer cannot hand its sockets to a new process (not started by `zerodown lb` on a Unix system)")

// errUpgradeRunning refuses a second upgrade while one is under way.
var errUpgradeRunning = errors.New("an upgrade is already under way")

// errPreviousDraining refuses an upgrade while the process this one took
// over from is still finishing its requests.
var errPreviousDraining = errors.New("the previous load balancer process is still finishing its requests; upgrade again once it has exited")

// Upgrade starts a new process that takes over the listening sockets and
// returns once it serves, or failed to start. On success this process must
// then shut down; on failure it carries on as before. The admin API and
// SIGUSR2 both come here. The upgrade itself does not depend on ctx: a
// caller that stops waiting leaves it to finish (within the upgrade's own
// timeout), and changes stay refused until it has.
func (s *Server) Upgrade(ctx context.Context) (time.Duration, error) {
	if s.upgrade == nil {
		return 0, errNoUpgrade
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return 0, errShuttingDown
	case s.handingOver:
		s.mu.Unlock()
		return 0, errUpgradeRunning
	case !s.previousGone():
		s.mu.Unlock()
		return 0, errPreviousDraining
	}
	// The state file is final from here: every change holds s.mu until it
	// is saved, and none is accepted until the upgrade has failed.
	s.handingOver = true
	s.mu.Unlock()
	start := time.Now()
	s.log.Info("handing over to a new process")
	type outcome struct {
		took time.Duration
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		err := s.upgrade()
		took := time.Since(start)
		if err != nil {
			s.mu.Lock()
			s.handingOver = false
			s.mu.Unlock()
			s.log.Error("upgrade failed; this process carries on serving", "err", err, "after", took.Round(time.Millisecond))
		} else {
			s.log.Info("the new process serves; this one stops accepting and finishes its requests", "handover", took.Round(time.Millisecond))
		}
		done <- outcome{took, err}
	}()
	select {
	case o := <-done:
		return o.took, o.err
	case <-ctx.Done():
		return time.Since(start), fmt.Errorf("stopped waiting for the upgrade, which goes on: %w", context.Cause(ctx))
	}
}

// refuseChange says why a change cannot be made now; s.mu is held.
func (s *Server) refuseChange() error {
	switch {
	case s.closed:
		return errShuttingDown
	case s.handingOver:
		return errHandingOver
	}
	return nil
}

// previousGone reports whether the process this one took the sockets from
// has exited (true when there was none).
func (s *Server) previousGone() bool {
	if s.previous == nil {
		return true
	}
	select {
	case <-s.previous:
		return true
	default:
		return false
	}
}

// listen opens a listening socket, through Options.Listen when set so the
// socket can be passed on. Shared sockets are wrapped so that a listener
// removed by a reload stops listening for every holder of the socket, not
// only for this process's descriptor.
func (s *Server) listen(addr string) (net.Listener, error) {
	if s.listenFn == nil {
		return net.Listen("tcp", addr)
	}
	ln, err := s.listenFn("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &sharedListener{Listener: ln}, nil
}

// sharedListener is a listening socket other descriptors may hold: the
// copy kept to pass it to the next process. Closing this descriptor alone
// would leave the socket listening with nobody accepting, so connections
// would hang in its queue; a listener removed for good is unbound first.
type sharedListener struct {
	net.Listener
	unbindOnClose atomic.Bool
}

func (l *sharedListener) Close() error {
	if l.unbindOnClose.Load() {
		unbind(l.Listener)
	}
	return l.Listener.Close()
}

// retire marks l, if shared, to stop listening for good when closed.
func retire(ln net.Listener) {
	switch l := ln.(type) {
	case *sharedListener:
		l.unbindOnClose.Store(true)
	case *cappedListener:
		retire(l.Listener)
	}
}

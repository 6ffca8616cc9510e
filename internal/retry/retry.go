// Package retry tries a control call again while it fails transiently: the
// load balancer or an agent restarting, a connection reset, an attempt that
// timed out. The data path never retries this way; only calls that are
// safe to repeat (reads, and the admin API's idempotent changes) do.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Backoff between tries.
const (
	First = 100 * time.Millisecond
	Max   = 2 * time.Second
)

// Transport reports whether err is a failure of the connection that may
// pass: refused or reset (a restart), closed without an answer, or one
// attempt that timed out while the call's own deadline has not.
func Transport(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		// The client's own end of a connection the peer hung up on, torn
		// down while the request was still being written.
		errors.Is(err, net.ErrClosed) ||
		(errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded)) ||
		serverClosedIdle(err)
}

// serverClosedIdle reports net/http's error for a pooled connection the
// other side (or a proxy in between) closed as the request went out. The
// error is not exported, so its text is matched.
func serverClosedIdle(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err.Error() == "http: server closed idle connection" {
			return true
		}
	}
	return false
}

// Status reports whether an HTTP answer says "not now" rather than "no":
// 502 and 503 (a proxy in front, a server starting) and 429.
func Status(code int) bool {
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return true
	}
	return false
}

// Do calls try until it succeeds, fails for good (transient says no), ctx
// ends, or limit passes (0: until ctx ends), with backoff between tries.
// An error after more than one try says how many and for how long.
func Do(ctx context.Context, limit time.Duration, transient func(error) bool, try func() error) error {
	start := time.Now()
	backoff := First
	for tries := 1; ; tries++ {
		err := try()
		if err == nil {
			return nil
		}
		if !transient(err) || ctx.Err() != nil || (limit > 0 && time.Since(start)+backoff > limit) {
			if tries > 1 {
				err = fmt.Errorf("%w (after %d tries in %s)", err, tries, time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (gave up after %d tries in %s)", err, tries, time.Since(start).Round(time.Millisecond))
		case <-timer.C:
		}
		backoff = min(2*backoff, Max)
	}
}

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/zerodown/zerodown/internal/retry"
)

// deliver posts d until it is delivered, fails for good, runs out of
// retries, or ctx ends (Close gave up: counted, not warned one by one).
func (h *hook) deliver(ctx context.Context, d delivery) {
	o := h.n.opts
	backoff := o.Backoff
	for attempt := 1; ; attempt++ {
		wait, transient, err := h.attempt(ctx, d)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			h.mu.Lock()
			h.abandoned++
			h.mu.Unlock()
			return
		}
		if !transient || attempt > o.Retries {
			why := "not retried"
			if transient {
				why = fmt.Sprintf("after %d attempts", attempt)
			}
			h.n.warn(fmt.Sprintf("notify: %s: %s of run %s not delivered (%s): %v", h.name, d.event, d.run, why, err))
			return
		}
		if wait <= 0 {
			wait = backoff
		}
		timer := time.NewTimer(min(wait, o.MaxBackoff))
		select {
		case <-ctx.Done():
			timer.Stop()
			h.mu.Lock()
			h.abandoned++
			h.mu.Unlock()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, o.MaxBackoff)
	}
}

// attempt posts d once. It returns nil for a 2xx answer; otherwise whether
// another attempt may do better, and how long the receiver asked to wait
// (Retry-After), if it did.
func (h *hook) attempt(ctx context.Context, d delivery) (retryAfter time.Duration, transient bool, err error) {
	o := h.n.opts
	actx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.URL, bytes.NewReader(d.body))
	if err != nil {
		return 0, false, withoutURL(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", o.UserAgent)
	req.Header.Set("X-Zerodown-Event", d.event)
	req.Header.Set("X-Zerodown-Delivery", d.id)
	if h.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(h.Secret, d.body))
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		if actx.Err() != nil && ctx.Err() == nil {
			return 0, true, fmt.Errorf("no answer within %s", o.Timeout)
		}
		return 0, connectionError(err), withoutURL(err)
	}
	defer resp.Body.Close()
	// A short excerpt of the answer says why ("invalid_payload"); the rest
	// is read so the connection can be used again.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, false, nil
	}
	err = fmt.Errorf("answered %s", resp.Status)
	if line := firstLine(string(head)); line != "" {
		err = fmt.Errorf("%w: %s", err, line)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return parseRetryAfter(resp.Header.Get("Retry-After")), true, err
	case code >= 300 && code < 400:
		return 0, false, fmt.Errorf("%w (redirects are not followed: use the final URL)", err)
	}
	return 0, false, err
}

// connectionError reports a request that got no answer for a reason that
// may pass: the retry package's (refused, reset, closed), and also a name
// that did not resolve or a network not reachable, since a webhook is
// retried in the background at no cost to the deploy. A TLS or URL error
// is not: it will be the same next time.
func connectionError(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return retry.Transport(err) || errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial")
}

// withoutURL drops the URL net/http puts in its errors: a webhook URL's
// path may be its credential.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date; 0 when
// absent or unreadable.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

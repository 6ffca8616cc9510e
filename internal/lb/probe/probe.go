// Package probe is zerodown's own health check of a target, for load
// balancers that check nothing themselves (open-source nginx, an HAProxy
// server without `check`): GET http://ADDR+path, healthy on 2xx or 3xx.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// DefaultTimeout bounds one probe when the caller sets none.
const DefaultTimeout = 2 * time.Second

// Prober checks targets over one keep-alive-less client, so a probe never
// holds a connection the target would have to drain.
type Prober struct {
	Path    string
	Timeout time.Duration
	client  *http.Client
}

// New returns a Prober for the app's health path ("/" when empty).
func New(path string, timeout time.Duration) *Prober {
	if path == "" {
		path = "/"
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	return &Prober{Path: path, Timeout: timeout, client: &http.Client{
		Transport: tr,
		// A redirect answers the probe: 3xx is healthy, as for the agent.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// URL is what Check asks for addr.
func (p *Prober) URL(addr string) string { return "http://" + addr + p.Path }

// Check asks addr once; the error says what it answered or why it did not.
func (p *Prober) Check(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL(addr), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", p.URL(addr), err)
	}
	req.Header.Set("User-Agent", "zerodown-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("GET %s: no answer within %s", p.URL(addr), p.Timeout)
		}
		return fmt.Errorf("GET %s: %w", p.URL(addr), err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", p.URL(addr), resp.Status)
	}
	return nil
}

// Wait checks addr every interval until it passes or ctx ends; the error
// is the last check's, and why the waiting stopped.
func (p *Prober) Wait(ctx context.Context, addr string, interval time.Duration) error {
	for {
		err := p.Check(ctx, addr)
		if err == nil {
			return nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (until %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

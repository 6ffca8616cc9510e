package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// Health checks: GET http://127.0.0.1:PORT/path on a fresh connection
// (a kept-alive one could reach a process that is being replaced); any
// 2xx or 3xx answer is healthy, redirects are not followed.

// firstProbeDelay is the pause after the first failed probe of a gate.
// It doubles up to the spec's interval, so a release that starts in 20ms is
// seen healthy within a few milliseconds of listening, while the steady
// probing rate stays the spec's.
const firstProbeDelay = 2 * time.Millisecond

// minProbeTimeout is the least time one probe gets, however short the
// interval: a loaded host can take longer than 50ms to answer.
const minProbeTimeout = time.Second

var healthClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func healthURL(port int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, path)
}

// probe runs one health check; nil means healthy.
func probe(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "zerodown-agent")
	resp, err := healthClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func probeTimeout(h config.AppHealth) time.Duration {
	return max(time.Duration(h.Interval), minProbeTimeout)
}

// waitHealthy probes the app of p on port until it is healthy, the spec's
// health timeout or ctx runs out, or the process exits.
func waitHealthy(ctx context.Context, p *process, port int, h config.AppHealth) error {
	timeout := time.Duration(h.Timeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := healthURL(port, h.Path)
	interval := time.Duration(h.Interval)
	delay := min(firstProbeDelay, interval)
	began := time.Now()
	checks := 0
	var last error
	for {
		pt := probeTimeout(h)
		if dl, ok := ctx.Deadline(); ok {
			pt = min(pt, time.Until(dl))
		}
		checks++
		err := probe(ctx, url, pt)
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil {
			last = err // a check cut by the deadline says less than the one before
		}
		t := time.NewTimer(delay)
		select {
		case <-p.done:
			t.Stop()
			return fmt.Errorf("pid %d %s before it became healthy (last check: %v)", p.pid, p.exited(), last)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not healthy after %s (%d checks of %s, every %s): last check: %v",
				time.Since(began).Round(time.Millisecond), checks, url, interval, last)
		case <-t.C:
		}
		delay = min(delay*2, interval)
	}
}

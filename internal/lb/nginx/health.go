package nginx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// health asks the app on addr whether it is healthy: GET
// http://addr+HealthPath answering 2xx or 3xx within HealthTimeout.
func (b *Balancer) health(ctx context.Context, addr string) error {
	u := "http://" + addr + b.cfg.HealthPath
	ctx, cancel := context.WithTimeout(ctx, b.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", u, b.cfg.HealthTimeout)
		}
		return fmt.Errorf("GET %s: %w", u, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// awaitHealthy asks addr's health every healthRetry until it passes or
// ctx ends, and then returns the last failure.
func (b *Balancer) awaitHealthy(ctx context.Context, addr string) error {
	tick := time.NewTicker(healthRetry)
	defer tick.Stop()
	for {
		err := b.health(ctx, addr)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (until %v)", err, ctx.Err())
		case <-tick.C:
		}
	}
}

package proxy

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

// healthClient probes targets on a fresh connection each time, as AWS does,
// so a check proves the target accepts new connections.
func newHealthClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			DialContext:       (&net.Dialer{}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probe runs one health check of t and returns nil when it passed.
func (p *pool) probe(ctx context.Context, t *target) error {
	s := p.settings()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.health.Timeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr+s.health.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "zerodown-lb-health")
	resp, err := p.srv.healthClient.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("GET %s: no answer within %s", s.health.Path, time.Duration(s.health.Timeout))
		}
		return fmt.Errorf("GET %s: %w", s.health.Path, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < s.health.StatusMin || resp.StatusCode > s.health.StatusMax {
		return fmt.Errorf("GET %s: status %d, want %s", s.health.Path, resp.StatusCode, s.health.Status)
	}
	return nil
}

// startHealth begins active checks of t; the first runs at once so a new
// target can be proven without waiting a whole interval. Caller holds p.mu.
func (p *pool) startHealth(t *target) {
	stop := make(chan struct{})
	t.mu.Lock()
	if t.stopHealth != nil {
		close(t.stopHealth)
	}
	t.stopHealth = stop
	t.mu.Unlock()
	gen := t.generation.Load()
	go p.checkLoop(t, gen, stop)
}

// stopHealth ends t's checks; caller holds p.mu.
func (p *pool) stopHealth(t *target) {
	t.mu.Lock()
	if t.stopHealth != nil {
		close(t.stopHealth)
		t.stopHealth = nil
	}
	t.mu.Unlock()
}

func (p *pool) checkLoop(t *target, gen uint64, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var okRun, failRun int
	for {
		err := p.probe(ctx, t)
		if ctx.Err() != nil {
			return
		}
		if t.passiveDown.Swap(false) {
			// Marked down by connect failures: prove it again from zero.
			okRun = 0
		}
		switch {
		case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
			// The balancer is out of descriptors: that says nothing about
			// the target, so the check does not count either way.
		case err == nil:
			okRun, failRun = okRun+1, 0
			p.applyCheck(t, gen, err, &okRun, &failRun)
		default:
			okRun, failRun = 0, failRun+1
			p.applyCheck(t, gen, err, &okRun, &failRun)
		}
		t.checkedOnce.Do(func() { close(t.checked) })
		timer := time.NewTimer(time.Duration(p.settings().health.Interval))
		select {
		case <-stop:
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// applyCheck moves t between initial, healthy and unhealthy once a run of
// results reaches its threshold.
func (p *pool) applyCheck(t *target, gen uint64, err error, okRun, failRun *int) {
	s := p.settings()
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.generation.Load() != gen || t.detached.Load() {
		return
	}
	t.mu.Lock()
	if err != nil {
		t.lastHealth = err.Error()
	}
	t.mu.Unlock()
	st := t.loadState()
	if err != nil {
		t.trusted.Store(false)
	}
	switch {
	case err == nil && st != stateHealthy && (*okRun >= s.health.HealthyThreshold || t.trusted.Swap(false)):
		t.connFails.Store(0)
		t.setState(stateHealthy)
		t.mu.Lock()
		t.lastHealth = ""
		t.mu.Unlock()
		p.srv.log.Info("target healthy", "pool", p.name, "target", t.addr)
		p.rebuild()
	case err != nil && st != stateUnhealthy && *failRun >= s.health.UnhealthyThreshold:
		t.setState(stateUnhealthy)
		p.srv.log.Warn("target unhealthy", "pool", p.name, "target", t.addr, "reason", err.Error())
		p.rebuild()
	}
}

// connectFailed counts a failed connection attempt; a run of them marks a
// healthy target unhealthy at once instead of waiting for the next check.
func (p *pool) connectFailed(t *target, err error) {
	s := p.settings()
	n := t.connFails.Add(1)
	if s.passiveFailures <= 0 || int(n) < s.passiveFailures {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.detached.Load() || t.loadState() != stateHealthy {
		return
	}
	t.passiveDown.Store(true)
	t.setState(stateUnhealthy)
	reason := fmt.Sprintf("%d connection failures in a row: %v", n, err)
	t.mu.Lock()
	t.lastHealth = reason
	t.mu.Unlock()
	p.srv.log.Warn("target unhealthy", "pool", p.name, "target", t.addr, "reason", reason)
	p.rebuild()
}

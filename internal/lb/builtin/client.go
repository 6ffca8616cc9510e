// Package builtin is the Go client of the admin API of `zerodown lb`, the
// built-in load balancer (see docs/lb.md, "Admin API"), and its adapter to the
// engine's lb.Balancer interface.
package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proxy"
	"github.com/zerodown/zerodown/internal/retry"
)

const (
	// DefaultWaitTimeout is what the server waits when a call asks to wait
	// without a timeout (docs/lb.md).
	DefaultWaitTimeout = 30 * time.Second
	// callTimeout bounds a call that does not wait, so a hung admin API
	// cannot hang a deploy.
	callTimeout = 30 * time.Second
	// waitSlack is added to a wait's timeout for the HTTP deadline, so the
	// server's 504 (which carries the target's state) arrives before the
	// client gives up.
	waitSlack = 10 * time.Second
	// maxAnswer bounds how much of an answer is read: a pool listing is a
	// few hundred bytes per target.
	maxAnswer = 16 << 20
)

// Config says where the admin API is and how to authenticate.
type Config struct {
	// Admin is the base URL, such as http://127.0.0.1:9100.
	Admin string
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient is used for every call; nil means a default client. Its
	// Timeout, if set, must exceed the longest wait.
	HTTPClient *http.Client
	// RetryFor bounds how long a call keeps trying through transient
	// failures (the load balancer restarting); 0 keeps trying until the
	// call's deadline.
	RetryFor time.Duration
}

// Client calls the admin API. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	token    string
	http     *http.Client
	retryFor time.Duration
}

// New checks cfg and returns a client. It does not contact the server.
func New(cfg Config) (*Client, error) {
	if cfg.Admin == "" {
		return nil, errors.New("lb admin URL is empty")
	}
	u, err := url.Parse(cfg.Admin)
	if err != nil {
		return nil, fmt.Errorf("bad lb admin URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("bad lb admin URL %q: want http:// or https://", cfg.Admin)
	case u.Host == "":
		return nil, fmt.Errorf("bad lb admin URL %q: no host", cfg.Admin)
	case u.User != nil:
		// Credentials go in Token; a URL ends up in error messages.
		return nil, errors.New("bad lb admin URL: must not contain user info; pass the token separately")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("bad lb admin URL %q: must not have a query or fragment", cfg.Admin)
	}
	if cfg.Token == "" {
		return nil, errors.New("lb admin token is empty")
	}
	if strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// Never quote the token: errors end up in logs.
		return nil, errors.New("lb admin token contains spaces or control characters")
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	// Path prefixes are allowed (an admin API behind a proxy); keep exactly
	// one slash between them and /v1/...
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return &Client{base: u, token: cfg.Token, http: hc, retryFor: cfg.RetryFor}, nil
}

// Pool is a pool as the admin API reports it.
type Pool struct {
	Name        string `json:"name"`
	Balance     string `json:"balance"`
	FailOpen    bool   `json:"fail_open"`    // configured
	FailingOpen bool   `json:"failing_open"` // no healthy target now: sending to all
	// DeregistrationDelayMillis is how long a detached target's requests
	// may take before the load balancer cuts them.
	DeregistrationDelayMillis int64    `json:"deregistration_delay_ms"`
	Targets                   []Target `json:"targets"`
}

// Target is one backend of a pool as the admin API reports it.
type Target struct {
	Address  string   `json:"address"`
	State    lb.State `json:"state"`
	InFlight int      `json:"in_flight"`
	Weight   int      `json:"weight"`
	// Requests and Errors count requests sent to the target and those that
	// failed; Cut counts requests still in flight when a drain ran out.
	Requests        int64     `json:"requests"`
	Errors          int64     `json:"errors"`
	Cut             int64     `json:"cut"`
	LastHealthError string    `json:"last_health_error"`
	StateSince      time.Time `json:"state_since"`
}

// AttachRequest is the body of POST /v1/pools/{pool}/attach.
type AttachRequest struct {
	Target string `json:"target"`
	// Weight nil keeps the current weight (1 for a new target).
	Weight *int `json:"weight,omitempty"`
	// Wait makes the call return once the target is healthy.
	Wait bool `json:"wait,omitempty"`
	// Timeout bounds Wait, in Go duration syntax; empty means 30s.
	Timeout string `json:"timeout,omitempty"`
}

// DetachRequest is the body of POST /v1/pools/{pool}/detach.
type DetachRequest struct {
	Target string `json:"target"`
	// Wait makes the call return once the target is unused (drained).
	Wait bool `json:"wait,omitempty"`
	// Timeout bounds Wait, in Go duration syntax; empty means 30s.
	Timeout string `json:"timeout,omitempty"`
}

type weightRequest struct {
	Target string `json:"target"`
	Weight int    `json:"weight"`
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	// Call describes the failed call, such as
	// "detach 127.0.0.1:8101 from pool hello".
	Call string
	// Status is the HTTP status code: 400 bad input, 401 bad token, 404
	// unknown pool or target, 504 a wait ran out.
	Status int
	// Message is the server's {"error": ...}, or the status text when the
	// answer had none.
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s: %d: %s", e.Call, e.Status, e.Message)
}

// Pools lists every pool with its targets.
func (c *Client) Pools(ctx context.Context) ([]Pool, error) {
	var out struct {
		Pools []Pool `json:"pools"`
	}
	if err := c.do(ctx, "list pools", http.MethodGet, "/v1/pools", nil, 0, &out); err != nil {
		return nil, err
	}
	return out.Pools, nil
}

// Pool returns one pool with its targets.
func (c *Client) Pool(ctx context.Context, name string) (Pool, error) {
	call := "get pool " + name
	if name == "" {
		return Pool{}, errors.New(call + ": empty pool name")
	}
	var p Pool
	err := c.do(ctx, call, http.MethodGet, poolPath(name, ""), nil, 0, &p)
	return p, err
}

// Attach adds req.Target to pool, or changes its weight when it is attached
// already. With req.Wait it returns once the target is healthy. When a wait
// runs out the error is an *APIError with Status 504 and the returned Target
// is the target as it was then.
func (c *Client) Attach(ctx context.Context, pool string, req AttachRequest) (Target, error) {
	call := fmt.Sprintf("attach %s to pool %s", req.Target, pool)
	wait, err := checkTargetCall(call, pool, req.Target, req.Wait, req.Timeout)
	if err != nil {
		return Target{}, err
	}
	if req.Weight != nil && *req.Weight < 0 {
		return Target{}, fmt.Errorf("%s: negative weight %d", call, *req.Weight)
	}
	var t Target
	err = c.do(ctx, call, http.MethodPost, poolPath(pool, "attach"), req, wait, &t)
	return t, err
}

// Detach stops new requests to req.Target; in-flight ones finish. With
// req.Wait it returns once the target is unused. When a wait runs out the
// error is an *APIError with Status 504 and the returned Target is the
// target as it was then.
func (c *Client) Detach(ctx context.Context, pool string, req DetachRequest) (Target, error) {
	call := fmt.Sprintf("detach %s from pool %s", req.Target, pool)
	wait, err := checkTargetCall(call, pool, req.Target, req.Wait, req.Timeout)
	if err != nil {
		return Target{}, err
	}
	var t Target
	err = c.do(ctx, call, http.MethodPost, poolPath(pool, "detach"), req, wait, &t)
	return t, err
}

// SetWeight changes the share of new requests target gets in pool.
func (c *Client) SetWeight(ctx context.Context, pool, target string, weight int) (Target, error) {
	call := fmt.Sprintf("set weight of %s in pool %s to %d", target, pool, weight)
	if _, err := checkTargetCall(call, pool, target, false, ""); err != nil {
		return Target{}, err
	}
	if weight < 0 {
		return Target{}, fmt.Errorf("%s: negative weight", call)
	}
	var t Target
	err := c.do(ctx, call, http.MethodPost, poolPath(pool, "weight"), weightRequest{Target: target, Weight: weight}, 0, &t)
	return t, err
}

// Switch sends the routes configured for pool req.From to pool req.To, on
// every listener at once (blue-green's switch); To == From puts them back.
// It answers the switches in force after it.
func (c *Client) Switch(ctx context.Context, req proxy.SwitchRequest) (proxy.SwitchesView, error) {
	call := fmt.Sprintf("switch the routes of pool %s to pool %s", req.From, req.To)
	if req.From == "" || req.To == "" {
		return proxy.SwitchesView{}, fmt.Errorf("%s: both pools must be named", call)
	}
	var v proxy.SwitchesView
	err := c.do(ctx, call, http.MethodPost, "/v1/switch", req, 0, &v)
	return v, err
}

// Switches are the pools whose routes go to another pool now.
func (c *Client) Switches(ctx context.Context) (map[string]string, error) {
	var v proxy.SwitchesView
	if err := c.do(ctx, "read the switches", http.MethodGet, "/v1/switches", nil, 0, &v); err != nil {
		return nil, err
	}
	return v.Switches, nil
}

// Upgrade asks the load balancer to hand its sockets to a new process
// started from its executable's path, and waits up to timeout for the new
// process to serve. It is sent once: an upgrade is not a call to repeat
// blindly, and a lost answer is best checked with Pools.
func (c *Client) Upgrade(ctx context.Context, timeout time.Duration) (proxy.UpgradeResult, error) {
	call := "upgrade the load balancer at " + c.base.Redacted()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out proxy.UpgradeResult
	err := c.once(ctx, call, http.MethodPost, "/v1/upgrade", nil, &out)
	return out, err
}

// checkTargetCall rejects what the server would reject anyway, without a
// round trip, and returns how long the server may wait (0: no wait).
func checkTargetCall(call, pool, target string, wait bool, timeout string) (time.Duration, error) {
	if pool == "" {
		return 0, errors.New(call + ": empty pool name")
	}
	if target == "" {
		return 0, errors.New(call + ": empty target")
	}
	if !wait {
		return 0, nil
	}
	if timeout == "" {
		return DefaultWaitTimeout, nil
	}
	d, err := time.ParseDuration(timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: bad wait timeout %q: want a positive duration such as 30s", call, timeout)
	}
	return d, nil
}

func poolPath(pool, action string) string {
	p := "/v1/pools/" + url.PathEscape(pool)
	if action != "" {
		p += "/" + action
	}
	return p
}

// do sends one call and decodes a 2xx answer into out. A wait > 0 is how long
// the server may hold the call. On a non-2xx answer it still decodes a target
// the body carries into out, so a 504 shows how far a wait got.
//
// Every call of the admin API is idempotent (attach of an attached target,
// detach of a detached one, a weight set twice), so a transient failure —
// the load balancer restarting (connection refused or reset), an attempt
// that timed out, a 502, 503 or 429 — is tried again with backoff until the
// call's deadline: one refused connection during a restart must not fail a
// deploy's step.
func (c *Client) do(ctx context.Context, call, method, path string, in any, wait time.Duration, out any) error {
	timeout := callTimeout
	if wait > 0 {
		timeout = wait + waitSlack
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", call, err)
		}
		body = b
	}
	return retry.Do(ctx, c.retryFor, transient, func() error {
		return c.once(ctx, call, method, path, body, out)
	})
}

// transient reports whether a failed call may succeed if tried again. A
// 504 is a wait that ran out: an answer, not a failure.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return retry.Status(ae.Status)
	}
	return retry.Transport(err)
}

// once sends the call one time.
func (c *Client) once(ctx context.Context, call, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// path is escaped already (poolPath), so it is appended to the escaped
	// base rather than to URL.Path, which would escape it twice.
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error names the method and URL, never headers: the token
		// stays out of the message.
		return fmt.Errorf("%s: %w", call, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s: reading answer: %w", call, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.apiError(call, resp.StatusCode, raw, out)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: bad answer from %s: %w", call, c.base.Redacted(), err)
	}
	return nil
}

// apiError builds the error of a non-2xx answer. The doc promises
// {"error": "..."}; a 504 of a wait also carries the target, either inline
// or under "target", and that is decoded into out when out is a *Target.
func (c *Client) apiError(call string, status int, raw []byte, out any) error {
	var e struct {
		Error  string          `json:"error"`
		Target json.RawMessage `json:"target"`
	}
	msg := ""
	if json.Unmarshal(raw, &e) == nil {
		msg = e.Error
		if t, ok := out.(*Target); ok {
			decodeTarget(raw, e.Target, t)
		}
	} else if s := strings.TrimSpace(string(raw)); s != "" && len(s) < 200 && !strings.ContainsAny(s, "<\x00") {
		// A proxy in front of the admin API may answer in plain text.
		msg = s
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(status))
	}
	return &APIError{Call: call, Status: status, Message: msg}
}

// decodeTarget fills t from {"error", "target": {...}} or from a body that
// is a Target with an extra "error" field; it leaves t alone otherwise.
func decodeTarget(raw, nested json.RawMessage, t *Target) {
	var got Target
	src := raw
	if len(nested) > 0 && string(nested) != "null" {
		src = nested
	}
	if json.Unmarshal(src, &got) == nil && got.Address != "" {
		*t = got
	}
}

// Balancer returns the engine's view of one pool. Its Attach and Detach do
// not wait: the engine watches Targets. It also implements lb.Weighter.
func (c *Client) Balancer(pool string) lb.Balancer {
	return &poolBalancer{c: c, pool: pool}
}

// poolBalancer adapts a Client to lb.Balancer and lb.Weighter for one pool.
type poolBalancer struct {
	c    *Client
	pool string
}

var (
	_ lb.Balancer      = (*poolBalancer)(nil)
	_ lb.Weighter      = (*poolBalancer)(nil)
	_ lb.Counter       = (*poolBalancer)(nil)
	_ lb.TargetStatser = (*poolBalancer)(nil)
)

// Counts reads the pool's retries and target errors from /metrics.
func (b *poolBalancer) Counts(ctx context.Context) (lb.Counts, error) {
	return b.c.Counts(ctx, b.pool)
}

// TargetStats reads the pool's answers per target from /metrics.
func (b *poolBalancer) TargetStats(ctx context.Context) (map[string]lb.TargetStat, error) {
	return b.c.TargetStats(ctx, b.pool)
}

func (b *poolBalancer) Targets(ctx context.Context) ([]lb.Target, error) {
	p, err := b.c.Pool(ctx, b.pool)
	if err != nil {
		return nil, err
	}
	out := make([]lb.Target, len(p.Targets))
	for i, t := range p.Targets {
		out[i] = lb.Target{
			Address:  t.Address,
			State:    t.State,
			InFlight: t.InFlight,
			Weight:   t.Weight,
			Reason:   t.LastHealthError,
			Cut:      t.Cut,
		}
	}
	return out, nil
}

// DrainBound implements lb.DrainBounder: the pool's deregistration_delay.
func (b *poolBalancer) DrainBound(ctx context.Context) (time.Duration, error) {
	p, err := b.c.Pool(ctx, b.pool)
	if err != nil {
		return 0, err
	}
	return time.Duration(p.DeregistrationDelayMillis) * time.Millisecond, nil
}

func (b *poolBalancer) Attach(ctx context.Context, address string) error {
	_, err := b.c.Attach(ctx, b.pool, AttachRequest{Target: address})
	return err
}

func (b *poolBalancer) Detach(ctx context.Context, address string) error {
	_, err := b.c.Detach(ctx, b.pool, DetachRequest{Target: address})
	return err
}

func (b *poolBalancer) SetWeight(ctx context.Context, address string, weight int) error {
	_, err := b.c.SetWeight(ctx, b.pool, address, weight)
	return err
}

// String names the pool and admin URL, for logs.
func (b *poolBalancer) String() string {
	return "pool " + b.pool + " of zerodown lb at " + b.c.base.Redacted()
}

// BlueGreen returns the lb.Switcher of two pools: lb.yaml routes live
// traffic to pool live and its preview listener to pool preview; a switch
// sends each of those routes to the other pool, and back.
func (c *Client) BlueGreen(live, preview string) lb.Switcher {
	return &switcher{c: c, live: live, preview: preview}
}

type switcher struct {
	c             *Client
	live, preview string // the pools lb.yaml's routes name
}

// Live is where the routes lb.yaml sends to the live pool go now.
func (s *switcher) Live(ctx context.Context) (string, error) {
	sw, err := s.c.Switches(ctx)
	if err != nil {
		return "", err
	}
	to, ok := sw[s.live]
	if !ok {
		return s.live, nil
	}
	if to != s.live && to != s.preview {
		return "", fmt.Errorf("zerodown lb sends the routes of pool %s to pool %s, which is neither %s nor %s: switch it back with `zerodown lb switch %s %s`",
			s.live, to, s.live, s.preview, s.live, s.live)
	}
	return to, nil
}

// SwitchLive moves the live routes first, in one call, so live traffic
// switches at once; the preview routes follow.
func (s *switcher) SwitchLive(ctx context.Context, pool string) error {
	other, err := lb.OtherPool([2]string{s.live, s.preview}, pool)
	if err != nil {
		return err
	}
	// The routes lb.yaml gives the live pool go to pool, those it gives
	// the preview pool go to the other.
	moves := [2][2]string{{s.live, pool}, {s.preview, other}}
	for i, m := range moves {
		// The preview may go to a pool that serves nothing yet (the
		// first deploy): it only answers 503 there.
		if _, err := s.c.Switch(ctx, proxy.SwitchRequest{From: m[0], To: m[1], Force: i == 1}); err != nil {
			if i == 1 {
				return fmt.Errorf("live traffic switched to %s, but the preview was not: %w", pool, err)
			}
			return err
		}
	}
	return nil
}

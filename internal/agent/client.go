package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/retry"
)

const (
	// clientCallTimeout bounds a call that does not wait for an activation
	// or carry an artifact.
	clientCallTimeout = 30 * time.Second
	// maxAnswer bounds how much of an answer is read.
	maxAnswer = 16 << 20
)

// ClientConfig says where an agent is and how to authenticate.
type ClientConfig struct {
	// URL is the agent's base URL, such as http://127.0.0.1:7101.
	URL string
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient is used for every call; nil means one with default
	// settings. Its Timeout, if set, must exceed the longest activation.
	HTTPClient *http.Client
	// ActivateTimeout is sent with Activate and Rollback; 0 lets the
	// agent use the release's own bounds.
	ActivateTimeout time.Duration
	// RetryFor bounds how long a read keeps trying through transient
	// failures (the agent restarting); 0 keeps trying until its deadline.
	RetryFor time.Duration
}

// Client calls an agent's API. It implements host.Deployer and is safe
// for concurrent use.
type Client struct {
	base            *url.URL
	token           string
	http            *http.Client
	activateTimeout time.Duration
	retryFor        time.Duration
	observeEvery    time.Duration
}

var _ host.Deployer = (*Client)(nil)

// NewClient checks cfg; it does not contact the agent.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("agent URL is empty")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bad agent URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("bad agent URL %q: want http:// or https://", cfg.URL)
	case u.Host == "":
		return nil, fmt.Errorf("bad agent URL %q: no host", cfg.URL)
	case u.User != nil:
		return nil, errors.New("bad agent URL: must not contain user info; pass the token separately")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("bad agent URL %q: must not have a query or fragment", cfg.URL)
	}
	if cfg.Token == "" {
		return nil, errors.New("agent token is empty")
	}
	if strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("agent token contains spaces or control characters")
	}
	if cfg.ActivateTimeout < 0 || cfg.ActivateTimeout > maxActivateTimeout {
		return nil, fmt.Errorf("activate timeout %s is out of range [0, %s]", cfg.ActivateTimeout, maxActivateTimeout)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return &Client{base: u, token: cfg.Token, http: hc, activateTimeout: cfg.ActivateTimeout, retryFor: cfg.RetryFor, observeEvery: observeEvery}, nil
}

// APIError is a non-2xx answer of the agent.
type APIError struct {
	// Call describes the call, such as "activate v2 on http://127.0.0.1:7101".
	Call   string
	Status int
	// Code is the agent's machine-readable code (see docs/agent.md).
	Code    string
	Message string
	// Failure is set for a failed activation: what failed, what runs now
	// and the release's last output lines.
	Failure *ActivationFailure
	// Activation is set for a 409 busy: the activation in progress.
	Activation *ActivationInfo
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s: %d: %s", e.Call, e.Status, e.Message)
	if e.Failure != nil && len(e.Failure.Output) > 0 {
		msg += "\nlast output of " + e.Failure.Version + ":\n  " + strings.Join(e.Failure.Output, "\n  ")
	}
	return msg
}

// Is maps the agent's codes to host's errors.
func (e *APIError) Is(target error) bool {
	switch target {
	case host.ErrNotFound:
		return e.Code == codeNotFound
	case host.ErrConflict:
		return e.Code == codeConflict
	case host.ErrBusy:
		return e.Code == codeBusy
	case host.ErrUnhealthy:
		return e.Code == codeFailed || e.Code == codeBroken
	case host.ErrChecksum:
		return e.Code == codeChecksum
	}
	return false
}

// Upload implements host.Deployer.
func (c *Client) Upload(ctx context.Context, r host.Release) error {
	_, err := c.Put(ctx, r)
	return err
}

// Put uploads a release and returns what the agent stored. The body is
// sent only after the agent has checked everything else ("Expect:
// 100-continue"), so re-uploading a stored release costs one round trip.
func (c *Client) Put(ctx context.Context, r host.Release) (UploadResult, error) {
	call := fmt.Sprintf("upload %s to %s", r.Version, c.base.Redacted())
	var out UploadResult
	if r.Open == nil {
		return out, errors.New(call + ": the release has no artifact (Open is nil)")
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return out, fmt.Errorf("%s: encode app spec: %w", call, err)
	}
	q := url.Values{"sha256": {r.SHA256}, "format": {r.Format}}
	if r.Name != "" {
		q.Set("name", r.Name)
	}
	// An upload is safe to send again: the agent keeps nothing of one that
	// did not arrive whole, and the same version and digest twice is
	// "unchanged". A cut or stalled upload is tried again from the start.
	once := func() error {
		body, err := r.Open()
		if err != nil {
			return fmt.Errorf("%s: open artifact: %w", call, err)
		}
		defer body.Close()
		req, err := c.request(ctx, http.MethodPut, "/v1/releases/"+url.PathEscape(r.Version)+"?"+q.Encode(), body)
		if err != nil {
			return fmt.Errorf("%s: %w", call, err)
		}
		req.ContentLength = r.Size
		if r.Size == 0 {
			req.Body = http.NoBody
		}
		req.Header.Set(SpecHeader, base64.StdEncoding.EncodeToString(spec))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Expect", "100-continue")
		return c.send(call, req, &out)
	}
	err = retry.Do(ctx, c.retryFor, func(err error) bool {
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == codeIncomplete {
			return true
		}
		return transient(err)
	}, once)
	return out, err
}

// Releases lists the releases on the host, oldest first.
func (c *Client) Releases(ctx context.Context) ([]ReleaseInfo, error) {
	var out struct {
		Releases []ReleaseInfo `json:"releases"`
	}
	err := c.do(ctx, "list releases on "+c.base.Redacted(), http.MethodGet, "/v1/releases", nil, clientCallTimeout, &out)
	return out.Releases, err
}

// Release returns one release.
func (c *Client) Release(ctx context.Context, version string) (ReleaseInfo, error) {
	var out ReleaseInfo
	err := c.do(ctx, fmt.Sprintf("get release %s on %s", version, c.base.Redacted()), http.MethodGet,
		"/v1/releases/"+url.PathEscape(version), nil, clientCallTimeout, &out)
	return out, err
}

// Activate implements host.Deployer.
func (c *Client) Activate(ctx context.Context, version string) error {
	_, err := c.ActivateWith(ctx, ActivateRequest{Version: version})
	return err
}

// ActivateWith activates a release and returns how it went; an empty
// Timeout takes the client's ActivateTimeout. A failed activation is an
// *APIError with Failure set.
func (c *Client) ActivateWith(ctx context.Context, req ActivateRequest) (ActivateResult, error) {
	call := fmt.Sprintf("activate %s on %s", req.Version, c.base.Redacted())
	if req.Version == "" {
		return ActivateResult{}, errors.New(call + ": empty version")
	}
	req.Timeout = c.timeout(req.Timeout)
	if req.ID == "" {
		req.ID = newRequestID()
	}
	return c.switchObserved(ctx, call, "/v1/activate", req, req.ID)
}

// Rollback implements host.Deployer.
func (c *Client) Rollback(ctx context.Context) error {
	_, err := c.RollbackWith(ctx, RollbackRequest{})
	return err
}

// RollbackWith activates the previous release and returns how it went.
func (c *Client) RollbackWith(ctx context.Context, req RollbackRequest) (ActivateResult, error) {
	req.Timeout = c.timeout(req.Timeout)
	if req.ID == "" {
		req.ID = newRequestID()
	}
	return c.switchObserved(ctx, "roll back on "+c.base.Redacted(), "/v1/rollback", req, req.ID)
}

// ActivateSwap implements host.Swapper: version starts in the idle slot
// beside the running release, which keeps running until Retire.
func (c *Client) ActivateSwap(ctx context.Context, version string) error {
	_, err := c.ActivateWith(ctx, ActivateRequest{Version: version, Swap: true})
	return err
}

// RollbackSwap implements host.Swapper.
func (c *Client) RollbackSwap(ctx context.Context) error {
	_, err := c.RollbackWith(ctx, RollbackRequest{Swap: true})
	return err
}

// Retire implements host.Swapper: it stops the release a swap left
// running in the other slot; nothing retiring is not an error.
func (c *Client) Retire(ctx context.Context) error {
	var res RetireResult
	return c.do(ctx, "retire the old release on "+c.base.Redacted(), http.MethodPost, "/v1/retire", struct{}{}, 0, &res)
}

func (c *Client) timeout(s string) string {
	if s == "" && c.activateTimeout > 0 {
		return c.activateTimeout.String()
	}
	return s
}

// Status implements host.Deployer.
func (c *Client) Status(ctx context.Context) (host.Status, error) {
	s, err := c.AgentStatus(ctx)
	return s.Host(), err
}

// AgentStatus returns the agent's full status.
func (c *Client) AgentStatus(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, "status of "+c.base.Redacted(), http.MethodGet, "/v1/status", nil, clientCallTimeout, &out)
	return out, err
}

// Logs returns the last lines of a release's output; "" is the current.
func (c *Client) Logs(ctx context.Context, version string, lines int) (LogsResult, error) {
	q := url.Values{}
	if version != "" {
		q.Set("version", version)
	}
	if lines > 0 {
		q.Set("lines", strconv.Itoa(lines))
	}
	p := "/v1/logs"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out LogsResult
	err := c.do(ctx, "logs of "+c.base.Redacted(), http.MethodGet, p, nil, clientCallTimeout, &out)
	return out, err
}

// Metrics returns the agent's Prometheus metrics in text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, clientCallTimeout)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return "", fmt.Errorf("metrics of %s: %w", c.base.Redacted(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", &APIError{Call: "metrics of " + c.base.Redacted(), Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	return string(b), nil
}

func (c *Client) request(ctx context.Context, method, pathQuery string, body io.Reader) (*http.Request, error) {
	u := *c.base
	p, q, _ := strings.Cut(pathQuery, "?")
	u.Path += p
	u.RawPath = ""
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends a JSON call; bound 0 leaves the time to ctx (activations).
func (c *Client) do(ctx context.Context, call, method, path string, in any, bound time.Duration, out any) error {
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	var payload []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", call, err)
		}
		payload = b
	}
	once := func() error {
		var body io.Reader
		if payload != nil {
			body = bytes.NewReader(payload)
		}
		req, err := c.request(ctx, method, path, body)
		if err != nil {
			return fmt.Errorf("%s: %w", call, err)
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return c.send(call, req, out)
	}
	if method != http.MethodGet {
		// An activation or a rollback changes the host: it is asked once,
		// and the engine observes what became of it.
		return once()
	}
	// A read is safe to repeat: an agent restarting, or a connection
	// reset, does not fail it before its deadline.
	return retry.Do(ctx, c.retryFor, transient, once)
}

// transient reports whether a failed read may succeed if tried again.
func transient(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return retry.Status(ae.Status)
	}
	return retry.Transport(err)
}

func (c *Client) send(call string, req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", call, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", call, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb errorBody
		ae := &APIError{Call: call, Status: resp.StatusCode}
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			ae.Code, ae.Message, ae.Failure, ae.Activation = eb.Code, eb.Error, eb.Failure, eb.Activation
		} else {
			ae.Message = http.StatusText(resp.StatusCode)
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: the answer is not the expected JSON: %w", call, err)
	}
	return nil
}

package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Client talks to a zerodown server: the CLI's `--server` and any Go
// program. Every call takes a context; nothing waits without one.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// NewClient returns a client of the server at rawURL with a token.
func NewClient(rawURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://host:port", rawURL)
	}
	if token == "" {
		return nil, errors.New("no token for the server: set ZERODOWN_TOKEN or --token-file")
	}
	// No overall timeout: event streams last as long as their run; each
	// call's context bounds it.
	return &Client{base: u, token: token, http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}, nil
}

// URL is the server's address.
func (c *Client) URL() string { return c.base.String() }

// StatusError is an error answer of the API.
type StatusError struct {
	Status  int
	Code    string
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server: %s (%d %s)", e.Message, e.Status, e.Code)
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return req, nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	return decode(resp, out)
}

func decode(resp *http.Response, out any) error {
	if resp.StatusCode >= 300 {
		var e Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return &StatusError{Status: resp.StatusCode, Code: CodeInternal, Message: strings.TrimSpace(string(b))}
		}
		return &StatusError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("server answer: %w", err)
	}
	return nil
}

// codeOf is the API's error code for an error status, for an answer that
// has no body to say it (HEAD).
func codeOf(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusServiceUnavailable:
		return CodeUnavailable
	}
	return CodeInternal
}

// Upload sends the artifact at path unless the server has it already, and
// returns its sha256.
func (c *Client) Upload(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("artifact %s: %w", path, err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	req, err := c.newRequest(ctx, http.MethodHead, "/api/v1/artifacts/"+sha, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("server %s: %w", c.base.Host, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return sha, nil // uploaded before
	case http.StatusNotFound:
	default:
		// A HEAD answer has no body to carry the error's code: the
		// status says it, so a refused token is told as one (and the CLI
		// exits 2 for it, as for any other call).
		return "", &StatusError{Status: resp.StatusCode, Code: codeOf(resp.StatusCode),
			Message: http.StatusText(resp.StatusCode) + " checking for artifact " + sha}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	req, err = c.newRequest(ctx, http.MethodPut, "/api/v1/artifacts/"+sha+"?name="+url.QueryEscape(filepath.Base(path)), f)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload %s to %s: %w", path, c.base.Host, err)
	}
	defer resp.Body.Close()
	return sha, decode(resp, nil)
}

// CreateRun starts a run.
func (c *Client) CreateRun(ctx context.Context, r CreateRun) (CreateRunResult, error) {
	var out CreateRunResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs", r, &out)
}

// Promote deploys the build that passed one environment to another.
func (c *Client) Promote(ctx context.Context, p Promote) (CreateRunResult, error) {
	var out CreateRunResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/promote", p, &out)
}

// Run returns a run with its tasks.
func (c *Client) Run(ctx context.Context, id string) (RunDetail, error) {
	var out RunDetail
	return out, c.do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), nil, &out)
}

// RunQuery filters ListRuns; empty fields match all.
type RunQuery struct {
	Env, Status, Version, Before string
	Limit                        int
}

// Runs lists runs, newest first, a page at a time.
func (c *Client) Runs(ctx context.Context, q RunQuery) (RunList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"env": q.Env, "status": q.Status, "version": q.Version, "before": q.Before} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out RunList
	path := "/api/v1/runs"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Events returns a run's events after seq.
func (c *Client) Events(ctx context.Context, id string, after int64) ([]Event, error) {
	var out []Event
	return out, c.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/runs/%s/events?after=%d", url.PathEscape(id), after), nil, &out)
}

// Approve approves a stage of a run (the waiting one when stage is empty).
func (c *Client) Approve(ctx context.Context, id, stage string) (Approval, error) {
	var out Approval
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/approve", ApproveRun{Stage: stage}, &out)
}

// PromoteCanary ends a canary run's steps now.
func (c *Client) PromoteCanary(ctx context.Context, id string) (Approval, error) {
	var out Approval
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/promote", nil, &out)
}

// Abort asks a run to stop and roll back.
func (c *Client) Abort(ctx context.Context, id string) (Run, error) {
	var out Run
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/abort", nil, &out)
}

// Rollback starts the rollback of an ended run.
func (c *Client) Rollback(ctx context.Context, id string) (CreateRunResult, error) {
	var out CreateRunResult
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/rollback", nil, &out)
}

// Follow streams a run's events after seq to fn, reconnecting with
// Last-Event-ID when the connection drops (to whichever replica answers),
// until the run ends; it returns the run as it ended. Reconnects give up
// after giveUp without an answer.
func (c *Client) Follow(ctx context.Context, id string, after int64, fn func(Event)) (Run, error) {
	const giveUp = time.Minute
	failingSince := time.Time{}
	backoff := 200 * time.Millisecond
	for {
		end, last, err := c.stream(ctx, id, after, fn)
		if end != nil {
			return *end, nil
		}
		if last > after {
			after, failingSince, backoff = last, time.Time{}, 200*time.Millisecond
		}
		var se *StatusError
		if errors.As(err, &se) && se.Status < 500 {
			return Run{}, err // the run is unknown, the token refused: asking again will not help
		}
		if ctx.Err() != nil {
			return Run{}, ctx.Err()
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		} else if time.Since(failingSince) > giveUp {
			return Run{}, fmt.Errorf("following run %s: no answer from %s for %s: %w", id, c.base.Host, giveUp, err)
		}
		select {
		case <-ctx.Done():
			return Run{}, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// stream reads one SSE connection: events go to fn; the end event's run
// is returned; last is the last event's seq seen.
func (c *Client) stream(ctx context.Context, id string, after int64, fn func(Event)) (end *Run, last int64, err error) {
	last = after
	req, err := c.newRequest(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id)+"/events", nil)
	if err != nil {
		return nil, last, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, last, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, last, decode(resp, nil)
	}
	// The server writes at least a keep-alive every 15 s: a stream silent
	// for much longer comes from a replica that is paused or cut off, and
	// is left for another (the load balancer in front picks one).
	idle := time.AfterFunc(streamIdle, func() { resp.Body.Close() })
	defer idle.Stop()
	body := &idleReader{r: resp.Body, t: idle}
	err = ReadSSE(body, func(name, data string) error {
		if name == SSEEnd {
			var r Run
			if err := json.Unmarshal([]byte(data), &r); err != nil {
				return fmt.Errorf("end of stream: %w", err)
			}
			end = &r
			return io.EOF
		}
		var e Event
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		if e.Seq > last {
			last = e.Seq
			fn(e)
		}
		return nil
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if end == nil && err == nil {
		err = errors.New("the event stream ended before the run")
	}
	return end, last, err
}

// streamIdle is how long an event stream may stay silent before it is
// dropped and opened again.
const streamIdle = 40 * time.Second

// idleReader pushes its timer back at every read that brings bytes.
type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(streamIdle)
	}
	return n, err
}

// ReadSSE reads a text/event-stream and calls fn with each event's name
// ("message" when none) and data; it stops at fn's first error.
func ReadSSE(r io.Reader, fn func(name, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var name string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data.Len() > 0 {
				n := name
				if n == "" {
					n = "message"
				}
				if err := fn(n, strings.TrimSuffix(data.String(), "\n")); err != nil {
					return err
				}
			}
			name = ""
			data.Reset()
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				name = value
			case "data":
				data.WriteString(value)
				data.WriteByte('\n')
			}
		}
	}
	return sc.Err()
}

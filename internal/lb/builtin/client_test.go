package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
)

const testToken = "s3cret-token"

var since = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)

// fakeAdmin implements the documented shapes of the admin API (docs/lb.md)
// over a fixed set of pools, and records the last request it saw.
type fakeAdmin struct {
	mu    sync.Mutex
	pools map[string]*Pool
	last  recorded
	// stuck targets never reach the state a wait asks for: the call answers
	// 504 with the target, nested under "target" or inline.
	stuckNested, stuckInline string
}

type recorded struct {
	method, path, auth, contentType string
	body                            map[string]any
}

func newFakeAdmin() *fakeAdmin {
	return &fakeAdmin{
		pools: map[string]*Pool{
			"hello": {Name: "hello", Balance: "least_outstanding", FailOpen: true, Targets: []Target{
				{Address: "127.0.0.1:8101", State: lb.StateHealthy, InFlight: 2, Weight: 1, Requests: 100, Errors: 1, StateSince: since},
				{Address: "127.0.0.1:8102", State: lb.StateUnhealthy, Weight: 3, LastHealthError: "GET /healthz: 503", StateSince: since},
			}},
			"api": {Name: "api", Balance: "round_robin"},
		},
		stuckNested: "127.0.0.1:8198",
		stuckInline: "127.0.0.1:8199",
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

func (f *fakeAdmin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/pools", func(w http.ResponseWriter, r *http.Request) {
		var out struct {
			Pools []Pool `json:"pools"`
		}
		for _, name := range []string{"api", "hello"} {
			out.Pools = append(out.Pools, *f.pools[name])
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("GET /v1/pools/{pool}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := f.pools[r.PathValue("pool")]
		if !ok {
			fail(w, 404, "unknown pool %q", r.PathValue("pool"))
			return
		}
		writeJSON(w, 200, p)
	})
	mux.HandleFunc("POST /v1/pools/{pool}/{action}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := f.pools[r.PathValue("pool")]
		if !ok {
			fail(w, 404, "unknown pool %q", r.PathValue("pool"))
			return
		}
		var req struct {
			Target  string `json:"target"`
			Weight  *int   `json:"weight"`
			Wait    bool   `json:"wait"`
			Timeout string `json:"timeout"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.Target == "" {
			fail(w, 400, "body needs a target")
			return
		}
		if _, _, err := net.SplitHostPort(req.Target); err != nil {
			fail(w, 400, "bad target %q: want ip:port", req.Target)
			return
		}
		t := Target{Address: req.Target, State: lb.StateInitial, Weight: 1, StateSince: since}
		for _, have := range p.Targets {
			if have.Address == req.Target {
				t = have
			}
		}
		action := r.PathValue("action")
		switch action {
		case "attach":
			if req.Weight != nil {
				t.Weight = *req.Weight
			}
			if req.Wait {
				t.State = lb.StateHealthy
			}
		case "detach", "weight":
			if t.State == lb.StateInitial && t.Address != f.stuckNested && t.Address != f.stuckInline {
				fail(w, 404, "unknown target %q in pool %q", req.Target, p.Name)
				return
			}
			if action == "weight" {
				if req.Weight == nil {
					fail(w, 400, "body needs a weight")
					return
				}
				t.Weight = *req.Weight
			} else {
				t.State = lb.StateDraining
				if req.Wait {
					t.State = lb.StateUnused
				}
			}
		default:
			http.NotFound(w, r)
			return
		}
		if req.Wait && (t.Address == f.stuckNested || t.Address == f.stuckInline) {
			t.State, t.InFlight = lb.StateDraining, 3
			msg := fmt.Sprintf("wait timed out after %s: target is %s with 3 in flight", req.Timeout, t.State)
			if t.Address == f.stuckNested {
				writeJSON(w, 504, map[string]any{"error": msg, "target": t})
				return
			}
			inline := map[string]any{}
			b, _ := json.Marshal(t)
			_ = json.Unmarshal(b, &inline)
			inline["error"] = msg
			writeJSON(w, 504, inline)
			return
		}
		writeJSON(w, 200, t)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		rec := recorded{method: r.Method, path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			if len(b) > 0 {
				_ = json.Unmarshal(b, &rec.body)
			}
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		f.last = rec
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			fail(w, 401, "missing or wrong token")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (f *fakeAdmin) lastRequest() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func newTestClient(t *testing.T, url, token string) *Client {
	t.Helper()
	c, err := New(Config{Admin: url, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func TestClientCalls(t *testing.T) {
	fake := newFakeAdmin()
	srv := httptest.NewServer(fake.handler())
	defer srv.Close()
	hello := *fake.pools["hello"]

	tests := []struct {
		name  string
		token string // default testToken
		call  func(context.Context, *Client) (any, error)

		wantMethod, wantPath string
		wantBody             map[string]any // nil: no body expected
		want                 any
		wantErr              string // whole Error() text
		wantStatus           int    // of the *APIError
	}{
		{
			name:       "list pools",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Pools(ctx) },
			wantMethod: "GET", wantPath: "/v1/pools",
			want: []Pool{*fake.pools["api"], hello},
		},
		{
			name:       "get pool",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Pool(ctx, "hello") },
			wantMethod: "GET", wantPath: "/v1/pools/hello",
			want: hello,
		},
		{
			name:       "pool name is escaped",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Pool(ctx, "a/b c") },
			wantMethod: "GET", wantPath: "/v1/pools/a%2Fb%20c",
			want: Pool{}, wantErr: `get pool a/b c: 404: unknown pool "a/b c"`, wantStatus: 404,
		},
		{
			name:       "wrong token",
			token:      "wrong",
			call:       func(ctx context.Context, c *Client) (any, error) { return c.Pools(ctx) },
			wantMethod: "GET", wantPath: "/v1/pools",
			want: []Pool(nil), wantErr: "list pools: 401: missing or wrong token", wantStatus: 401,
		},
		{
			name: "attach with weight and wait",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Attach(ctx, "hello", AttachRequest{Target: "127.0.0.1:8103", Weight: ptr(5), Wait: true, Timeout: "45s"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/attach",
			wantBody: map[string]any{"target": "127.0.0.1:8103", "weight": 5.0, "wait": true, "timeout": "45s"},
			want:     Target{Address: "127.0.0.1:8103", State: lb.StateHealthy, Weight: 5, StateSince: since},
		},
		{
			name: "attach sends only the target by default",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Attach(ctx, "hello", AttachRequest{Target: "127.0.0.1:8103"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/attach",
			wantBody: map[string]any{"target": "127.0.0.1:8103"},
			want:     Target{Address: "127.0.0.1:8103", State: lb.StateInitial, Weight: 1, StateSince: since},
		},
		{
			name: "attach weight zero is sent",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Attach(ctx, "hello", AttachRequest{Target: "127.0.0.1:8103", Weight: ptr(0)})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/attach",
			wantBody: map[string]any{"target": "127.0.0.1:8103", "weight": 0.0},
			want:     Target{Address: "127.0.0.1:8103", State: lb.StateInitial, Weight: 0, StateSince: since},
		},
		{
			name: "attach bad target",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Attach(ctx, "hello", AttachRequest{Target: "localhost"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/attach",
			wantBody: map[string]any{"target": "localhost"},
			want:     Target{}, wantErr: `attach localhost to pool hello: 400: bad target "localhost": want ip:port`, wantStatus: 400,
		},
		{
			name: "attach to unknown pool",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Attach(ctx, "nope", AttachRequest{Target: "127.0.0.1:8103"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/nope/attach",
			wantBody: map[string]any{"target": "127.0.0.1:8103"},
			want:     Target{}, wantErr: `attach 127.0.0.1:8103 to pool nope: 404: unknown pool "nope"`, wantStatus: 404,
		},
		{
			name: "detach",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:8101"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/detach",
			wantBody: map[string]any{"target": "127.0.0.1:8101"},
			want:     Target{Address: "127.0.0.1:8101", State: lb.StateDraining, InFlight: 2, Weight: 1, Requests: 100, Errors: 1, StateSince: since},
		},
		{
			name: "detach and wait",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:8101", Wait: true})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/detach",
			wantBody: map[string]any{"target": "127.0.0.1:8101", "wait": true},
			want:     Target{Address: "127.0.0.1:8101", State: lb.StateUnused, InFlight: 2, Weight: 1, Requests: 100, Errors: 1, StateSince: since},
		},
		{
			name: "detach from unknown pool",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "nope", DetachRequest{Target: "127.0.0.1:8101"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/nope/detach",
			wantBody: map[string]any{"target": "127.0.0.1:8101"},
			want:     Target{}, wantErr: `detach 127.0.0.1:8101 from pool nope: 404: unknown pool "nope"`, wantStatus: 404,
		},
		{
			name: "detach unknown target",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:9999"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/detach",
			wantBody: map[string]any{"target": "127.0.0.1:9999"},
			want:     Target{}, wantErr: `detach 127.0.0.1:9999 from pool hello: 404: unknown target "127.0.0.1:9999" in pool "hello"`, wantStatus: 404,
		},
		{
			name: "detach wait runs out, target nested",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:8198", Wait: true, Timeout: "2s"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/detach",
			wantBody: map[string]any{"target": "127.0.0.1:8198", "wait": true, "timeout": "2s"},
			want:     Target{Address: "127.0.0.1:8198", State: lb.StateDraining, InFlight: 3, Weight: 1, StateSince: since},
			wantErr:  "detach 127.0.0.1:8198 from pool hello: 504: wait timed out after 2s: target is draining with 3 in flight", wantStatus: 504,
		},
		{
			name: "detach wait runs out, target inline",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:8199", Wait: true, Timeout: "2s"})
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/detach",
			wantBody: map[string]any{"target": "127.0.0.1:8199", "wait": true, "timeout": "2s"},
			want:     Target{Address: "127.0.0.1:8199", State: lb.StateDraining, InFlight: 3, Weight: 1, StateSince: since},
			wantErr:  "detach 127.0.0.1:8199 from pool hello: 504: wait timed out after 2s: target is draining with 3 in flight", wantStatus: 504,
		},
		{
			name: "set weight",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SetWeight(ctx, "hello", "127.0.0.1:8102", 7)
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/weight",
			wantBody: map[string]any{"target": "127.0.0.1:8102", "weight": 7.0},
			want:     Target{Address: "127.0.0.1:8102", State: lb.StateUnhealthy, Weight: 7, LastHealthError: "GET /healthz: 503", StateSince: since},
		},
		{
			name: "set weight to zero",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SetWeight(ctx, "hello", "127.0.0.1:8102", 0)
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/weight",
			wantBody: map[string]any{"target": "127.0.0.1:8102", "weight": 0.0},
			want:     Target{Address: "127.0.0.1:8102", State: lb.StateUnhealthy, Weight: 0, LastHealthError: "GET /healthz: 503", StateSince: since},
		},
		{
			name: "set weight of unknown target",
			call: func(ctx context.Context, c *Client) (any, error) {
				return c.SetWeight(ctx, "hello", "127.0.0.1:9999", 2)
			},
			wantMethod: "POST", wantPath: "/v1/pools/hello/weight",
			wantBody: map[string]any{"target": "127.0.0.1:9999", "weight": 2.0},
			want:     Target{}, wantErr: `set weight of 127.0.0.1:9999 in pool hello to 2: 404: unknown target "127.0.0.1:9999" in pool "hello"`, wantStatus: 404,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := testToken
			if tt.token != "" {
				token = tt.token
			}
			c := newTestClient(t, srv.URL, token)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := tt.call(ctx, c)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v\nwant    %s", err, tt.wantErr)
				}
				var ae *APIError
				if !errors.As(err, &ae) || ae.Status != tt.wantStatus {
					t.Errorf("err = %#v, want *APIError with status %d", err, tt.wantStatus)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("error leaks the token: %v", err)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			last := fake.lastRequest()
			if last.method != tt.wantMethod || last.path != tt.wantPath {
				t.Errorf("request %s %s, want %s %s", last.method, last.path, tt.wantMethod, tt.wantPath)
			}
			if last.auth != "Bearer "+token {
				t.Errorf("Authorization %q, want the bearer token", last.auth)
			}
			if !reflect.DeepEqual(last.body, tt.wantBody) {
				t.Errorf("body %v, want %v", last.body, tt.wantBody)
			}
			if wantCT := map[bool]string{true: "application/json", false: ""}[tt.wantBody != nil]; last.contentType != wantCT {
				t.Errorf("Content-Type %q, want %q", last.contentType, wantCT)
			}
		})
	}
}

// TestErrorAnswers covers answers that do not follow the {"error"} shape,
// such as those of a proxy in front of the admin API.
func TestErrorAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr string
	}{
		{"json error", 400, `{"error":"bad target \"x\""}`, `list pools: 400: bad target "x"`},
		{"plain text", 502, "upstream down\n", "list pools: 502: upstream down"},
		{"html", 503, "<html>busy</html>", "list pools: 503: service unavailable"},
		{"empty", 500, "", "list pools: 500: internal server error"},
		{"gateway timeout without target", 504, `{"error":"timeout"}`, "list pools: 504: timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			// 502 and 503 are tried again until the deadline; a short one
			// keeps the test quick.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := newTestClient(t, srv.URL, testToken).Pools(ctx)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.status || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want *APIError %q", err, tt.wantErr)
			}
		})
	}
}

func TestBadSuccessAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "not json")
	}))
	defer srv.Close()
	_, err := newTestClient(t, srv.URL, testToken).Pool(context.Background(), "hello")
	if err == nil || !strings.HasPrefix(err.Error(), "get pool hello: bad answer from "+srv.URL) {
		t.Errorf("err = %v", err)
	}
	var ae *APIError
	if errors.As(err, &ae) {
		t.Errorf("a 200 with a bad body is not an API error: %#v", ae)
	}
}

func TestTransportErrors(t *testing.T) {
	// A port that was just free: connections to it are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	// A server that accepts and then hangs up without answering.
	hangup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hangup.Close()

	tests := []struct {
		name    string
		url     string
		call    func(context.Context, *Client) error
		wantErr string // prefix
	}{
		{
			name: "refused",
			url:  closed,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Detach(ctx, "hello", DetachRequest{Target: "127.0.0.1:8101"})
				return err
			},
			wantErr: `detach 127.0.0.1:8101 from pool hello: Post "` + closed + `/v1/pools/hello/detach": `,
		},
		{
			name: "hang up",
			url:  hangup.URL,
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Pools(ctx)
				return err
			},
			wantErr: `list pools: Get "` + hangup.URL + `/v1/pools": `,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both are tried again until the deadline; a short one keeps
			// the test quick.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := tt.call(ctx, newTestClient(t, tt.url, testToken))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want prefix %q", err, tt.wantErr)
			}
			var ae *APIError
			if errors.As(err, &ae) {
				t.Errorf("transport error reported as API error: %#v", ae)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

// roundTripFunc lets a test see the request the client builds.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDeadlines checks the HTTP deadline outlasts the server-side wait, so a
// wait that runs out reaches the client as the server's 504 with the target.
func TestDeadlines(t *testing.T) {
	tests := []struct {
		name     string
		call     func(context.Context, *Client) error
		min, max time.Duration
	}{
		{
			name: "no wait",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Detach(ctx, "p", DetachRequest{Target: "t"})
				return err
			},
			min: 20 * time.Second, max: 31 * time.Second,
		},
		{
			name: "wait with default timeout",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Detach(ctx, "p", DetachRequest{Target: "t", Wait: true})
				return err
			},
			min: 31 * time.Second, max: 41 * time.Second,
		},
		{
			name: "long wait",
			call: func(ctx context.Context, c *Client) error {
				_, err := c.Attach(ctx, "p", AttachRequest{Target: "t", Wait: true, Timeout: "5m"})
				return err
			},
			min: 5*time.Minute + time.Second, max: 5*time.Minute + 11*time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var left time.Duration
			hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				dl, ok := r.Context().Deadline()
				if !ok {
					return nil, errors.New("no deadline")
				}
				left = time.Until(dl)
				return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(`{"address":"t"}`)), Header: http.Header{}}, nil
			})}
			c, err := New(Config{Admin: "http://lb.invalid", Token: testToken, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.call(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if left < tt.min || left > tt.max {
				t.Errorf("deadline in %s, want between %s and %s", left, tt.min, tt.max)
			}
		})
	}
}

// TestLocalChecks covers requests rejected before any round trip.
func TestLocalChecks(t *testing.T) {
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, errors.New("must not be called")
	})}
	c, err := New(Config{Admin: "http://lb.invalid", Token: testToken, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"empty pool", func() error { _, err := c.Pool(ctx, ""); return err }, "get pool : empty pool name"},
		{"attach no target", func() error { _, err := c.Attach(ctx, "p", AttachRequest{}); return err }, "attach  to pool p: empty target"},
		{"attach bad timeout", func() error {
			_, err := c.Attach(ctx, "p", AttachRequest{Target: "t", Wait: true, Timeout: "soon"})
			return err
		}, `attach t to pool p: bad wait timeout "soon": want a positive duration such as 30s`},
		{"attach negative weight", func() error {
			_, err := c.Attach(ctx, "p", AttachRequest{Target: "t", Weight: ptr(-1)})
			return err
		}, "attach t to pool p: negative weight -1"},
		{"detach no pool", func() error { _, err := c.Detach(ctx, "", DetachRequest{Target: "t"}); return err }, "detach t from pool : empty pool name"},
		{"detach zero timeout", func() error {
			_, err := c.Detach(ctx, "p", DetachRequest{Target: "t", Wait: true, Timeout: "0s"})
			return err
		}, `detach t from pool p: bad wait timeout "0s": want a positive duration such as 30s`},
		{"negative weight", func() error { _, err := c.SetWeight(ctx, "p", "t", -2); return err }, "set weight of t in pool p to -2: negative weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || err.Error() != tt.wantErr {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		wantBase string
		wantErr  string
	}{
		{name: "plain", cfg: Config{Admin: "http://127.0.0.1:9100", Token: "t"}, wantBase: "http://127.0.0.1:9100"},
		{name: "trailing slash", cfg: Config{Admin: "https://lb.example:9100/", Token: "t"}, wantBase: "https://lb.example:9100"},
		{name: "path prefix", cfg: Config{Admin: "http://proxy/lb-admin/", Token: "t"}, wantBase: "http://proxy/lb-admin"},
		{name: "empty", cfg: Config{Token: "t"}, wantErr: "lb admin URL is empty"},
		{name: "no scheme", cfg: Config{Admin: "127.0.0.1:9100", Token: "t"}, wantErr: "bad lb admin URL"},
		{name: "wrong scheme", cfg: Config{Admin: "ftp://h", Token: "t"}, wantErr: "want http:// or https://"},
		{name: "no host", cfg: Config{Admin: "http:///x", Token: "t"}, wantErr: "no host"},
		{name: "query", cfg: Config{Admin: "http://h/?a=b", Token: "t"}, wantErr: "query or fragment"},
		{name: "user info", cfg: Config{Admin: "http://u:pw@h", Token: "t"}, wantErr: "must not contain user info"},
		{name: "no token", cfg: Config{Admin: "http://h"}, wantErr: "token is empty"},
		{name: "token with newline", cfg: Config{Admin: "http://h", Token: "abc\n"}, wantErr: "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") || (tt.cfg.Token != "" && tt.cfg.Token != "t" && strings.Contains(err.Error(), tt.cfg.Token)) {
					t.Errorf("error leaks a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.base.String(); got != tt.wantBase {
				t.Errorf("base %q, want %q", got, tt.wantBase)
			}
		})
	}
}

func TestBalancerAdapter(t *testing.T) {
	fake := newFakeAdmin()
	srv := httptest.NewServer(fake.handler())
	defer srv.Close()
	c := newTestClient(t, srv.URL, testToken)
	ctx := context.Background()

	b := c.Balancer("hello")
	got, err := b.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []lb.Target{
		{Address: "127.0.0.1:8101", State: lb.StateHealthy, InFlight: 2, Weight: 1},
		{Address: "127.0.0.1:8102", State: lb.StateUnhealthy, Weight: 3, Reason: "GET /healthz: 503"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Targets = %+v\nwant      %+v", got, want)
	}

	w, ok := b.(lb.Weighter)
	if !ok {
		t.Fatal("balancer does not implement lb.Weighter")
	}
	tests := []struct {
		name     string
		call     func() error
		wantPath string
		wantBody map[string]any
		wantErr  string
	}{
		{"attach does not wait", func() error { return b.Attach(ctx, "127.0.0.1:8103") },
			"/v1/pools/hello/attach", map[string]any{"target": "127.0.0.1:8103"}, ""},
		{"detach does not wait", func() error { return b.Detach(ctx, "127.0.0.1:8101") },
			"/v1/pools/hello/detach", map[string]any{"target": "127.0.0.1:8101"}, ""},
		{"set weight", func() error { return w.SetWeight(ctx, "127.0.0.1:8101", 4) },
			"/v1/pools/hello/weight", map[string]any{"target": "127.0.0.1:8101", "weight": 4.0}, ""},
		{"detach unknown", func() error { return b.Detach(ctx, "127.0.0.1:9999") },
			"/v1/pools/hello/detach", map[string]any{"target": "127.0.0.1:9999"},
			`detach 127.0.0.1:9999 from pool hello: 404: unknown target "127.0.0.1:9999" in pool "hello"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if (err == nil && tt.wantErr != "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			last := fake.lastRequest()
			if last.path != tt.wantPath || !reflect.DeepEqual(last.body, tt.wantBody) {
				t.Errorf("sent %s %v, want %s %v", last.path, last.body, tt.wantPath, tt.wantBody)
			}
		})
	}

	if _, err := c.Balancer("nope").Targets(ctx); err == nil || err.Error() != `get pool nope: 404: unknown pool "nope"` {
		t.Errorf("Targets of unknown pool: %v", err)
	}
}

// TestTransientFailuresRetried: the admin API restarting — a connection
// closed without an answer, a 503 — does not fail a call; a refused token
// or a wait that ran out is an answer and is not tried again.
func TestTransientFailuresRetried(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			panic(http.ErrAbortHandler) // closed without an answer
		case 2:
			http.Error(w, "restarting", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, `{"pools":[]}`)
		}
	}))
	defer srv.Close()
	if _, err := newTestClient(t, srv.URL, testToken).Pools(context.Background()); err != nil {
		t.Fatalf("a call through a restart failed: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d tries, want 3", n)
	}

	for _, status := range []int{http.StatusUnauthorized, http.StatusGatewayTimeout, http.StatusBadRequest} {
		calls.Store(0)
		answer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(status)
			io.WriteString(w, `{"error":"no"}`)
		}))
		_, err := newTestClient(t, answer.URL, testToken).Pools(context.Background())
		answer.Close()
		if err == nil || calls.Load() != 1 {
			t.Fatalf("status %d: %d tries, err %v; want one try and the error", status, calls.Load(), err)
		}
	}

	// Nothing listens: refused until the deadline, and the error says how
	// long it tried.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = newTestClient(t, dead, testToken).Pools(ctx)
	if err == nil || !strings.Contains(err.Error(), "tries in") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want connection refused after several tries", err)
	}
}

package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const lbTestToken = "tok-3f9a1c"

// fakeLBAdmin answers the admin API calls of docs/lb.md from canned data and
// records the last request.
type fakeLBAdmin struct {
	mu   sync.Mutex
	last struct {
		method, path string
		body         map[string]any
	}
}

const (
	helloPoolJSON = `{"name":"hello","balance":"least_outstanding","fail_open":true,"targets":[
		{"address":"127.0.0.1:8101","state":"healthy","in_flight":2,"weight":1,"requests":1500,"errors":3,"cut":0,"last_health_error":"","state_since":"2025-05-01T12:00:00Z"},
		{"address":"127.0.0.1:8102","state":"unhealthy","in_flight":0,"weight":10,"requests":7,"errors":0,"cut":0,"last_health_error":"GET /healthz: 503","state_since":"2025-05-01T12:00:00Z"}]}`
	apiPoolJSON = `{"name":"api","balance":"round_robin","fail_open":false,"targets":[]}`
)

func (f *fakeLBAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last.method, f.last.path, f.last.body = r.Method, r.URL.Path, nil
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		_ = json.Unmarshal(b, &f.last.body)
	}
	answer := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	if r.Header.Get("Authorization") != "Bearer "+lbTestToken {
		answer(401, `{"error":"missing or wrong token"}`)
		return
	}
	target, _ := f.last.body["target"].(string)
	targetJSON := func(state string, inFlight int, weight any) string {
		if weight == nil {
			weight = 1.0
		}
		return fmt.Sprintf(`{"address":%q,"state":%q,"in_flight":%d,"weight":%v,"requests":0,"errors":0,"cut":0,"last_health_error":"","state_since":"2025-05-01T12:00:00Z"}`,
			target, state, inFlight, weight)
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/pools":
		answer(200, `{"pools":[`+apiPoolJSON+`,`+helloPoolJSON+`]}`)
	case r.Method == "GET" && r.URL.Path == "/v1/pools/hello":
		answer(200, helloPoolJSON)
	case r.Method == "POST" && r.URL.Path == "/v1/pools/hello/attach":
		answer(200, targetJSON("healthy", 0, f.last.body["weight"]))
	case r.Method == "POST" && r.URL.Path == "/v1/pools/hello/detach" && target == "127.0.0.1:8199":
		answer(504, `{"error":"target still draining after 1s with 4 in flight","target":`+targetJSON("draining", 4, nil)+`}`)
	case r.Method == "POST" && r.URL.Path == "/v1/pools/hello/detach":
		answer(200, targetJSON("unused", 0, nil))
	case r.Method == "POST" && r.URL.Path == "/v1/pools/hello/weight":
		answer(200, targetJSON("healthy", 0, f.last.body["weight"]))
	case strings.HasPrefix(r.URL.Path, "/v1/pools/hello/"):
		answer(404, `{"error":"not found"}`)
	default:
		pool := strings.TrimPrefix(r.URL.Path, "/v1/pools/")
		pool, _, _ = strings.Cut(pool, "/")
		b, _ := json.Marshal(map[string]string{"error": fmt.Sprintf("unknown pool %q", pool)})
		answer(404, string(b))
	}
}

func (f *fakeLBAdmin) request() (string, map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last.method + " " + f.last.path, f.last.body
}

func TestLBTargets(t *testing.T) {
	fake := &fakeLBAdmin{}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "lb.token")
	if err := os.WriteFile(tokenFile, []byte(lbTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(dir, "wrong.token")
	if err := os.WriteFile(wrongFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	l.Close()

	// auth is the usual pair of flags; cases about the token or admin URL
	// spell theirs out.
	auth := []string{"--admin", srv.URL, "--token-file", tokenFile}
	args := func(a ...string) []string { return append(a, auth...) }

	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantCode    int
		wantStdout  string // exact, unless empty
		wantInOut   []string
		wantStderr  string // substring; empty: stderr must be empty
		wantRequest string // "METHOD /path"; empty: no request expected
		wantBody    map[string]any
	}{
		{
			name:     "list",
			args:     args("lb", "targets", "list"),
			wantCode: 0,
			wantStdout: `POOL   TARGET          STATE      IN-FLIGHT  WEIGHT  REQUESTS  ERRORS
api    -               -          -          -       -         -
hello  127.0.0.1:8101  healthy    2          1       1500      3
hello  127.0.0.1:8102  unhealthy  0          10      7         0

hello 127.0.0.1:8102: last health check: GET /healthz: 503
`,
			wantRequest: "GET /v1/pools",
		},
		{
			name:        "list one pool as json",
			args:        args("lb", "targets", "list", "--pool", "hello", "--output", "json"),
			wantInOut:   []string{`"pools": [`, `"name": "hello"`, `"address": "127.0.0.1:8102"`, `"last_health_error": "GET /healthz: 503"`, `"state_since": "2025-05-01T12:00:00Z"`},
			wantRequest: "GET /v1/pools/hello",
		},
		{
			name:        "list unknown pool",
			args:        args("lb", "targets", "list", "--pool", "nope"),
			wantCode:    ExitBadInput,
			wantStderr:  `zerodown: get pool nope: 404: unknown pool "nope"`,
			wantRequest: "GET /v1/pools/nope",
		},
		{
			name:     "attach with weight and wait",
			args:     args("lb", "targets", "attach", "--pool", "hello", "127.0.0.1:8103", "--weight", "5", "--wait", "--timeout", "45s"),
			wantCode: 0,
			wantStdout: `POOL   TARGET          STATE    IN-FLIGHT  WEIGHT  REQUESTS  ERRORS
hello  127.0.0.1:8103  healthy  0          5       0         0
`,
			wantRequest: "POST /v1/pools/hello/attach",
			wantBody:    map[string]any{"target": "127.0.0.1:8103", "weight": 5.0, "wait": true, "timeout": "45s"},
		},
		{
			name:        "attach sends only the target by default",
			args:        args("lb", "targets", "attach", "-p", "hello", "127.0.0.1:8103", "-o", "json"),
			wantInOut:   []string{`"address": "127.0.0.1:8103"`, `"weight": 1`},
			wantRequest: "POST /v1/pools/hello/attach",
			wantBody:    map[string]any{"target": "127.0.0.1:8103"},
		},
		{
			name:        "attach to unknown pool",
			args:        args("lb", "targets", "attach", "--pool", "nope", "127.0.0.1:8103"),
			wantCode:    ExitBadInput,
			wantStderr:  `zerodown: attach 127.0.0.1:8103 to pool nope: 404: unknown pool "nope"`,
			wantRequest: "POST /v1/pools/nope/attach",
			wantBody:    map[string]any{"target": "127.0.0.1:8103"},
		},
		{
			name:        "detach and wait, default timeout",
			args:        args("lb", "targets", "detach", "--pool", "hello", "127.0.0.1:8101", "--wait"),
			wantInOut:   []string{"hello  127.0.0.1:8101  unused"},
			wantRequest: "POST /v1/pools/hello/detach",
			wantBody:    map[string]any{"target": "127.0.0.1:8101", "wait": true, "timeout": "30s"},
		},
		{
			name:        "detach wait runs out",
			args:        args("lb", "targets", "detach", "--pool", "hello", "127.0.0.1:8199", "--wait", "--timeout", "1s"),
			wantCode:    ExitFailed,
			wantInOut:   []string{"hello  127.0.0.1:8199  draining  4"},
			wantStderr:  "zerodown: detach 127.0.0.1:8199 from pool hello: 504: target still draining after 1s with 4 in flight",
			wantRequest: "POST /v1/pools/hello/detach",
			wantBody:    map[string]any{"target": "127.0.0.1:8199", "wait": true, "timeout": "1s"},
		},
		{
			name:        "weight",
			args:        args("lb", "targets", "weight", "--pool", "hello", "127.0.0.1:8102", "0", "--output", "json"),
			wantInOut:   []string{`"address": "127.0.0.1:8102"`, `"weight": 0`},
			wantRequest: "POST /v1/pools/hello/weight",
			wantBody:    map[string]any{"target": "127.0.0.1:8102", "weight": 0.0},
		},
		{
			name:        "admin and token from the environment",
			args:        []string{"lb", "targets", "list", "--pool", "hello"},
			env:         map[string]string{"ZERODOWN_LB_ADMIN": srv.URL, "ZERODOWN_LB_TOKEN": lbTestToken},
			wantInOut:   []string{"hello  127.0.0.1:8101"},
			wantRequest: "GET /v1/pools/hello",
		},
		{
			name:        "flags beat the environment",
			args:        args("lb", "targets", "list", "--pool", "hello"),
			env:         map[string]string{"ZERODOWN_LB_ADMIN": closedURL, "ZERODOWN_LB_TOKEN": "wrong"},
			wantInOut:   []string{"hello  127.0.0.1:8101"},
			wantRequest: "GET /v1/pools/hello",
		},
		{
			name:        "wrong token",
			args:        []string{"lb", "targets", "list", "--admin", srv.URL, "--token-file", wrongFile},
			wantCode:    ExitBadInput,
			wantStderr:  "zerodown: list pools: 401: missing or wrong token",
			wantRequest: "GET /v1/pools",
		},
		{
			name:       "no token",
			args:       []string{"lb", "targets", "list", "--admin", srv.URL},
			wantCode:   ExitBadInput,
			wantStderr: "no admin token: pass --token-file",
		},
		{
			name:       "empty token file",
			args:       []string{"lb", "targets", "list", "--admin", srv.URL, "--token-file", emptyFile},
			wantCode:   ExitBadInput,
			wantStderr: "is empty",
		},
		{
			name:       "missing token file",
			args:       []string{"lb", "targets", "list", "--admin", srv.URL, "--token-file", filepath.Join(dir, "nope")},
			wantCode:   ExitBadInput,
			wantStderr: "reading --token-file",
		},
		{
			name:       "admin unreachable",
			args:       []string{"lb", "targets", "list", "--admin", closedURL, "--token-file", tokenFile, "--retry-for", "300ms"},
			wantCode:   ExitFailed,
			wantStderr: `zerodown: list pools: Get "` + closedURL + `/v1/pools": `,
		},
		{name: "bad admin URL", args: []string{"lb", "targets", "list", "--admin", "127.0.0.1:9100", "--token-file", tokenFile}, wantCode: ExitBadInput, wantStderr: "bad lb admin URL"},
		{name: "bad output", args: args("lb", "targets", "list", "--output", "yaml"), wantCode: ExitBadInput, wantStderr: "--output must be text or json"},
		{name: "list takes no arguments", args: args("lb", "targets", "list", "hello"), wantCode: ExitBadInput, wantStderr: "takes no arguments"},
		{name: "attach without pool", args: args("lb", "targets", "attach", "127.0.0.1:8103"), wantCode: ExitBadInput, wantStderr: "--pool is required"},
		{name: "attach without target", args: args("lb", "targets", "attach", "--pool", "hello"), wantCode: ExitBadInput, wantStderr: "wants TARGET, got 0 argument(s)"},
		{name: "attach bad target", args: args("lb", "targets", "attach", "--pool", "hello", "localhost"), wantCode: ExitBadInput, wantStderr: `target "localhost": want ip:port`},
		{name: "attach bad port", args: args("lb", "targets", "attach", "--pool", "hello", "127.0.0.1:http"), wantCode: ExitBadInput, wantStderr: "port must be 1-65535"},
		{name: "attach negative weight", args: args("lb", "targets", "attach", "--pool", "hello", "127.0.0.1:8103", "--weight", "-1"), wantCode: ExitBadInput, wantStderr: "--weight must be 0 or more"},
		{name: "attach weight not a number", args: args("lb", "targets", "attach", "--pool", "hello", "127.0.0.1:8103", "--weight", "x"), wantCode: ExitBadInput, wantStderr: "invalid argument"},
		{name: "timeout without wait", args: args("lb", "targets", "detach", "--pool", "hello", "127.0.0.1:8101", "--timeout", "5s"), wantCode: ExitBadInput, wantStderr: "--timeout only applies with --wait"},
		{name: "zero timeout", args: args("lb", "targets", "detach", "--pool", "hello", "127.0.0.1:8101", "--wait", "--timeout", "0s"), wantCode: ExitBadInput, wantStderr: "--timeout must be positive"},
		{name: "weight not a number", args: args("lb", "targets", "weight", "--pool", "hello", "127.0.0.1:8102", "lots"), wantCode: ExitBadInput, wantStderr: `weight "lots": want a whole number`},
		{name: "weight missing", args: args("lb", "targets", "weight", "--pool", "hello", "127.0.0.1:8102"), wantCode: ExitBadInput, wantStderr: "wants TARGET N, got 1 argument(s)"},
		{name: "unknown flag", args: args("lb", "targets", "list", "--nope"), wantCode: ExitBadInput, wantStderr: "unknown flag: --nope"},
		{name: "unknown subcommand", args: args("lb", "targets", "remove"), wantCode: ExitBadInput, wantStderr: `unknown command "remove"`},
		{
			name:      "help",
			args:      []string{"lb", "targets", "--help"},
			wantInOut: []string{"ZERODOWN_LB_TOKEN", "ZERODOWN_LB_ADMIN", "http://127.0.0.1:9100", "attach", "detach", "weight", "--token-file"},
		},
		{
			name:      "attach help",
			args:      []string{"lb", "targets", "attach", "--help"},
			wantInOut: []string{"--wait", "--timeout duration", "(default 30s)", "--weight int", "healthy"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"ZERODOWN_LB_ADMIN", "ZERODOWN_LB_TOKEN"} {
				t.Setenv(k, tt.env[k])
			}
			fake.mu.Lock()
			fake.last.method, fake.last.path, fake.last.body = "", "", nil
			fake.mu.Unlock()

			var stdout, stderr bytes.Buffer
			code := Main(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if tt.wantStdout != "" && stdout.String() != tt.wantStdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tt.wantStdout)
			}
			for _, s := range tt.wantInOut {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if tt.wantStderr == "" && stderr.Len() > 0 {
				t.Errorf("unexpected stderr:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr:\n%s\nwant it to contain %q", stderr.String(), tt.wantStderr)
			}
			if strings.Contains(stdout.String()+stderr.String(), lbTestToken) {
				t.Error("the token leaked into the output")
			}
			req, body := fake.request()
			if req == " " {
				req = ""
			}
			if req != tt.wantRequest {
				t.Errorf("request %q, want %q", req, tt.wantRequest)
			}
			if !reflect.DeepEqual(body, tt.wantBody) {
				t.Errorf("request body %v, want %v", body, tt.wantBody)
			}
		})
	}
}

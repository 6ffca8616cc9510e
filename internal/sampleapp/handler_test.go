package sampleapp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testConfig() Config {
	return Config{Listen: "127.0.0.1:0", Version: "v7", Name: "h1", IdleTimeout: time.Minute, ShutdownTimeout: time.Minute}
}

func TestHandler(t *testing.T) {
	unhealthy := filepath.Join(t.TempDir(), "down")
	if err := os.WriteFile(unhealthy, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pattern := newApp(testConfig()).pattern
	tests := []struct {
		name       string
		cfg        func(*Config)
		method     string
		target     string
		body       string
		header     map[string]string
		wantStatus int
		wantBody   string // exact, unless wantPrefix
		wantPrefix bool
		wantHeader map[string]string
	}{
		{
			name: "hello", method: "GET", target: "/",
			wantStatus: 200, wantBody: "hello from h1 version v7\n",
			wantHeader: map[string]string{"X-Version": "v7", "X-Host": "h1", "Content-Length": "25"},
		},
		{
			name: "hello on any path", method: "GET", target: "/v1/anything",
			wantStatus: 200, wantBody: "hello from h1 version v7\n",
		},
		{
			// The recorder keeps the body that net/http drops for HEAD.
			name: "head", method: "HEAD", target: "/",
			wantStatus: 200, wantBody: "hello from h1 version v7\n", wantHeader: map[string]string{"X-Version": "v7"},
		},
		{
			name: "size 1KiB", method: "GET", target: "/?size=1024",
			wantStatus: 200, wantBody: string(pattern[:1024]),
			wantHeader: map[string]string{"Content-Length": "1024", "X-Version": "v7"},
		},
		{
			name: "size larger than the pattern", method: "GET", target: "/?size=" + strconv.Itoa(patternSize*2+3),
			wantStatus: 200, wantBody: string(pattern) + string(pattern) + string(pattern[:3]),
		},
		{name: "size zero", method: "GET", target: "/?size=0", wantStatus: 200, wantBody: "", wantHeader: map[string]string{"Content-Length": "0"}},
		{name: "size negative", method: "GET", target: "/?size=-1", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size not a number", method: "GET", target: "/?size=1k", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size empty", method: "GET", target: "/?size=", wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "size too large", method: "GET", target: "/?size=" + strconv.Itoa(maxSize+1), wantStatus: 400, wantBody: "bad size", wantPrefix: true},
		{name: "sleep zero", method: "GET", target: "/?sleep=0s", wantStatus: 200, wantBody: "hello from h1 version v7\n"},
		{name: "sleep bad", method: "GET", target: "/?sleep=later", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{name: "sleep negative", method: "GET", target: "/?sleep=-1s", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{
			name: "post echoes", method: "POST", target: "/orders", body: `{"a":1}`,
			header:     map[string]string{"Content-Type": "application/json"},
			wantStatus: 200, wantBody: `{"a":1}`,
			wantHeader: map[string]string{"Content-Type": "application/json", "X-Version": "v7", "Content-Length": "7"},
		},
		{
			name: "post without content type", method: "POST", target: "/", body: "<html>",
			wantStatus: 200, wantBody: "<html>",
			wantHeader: map[string]string{"Content-Type": "application/octet-stream"},
		},
		{name: "post bad sleep", method: "POST", target: "/?sleep=x", body: "b", wantStatus: 400, wantBody: "bad sleep", wantPrefix: true},
		{name: "other method", method: "DELETE", target: "/", wantStatus: 405, wantHeader: map[string]string{"Allow": "GET, HEAD, POST"}, wantBody: "method not allowed\n"},
		{name: "healthy", method: "GET", target: "/healthz", wantStatus: 200, wantBody: "ok\n", wantHeader: map[string]string{"X-Version": "v7"}},
		{
			name: "fail health", cfg: func(c *Config) { c.FailHealth = true }, method: "GET", target: "/healthz",
			wantStatus: 503, wantBody: "unhealthy", wantPrefix: true,
		},
		{
			name: "unhealthy file present", cfg: func(c *Config) { c.UnhealthyFile = unhealthy }, method: "GET", target: "/healthz",
			wantStatus: 503, wantBody: "unhealthy: " + unhealthy, wantPrefix: true,
		},
		{
			name: "unhealthy file absent", cfg: func(c *Config) { c.UnhealthyFile = unhealthy + ".missing" }, method: "GET", target: "/healthz",
			wantStatus: 200, wantBody: "ok\n",
		},
		{name: "stream bad n", method: "GET", target: "/stream?n=x", wantStatus: 400, wantBody: "bad n", wantPrefix: true},
		{name: "stream bad every", method: "GET", target: "/stream?every=x", wantStatus: 400, wantBody: "bad every", wantPrefix: true},
		{
			name: "stream without delay", method: "GET", target: "/stream?n=2&every=0s", wantStatus: 200,
			wantBody: "line 1 of 2 from h1 version v7\nline 2 of 2 from h1 version v7\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.body == "" {
				req.ContentLength = 0
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			newApp(cfg).ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			got := rec.Body.String()
			if tt.wantPrefix {
				if !strings.HasPrefix(got, tt.wantBody) {
					t.Errorf("body = %q, want prefix %q", got, tt.wantBody)
				}
			} else if got != tt.wantBody {
				t.Errorf("body = %q (%d bytes), want %q (%d bytes)", truncate(got), len(got), truncate(tt.wantBody), len(tt.wantBody))
			}
			for k, v := range tt.wantHeader {
				if g := rec.Header().Get(k); g != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// TestUnhealthyFileToggles checks that health follows the file without a
// restart, which is how the demo makes a server fail its checks.
func TestUnhealthyFileToggles(t *testing.T) {
	cfg := testConfig()
	cfg.UnhealthyFile = filepath.Join(t.TempDir(), "down")
	a := newApp(cfg)
	status := func() int {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		return rec.Code
	}
	steps := []struct {
		name   string
		change func() error
		want   int
	}{
		{"no file", func() error { return nil }, 200},
		{"file created", func() error { return os.WriteFile(cfg.UnhealthyFile, nil, 0o600) }, 503},
		{"file removed", func() error { return os.Remove(cfg.UnhealthyFile) }, 200},
	}
	for _, s := range steps {
		if err := s.change(); err != nil {
			t.Fatal(err)
		}
		if got := status(); got != s.want {
			t.Errorf("%s: status %d, want %d", s.name, got, s.want)
		}
	}
}

// TestSleepHonoursCancellation checks that a client giving up frees the
// handler at once instead of after the sleep.
func TestSleepHonoursCancellation(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := httptest.NewRequest(method, "/?sleep=10m", strings.NewReader("x")).WithContext(ctx)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				newApp(testConfig()).ServeHTTP(rec, req)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("handler still sleeping after the client went away")
			}
			if rec.Body.Len() != 0 {
				t.Errorf("answered %q to a client that went away", rec.Body.String())
			}
		})
	}
}

func TestSleepDelays(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	start := time.Now()
	resp, err := http.Get(srv.URL + "/?sleep=100ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Errorf("answered after %s, want at least 100ms", el)
	}
}

// TestEchoBodyInPieces checks that the echo is whole when the body arrives
// in several pieces, with a length or chunked: net/http drops the unread rest
// of a small body once the answer's head is written, unless the handler asks
// for full duplex.
func TestEchoBodyInPieces(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < len(body); i += 1000 {
					if _, err := pw.Write(body[i:min(i+1000, len(body))]); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, err := http.NewRequest("POST", srv.URL+"/echo", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(len(body))
			if chunked {
				req.ContentLength = -1
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("echo after %d of %d bytes: %v", len(got), len(body), err)
			}
			if !bytes.Equal(got, body) {
				t.Errorf("echo is %d bytes, want the %d sent", len(got), len(body))
			}
		})
	}
}

func BenchmarkHello1KiB(b *testing.B) {
	a := newApp(testConfig())
	req := httptest.NewRequest("GET", "/?size=1024", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
	}
}

package probe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if code.Load() == 302 {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(int(code.Load()))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	p := New("/healthz", time.Second)
	for _, tc := range []struct {
		code int32
		want string // "" for healthy
	}{{200, ""}, {204, ""}, {302, ""}, {404, "404 Not Found"}, {503, "503 Service Unavailable"}} {
		code.Store(tc.code)
		err := p.Check(context.Background(), addr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d: %v, want healthy", tc.code, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p.URL(addr))):
			t.Errorf("%d: %v, want an error naming the URL and %q", tc.code, err, tc.want)
		}
	}
	srv.Close()
	if err := p.Check(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("closed server: %v, want connection refused", err)
	}
}

func TestWaitGivesUpWithTheLastError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := New("/", time.Second).Wait(ctx, strings.TrimPrefix(srv.URL, "http://"), 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Wait: %v, want the last check's 503", err)
	}
}

func TestCheckTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	err := New("/healthz", 100*time.Millisecond).Check(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err == nil || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("Check of a server that never answers: %v", err)
	}
}

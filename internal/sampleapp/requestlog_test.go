package sampleapp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRequestLog serves twice on one log, as a restarted app would, and
// checks that every POST with an id left one line naming the process that
// ran it, and nothing else did.
func TestRequestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.log")
	var addrs []string
	serve := func(requests func(url string)) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		cfg := testConfig()
		cfg.RequestLog = path
		ctx, cancel := context.WithCancelCause(context.Background())
		served := make(chan error, 1)
		go func() { served <- Serve(ctx, ln, cfg, io.Discard) }()
		requests("http://" + ln.Addr().String())
		cancel(errors.New("test over"))
		select {
		case err := <-served:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
	}
	send := func(url, method, id string) {
		t.Helper()
		req, err := http.NewRequest(method, url+"/orders", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		if id != "" {
			req.Header.Set(RequestIDHeader, id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: status %d", method, id, resp.StatusCode)
		}
	}
	serve(func(url string) {
		send(url, "POST", "a 1")
		send(url, "POST", "a 1")
		send(url, "POST", "b")
		send(url, "POST", "")
		send(url, "GET", "c")
	})
	serve(func(url string) { send(url, "POST", "a 1") })

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseRequestLog(string(data))
	if err != nil {
		t.Fatal(err)
	}
	want := []RequestLogEntry{
		{ID: "a 1", Addr: addrs[0]}, {ID: "a 1", Addr: addrs[0]}, {ID: "b", Addr: addrs[0]}, {ID: "a 1", Addr: addrs[1]},
	}
	if len(entries) != len(want) {
		t.Fatalf("log has %d lines, want %d:\n%s", len(entries), len(want), data)
	}
	for i, e := range entries {
		if e.ID != want[i].ID || e.Addr != want[i].Addr || e.Version != "v7" || e.PID != os.Getpid() {
			t.Errorf("line %d: %+v, want id %q from %s, v7, pid %d", i+1, e, want[i].ID, want[i].Addr, os.Getpid())
		}
	}
}

func TestRequestLogUnwritable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.RequestLog = filepath.Join(t.TempDir(), "missing", "requests.log")
	if err := Serve(context.Background(), ln, cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "request log") {
		t.Fatalf("Serve with a request log it cannot open: %v", err)
	}
}

package sampleapp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// TestServeGracefulShutdown ends Serve's context while a request is in
// flight and checks that the request completes, Serve returns nil, and the
// log names the reason it stopped.
func TestServeGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var log proctest.Buffer
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, testConfig(), &log) }()

	// The first line of a stream proves its handler is running: net/http
	// drops a request it reads only after the shutdown began, so an
	// accepted connection alone would not make the test deterministic.
	resp, err := http.Get("http://" + addr + "/stream?n=2&every=500ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	first, err := body.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	cancel(errors.New("got told to stop"))
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("in-flight request cut by shutdown after %q: %v\n%s", first, err, log.String())
	}
	if got, want := first+string(rest), "line 1 of 2 from h1 version v7\nline 2 of 2 from h1 version v7\n"; got != want {
		t.Errorf("in-flight answer %q, want %q", got, want)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after its context ended")
	}
	for _, want := range []string{"hello: listening on " + addr + " (name h1, version v7)", "hello: got told to stop, finishing in-flight requests"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting connections after Serve returned")
	}
}

// TestServeListenerFails checks that Serve reports a listener that stops
// working instead of waiting for its context.
func TestServeListenerFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), ln, testConfig(), io.Discard) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve on a closed listener returned nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve on a closed listener did not return")
	}
}

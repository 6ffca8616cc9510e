package retry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	errPass := errors.New("passes")
	errFinal := errors.New("final")
	isPass := func(err error) bool { return errors.Is(err, errPass) }
	t.Run("transient then success", func(t *testing.T) {
		tries := 0
		err := Do(context.Background(), 0, isPass, func() error {
			if tries++; tries < 3 {
				return errPass
			}
			return nil
		})
		if err != nil || tries != 3 {
			t.Fatalf("err %v after %d tries", err, tries)
		}
	})
	t.Run("final error at once", func(t *testing.T) {
		tries := 0
		err := Do(context.Background(), 0, isPass, func() error { tries++; return errFinal })
		if !errors.Is(err, errFinal) || tries != 1 || err.Error() != "final" {
			t.Fatalf("err %v after %d tries", err, tries)
		}
	})
	t.Run("limit", func(t *testing.T) {
		start := time.Now()
		err := Do(context.Background(), 250*time.Millisecond, isPass, func() error { return errPass })
		if !errors.Is(err, errPass) || !strings.Contains(err.Error(), "tries in") || time.Since(start) > 2*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		err := Do(ctx, 0, isPass, func() error { return errPass })
		if !errors.Is(err, errPass) || !strings.Contains(err.Error(), "gave up after") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestTransport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := net.Dial("tcp", addr)
	if !Transport(refused) || !errors.Is(refused, syscall.ECONNREFUSED) {
		t.Fatalf("a refused dial is not transient: %v", refused)
	}
	// net/http's unexported error for a pooled connection closed under a
	// request, wrapped as the client wraps it.
	closedIdle := &url.Error{Op: "Get", URL: "http://agent/v1/status", Err: errors.New("http: server closed idle connection")}
	if !Transport(fmt.Errorf("status of agent: %w", closedIdle)) {
		t.Fatal("a pooled connection closed under the request is not transient")
	}
	if Transport(context.DeadlineExceeded) || Transport(errors.New("400 bad request")) {
		t.Fatal("a deadline or an answer counted as transient")
	}
	for code, want := range map[int]bool{502: true, 503: true, 429: true, 500: false, 504: false, 401: false} {
		if Status(code) != want {
			t.Errorf("Status(%d) = %v", code, !want)
		}
	}
}

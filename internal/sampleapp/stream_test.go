package sampleapp

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamFlushes proves each line is flushed: the first line must arrive
// although the second is minutes away.
func TestStreamFlushes(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/stream?n=2&every=5m", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if want := "line 1 of 2 from h1 version v7\n"; line != want {
		t.Errorf("first line %q, want %q", line, want)
	}
}

func TestStreamLines(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/stream?n=5&every=1ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != 5 || lines[4] != "line 5 of 5 from h1 version v7" {
		t.Errorf("got lines %q", lines)
	}
}

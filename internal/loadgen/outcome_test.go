package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"
)

// Each server fails in one way; every request against it must get that
// outcome, with both clients.
func TestOutcomesAgainstFailingServers(t *testing.T) {
	t.Parallel()
	resetAfterRequest := func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) != nil {
			return
		}
		_ = c.(*net.TCPConn).SetLinger(0) // Close sends RST
	}
	closeAfterRequest := func(c net.Conn) {
		_ = readRequest(bufio.NewReader(c))
	}
	shortBody := func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Version: v1\r\n\r\nonly ten b")
		}
	}
	shortChunked := func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly ten b")
		}
	}
	hang := func(c net.Conn) {
		_ = readRequest(bufio.NewReader(c))
		_, _ = io.Copy(io.Discard, c) // until the client or the cleanup closes it
	}
	hangInBody := func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
			_, _ = io.Copy(io.Discard, c)
		}
	}
	garbage := func(c net.Conn) {
		if readRequest(bufio.NewReader(c)) == nil {
			io.WriteString(c, "SMTP ready\r\n\r\n")
		}
	}
	status := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Version", "v1")
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	httpServer := func(t *testing.T, h http.Handler) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL + "/"
	}
	tests := []struct {
		name   string
		url    func(t *testing.T) string
		target Target
		want   Outcome
		code   string
	}{
		{"ok", func(t *testing.T) string { return httpServer(t, status(200, "hello")) }, Target{ExpectBody: "ell"}, OK, "200"},
		{"ok echo", func(t *testing.T) string {
			return httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
		}, Target{Method: "POST", Body: []byte("echo me"), ExpectEcho: true}, OK, "200"},
		{"refused", closedPort, Target{}, Refused, ""},
		{"reset", func(t *testing.T) string { return tcpServer(t, resetAfterRequest) }, Target{}, Reset, ""},
		{"eof", func(t *testing.T) string { return tcpServer(t, closeAfterRequest) }, Target{}, EOF, ""},
		{"truncated", func(t *testing.T) string { return tcpServer(t, shortBody) }, Target{}, Truncated, ""},
		{"truncated chunked", func(t *testing.T) string { return tcpServer(t, shortChunked) }, Target{}, Truncated, ""},
		{"timeout", func(t *testing.T) string { return tcpServer(t, hang) }, Target{}, Timeout, ""},
		{"timeout in body", func(t *testing.T) string { return tcpServer(t, hangInBody) }, Target{}, Timeout, ""},
		{"malformed answer", func(t *testing.T) string { return tcpServer(t, garbage) }, Target{}, Error, ""},
		{"503", func(t *testing.T) string { return httpServer(t, status(503, "down")) }, Target{}, HTTP5xx, "503"},
		{"404", func(t *testing.T) string { return httpServer(t, status(404, "no")) }, Target{}, HTTP4xx, "404"},
		{"redirect", func(t *testing.T) string { return httpServer(t, status(302, "")) }, Target{}, HTTP3xx, "302"},
		{"wrong body", func(t *testing.T) string { return httpServer(t, status(200, "goodbye")) }, Target{ExpectBody: "hello"}, BodyMismatch, "200"},
		{"wrong echo", func(t *testing.T) string { return httpServer(t, status(200, "echo mE")) },
			Target{Method: "POST", Body: []byte("echo me"), ExpectEcho: true}, BodyMismatch, "200"},
		{"short echo", func(t *testing.T) string { return httpServer(t, status(200, "echo")) },
			Target{Method: "POST", Body: []byte("echo me"), ExpectEcho: true}, BodyMismatch, "200"},
	}
	for _, tc := range tests {
		for _, client := range []ClientKind{ClientGo, ClientRaw} {
			t.Run(tc.name+"/"+string(client), func(t *testing.T) {
				t.Parallel()
				target := tc.target
				target.URL = tc.url(t)
				const n = 8
				rep := run(t, Config{
					Targets:  []Target{target},
					Rate:     100,
					Duration: n * 10 * time.Millisecond,
					Timeout:  300 * time.Millisecond,
					Client:   client,
				})
				if rep.Requests.Total != n {
					t.Fatalf("total %d, want %d", rep.Requests.Total, n)
				}
				if got := rep.Outcomes[tc.want.String()]; got != n {
					t.Errorf("%s: %d of %d, want all; outcomes %v, errors %v", tc.want, got, n, nonZero(rep.Outcomes), rep.Errors)
				}
				if tc.code != "" && rep.StatusCodes[tc.code] != n {
					t.Errorf("status %s counted %d times, want %d (%v)", tc.code, rep.StatusCodes[tc.code], n, rep.StatusCodes)
				}
				if tc.want != OK && len(rep.Errors) == 0 {
					t.Error("no error sample")
				}
			})
		}
	}
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

// classifyErr works on wrapped errors by type, never by message.
func TestClassifyErr(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error {
		return fmt.Errorf("get x: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)})
	}
	canceled, cancel := context.WithCancelCause(context.Background())
	cancel(errAborted)
	tests := []struct {
		name             string
		ctx              context.Context
		err              error
		inBody, byte, cn bool
		want             Outcome
	}{
		{"refused", nil, wrap(syscall.ECONNREFUSED), false, false, false, Refused},
		{"reset", nil, wrap(syscall.ECONNRESET), false, false, true, Reset},
		{"reset in body", nil, wrap(syscall.ECONNRESET), true, true, true, Reset},
		{"broken pipe", nil, wrap(syscall.EPIPE), false, false, true, Reset},
		{"eof", nil, fmt.Errorf("x: %w", io.EOF), false, false, true, EOF},
		{"unexpected eof in body", nil, io.ErrUnexpectedEOF, true, true, true, Truncated},
		{"deadline", nil, fmt.Errorf("x: %w", context.DeadlineExceeded), false, false, true, Timeout},
		{"os deadline", nil, wrap(os.ErrDeadlineExceeded), true, true, true, Timeout},
		{"aborted", canceled, context.Canceled, false, false, true, Aborted},
		{"closed idle conn", nil, errors.New("http: server closed idle connection"), false, false, true, EOF},
		{"protocol error", nil, errors.New("malformed HTTP response"), false, true, true, Error},
		{"dns", nil, &net.DNSError{Err: "no such host", Name: "x"}, false, false, false, Error},
		{"no conn", nil, errors.New("something"), false, false, false, Error},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyErr(tc.ctx, tc.err, tc.inBody, tc.byte, tc.cn); got != tc.want {
				t.Errorf("classifyErr(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// Go's client silently sends a GET again on a new connection when a
// reused one turns out closed; the report counts it. A POST is not
// retried: it fails, which is why the verifier mixes them. The raw client
// never retries.
func TestSilentRetriesOnReusedConnections(t *testing.T) {
	t.Parallel()
	// Answers the first request of each connection with keep-alive, then
	// reads the second one and closes without answering.
	url := tcpServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if readRequest(br) != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Version: v1\r\n\r\nok")
		_ = readRequest(br)
	})
	tests := []struct {
		client  ClientKind
		method  string
		retried bool // every request after the first is retried
		eof     bool // every second request fails with eof
	}{
		{ClientGo, "GET", true, false},
		{ClientGo, "POST", false, true},
		{ClientRaw, "GET", false, true},
	}
	for _, tc := range tests {
		t.Run(string(tc.client)+"/"+tc.method, func(t *testing.T) {
			t.Parallel()
			const n = 10
			rep := run(t, Config{
				Targets:  []Target{{URL: url, Method: tc.method, Body: []byte("x")}},
				Rate:     200, // one at a time: each request reuses the last connection
				Duration: n * 5 * time.Millisecond,
				Timeout:  2 * time.Second,
				Client:   tc.client,
			})
			q := rep.Requests
			if tc.retried && (q.Retried < n/2 || q.OK != n) {
				t.Errorf("retried %d, ok %d of %d: want the reused-connection failures retried and counted", q.Retried, q.OK, n)
			}
			if !tc.retried && q.Retried != 0 {
				t.Errorf("retried %d, want 0", q.Retried)
			}
			if tc.eof && (rep.Outcomes["eof"] < n/3 || q.OK < n/3) {
				t.Errorf("outcomes %v: want about half eof", nonZero(rep.Outcomes))
			}
		})
	}
}

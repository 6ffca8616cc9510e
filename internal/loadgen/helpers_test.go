package loadgen

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// tcpServer runs handle for every connection on a loopback listener until
// the test ends; then it closes the listener and every connection and
// waits for the handlers.
func tcpServer(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}

// readRequest reads one request (and its body) from br.
func readRequest(br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err
}

// closedPort returns a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

// run runs a generator to its end, bounded by a deadline.
func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := g.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("run did not finish within 30s")
	}
	checkInvariants(t, rep)
	return rep
}

// checkInvariants checks what must hold for every report.
func checkInvariants(t *testing.T, rep *Report) {
	t.Helper()
	var sum int64
	for _, o := range Outcomes() {
		n, ok := rep.Outcomes[o.String()]
		if !ok {
			t.Errorf("outcome %s missing from the report", o)
		}
		sum += n
	}
	q := rep.Requests
	if sum != q.Total || q.OK+q.Failed != q.Total {
		t.Errorf("outcomes sum to %d, ok+failed = %d, total %d: every request must have exactly one outcome", sum, q.OK+q.Failed, q.Total)
	}
	if q.Sent+q.Dropped+rep.Outcomes["aborted"] < q.Total {
		t.Errorf("sent %d + dropped %d + aborted %d < total %d", q.Sent, q.Dropped, rep.Outcomes["aborted"], q.Total)
	}
	var rowSent, rowOK, rowFailed int64
	for _, r := range rep.Timeline.Rows {
		rowSent += r.Sent
		rowOK += r.OK
		rowFailed += r.Failed
	}
	if rowSent != q.Sent || rowOK != q.OK || rowFailed != q.Failed {
		t.Errorf("timeline sums sent %d ok %d failed %d, report says %d %d %d", rowSent, rowOK, rowFailed, q.Sent, q.OK, q.Failed)
	}
	if len(rep.Timeline.Rows) > rep.Timeline.MaxRows {
		t.Errorf("%d timeline rows, bound %d", len(rep.Timeline.Rows), rep.Timeline.MaxRows)
	}
}

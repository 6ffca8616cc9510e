package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// TestRequestHeadLimits: HAProxy-like defaults bound what one request head
// may cost, in bytes and in lines.
func TestRequestHeadLimits(t *testing.T) {
	_, _, addr := startScripted(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	many := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name string
		raw  string
		want int
	}{
		{"99 headers", "GET /?id=a HTTP/1.1\r\nHost: x\r\n" + many(99) + "\r\n", 200},
		{"101 headers", "GET /?id=b HTTP/1.1\r\nHost: x\r\n" + many(101) + "\r\n", 431},
		{"60 KiB of head", "GET /?id=c HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Big: "+strings.Repeat("a", 12000)+"\r\n", 5) + "\r\n", 200},
		{"70 KiB of head", "GET /?id=d HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Big: "+strings.Repeat("a", 14000)+"\r\n", 5) + "\r\n", 431},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, err := exchange1(t, addr, c.raw, "GET")
			if err != nil || status != c.want {
				t.Fatalf("got %d %v, want %d", status, err, c.want)
			}
		})
	}
}

// TestSlowHeadAnswered408 and TestSilentConnectionClosed: a client gets the
// read-header timeout to send a request head from its first byte, and a
// connection that never sends anything is held no longer than that.
func TestSlowHeadAnswered408(t *testing.T) {
	b := newScriptedBackend(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	cfg := testConfig(t, b.addr())
	cfg.Client.ReadHeaderTimeout = config.Duration(300 * time.Millisecond)
	cfg.Client.IdleTimeout = config.Duration(30 * time.Second)
	_, url := startServer(t, cfg)

	t.Run("partial head", func(t *testing.T) {
		c, err := net.Dial("tcp", hostPort(url))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("got %d, want 408", resp.StatusCode)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("408 after %s", took)
		}
	})
	t.Run("nothing sent", func(t *testing.T) {
		c, err := net.Dial("tcp", hostPort(url))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		out, err := io.ReadAll(c)
		if err != nil || len(out) != 0 {
			t.Fatalf("want a silent close, got %q %v", out, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("silent connection held %s, want about the read-header timeout", took)
		}
	})
}

// TestConnectionCap: with max_conns reached, a new connection waits in the
// accept queue and is served as soon as another one closes.
func TestConnectionCap(t *testing.T) {
	b := newScriptedBackend(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	cfg := testConfig(t, b.addr())
	cfg.Listeners[0].MaxConns = 2
	cfg.Client.MaxConns = 100
	srv, url := startServer(t, cfg)
	eventually(t, 2*time.Second, "healthy", func() bool { return stateOf(srv, "app", b.addr()) == "healthy" })
	addr := hostPort(url)
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, _, err := exchangeOn(c, bufio.NewReader(c), "GET /?id=held HTTP/1.1\r\nHost: x\r\n\r\n", "GET"); err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET /?id=third HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(third)
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served over max_conns: 2")
	}
	held[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served after a slot freed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "id=third" {
		t.Fatalf("got %q", body)
	}
}

// TestConnectRefused: CONNECT is no reverse proxy's business; its authority
// form must not be rewritten into a path and sent on.
func TestConnectRefused(t *testing.T) {
	b, _, addr := startScripted(t, func(r rawRequest) script { return script{parts: []string{okFor(r)}} })
	status, _, err := exchange1(t, addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", "CONNECT")
	if err != nil || status != http.StatusMethodNotAllowed {
		t.Fatalf("got %d %v, want 405", status, err)
	}
	if n := len(b.requests()); n != 0 {
		t.Fatalf("the target got %d requests", n)
	}
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

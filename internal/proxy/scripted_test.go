package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawRequest is what a scripted backend received for one request.
type rawRequest struct {
	head string // request line and headers as received, CRLFs included
	body []byte
}

// header returns every value of the named header, in order.
func (r rawRequest) header(name string) []string {
	var out []string
	for _, line := range strings.Split(r.head, "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func (r rawRequest) path() string {
	f := strings.Fields(strings.SplitN(r.head, "\r\n", 2)[0])
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// script is how a scripted backend answers one request: parts written in
// order with a short pause between them, then the connection is closed if
// closeAfter is set.
type script struct {
	parts      []string
	closeAfter bool
}

// scriptedBackend is a raw TCP backend that records every request it
// parses and answers with the bytes respond returns, however wrong: it is
// how a misbehaving application looks from the proxy. Health checks
// (/healthz) are answered correctly.
type scriptedBackend struct {
	ln      net.Listener
	respond func(rawRequest) script

	mu   sync.Mutex
	reqs []rawRequest
	// written counts scripts written to the end, so a test can wait until
	// a late part has left the backend.
	written atomic.Int64
}

func newScriptedBackend(t *testing.T, respond func(rawRequest) script) *scriptedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &scriptedBackend{ln: ln, respond: respond}
	go b.serve()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *scriptedBackend) addr() string { return b.ln.Addr().String() }

// requests returns what was received so far, health checks left out.
func (b *scriptedBackend) requests() []rawRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]rawRequest(nil), b.reqs...)
}

func (b *scriptedBackend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.conn(c)
	}
}

func (b *scriptedBackend) conn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 1000; i++ {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		req, err := readRawRequest(br)
		if err != nil {
			return
		}
		if req.path() == "/healthz" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			continue
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, req)
		b.mu.Unlock()
		s := b.respond(req)
		for j, p := range s.parts {
			if j > 0 {
				time.Sleep(20 * time.Millisecond) // part of the script: a backend writing twice
			}
			if _, err := io.WriteString(c, p); err != nil {
				return
			}
		}
		b.written.Add(1)
		if s.closeAfter {
			return
		}
	}
}

// readRawRequest parses leniently, the way a backend that trusts its proxy
// would: by the first Content-Length, or chunked.
func readRawRequest(br *bufio.Reader) (rawRequest, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		head.WriteString(line)
		if err != nil {
			return rawRequest{}, err
		}
		if line == "\r\n" || line == "\n" {
			break
		}
	}
	r := rawRequest{head: head.String()}
	if te := r.header("Transfer-Encoding"); len(te) > 0 {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return r, err
			}
			n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil {
				return r, err
			}
			if n == 0 {
				_, err := br.ReadString('\n')
				return r, err
			}
			chunk := make([]byte, n+2)
			if _, err := io.ReadFull(br, chunk); err != nil {
				return r, err
			}
			r.body = append(r.body, chunk[:n]...)
		}
	}
	if cl := r.header("Content-Length"); len(cl) > 0 {
		n, _ := strconv.Atoi(cl[0])
		r.body = make([]byte, n)
		if _, err := io.ReadFull(br, r.body); err != nil {
			return r, err
		}
	}
	return r, nil
}

// idOf is the request id a test put in the query (?id=...).
func idOf(r rawRequest) string {
	_, q, _ := strings.Cut(r.path(), "id=")
	id, _, _ := strings.Cut(q, "&")
	return id
}

// okFor is a well-formed answer carrying the request's id in its body.
func okFor(r rawRequest) string {
	body := "id=" + idOf(r)
	return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

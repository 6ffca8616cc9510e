package sampleapp

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const (
	// maxSize bounds ?size so a typo cannot make the backend of a benchmark
	// allocate or send gigabytes.
	maxSize = 64 << 20
	// maxSleep bounds ?sleep: longer than any drain a test would wait for,
	// short enough that a forgotten request does not hold a shutdown forever.
	maxSleep = 10 * time.Minute
	// maxStreamLines bounds /stream?n=.
	maxStreamLines = 100000
	// patternSize is the length of the preallocated ?size body chunk: large
	// enough that a 1 KiB benchmark answer is a single slice of it, small
	// enough to stay in cache.
	patternSize = 32 << 10
)

// app is the HTTP handler. Everything an answer needs is computed once here so
// the hot path (GET / and GET /?size=1024) allocates as little as possible.
type app struct {
	cfg        Config
	helloBody  []byte
	helloLen   []string
	versionHdr []string
	hostHdr    []string
	pattern    []byte
	// reqLog is nil without --request-log.
	reqLog *requestLog

	// served counts answers to /, for --error-percent.
	served atomic.Int64

	wsMu       sync.Mutex
	wsShutdown bool
	wsConns    map[*websocket.Conn]struct{}
	wsDone     sync.WaitGroup
}

func newApp(cfg Config) *app {
	body := []byte(fmt.Sprintf("hello from %s version %s\n", cfg.Name, cfg.Version))
	pattern := make([]byte, patternSize)
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz\n"
	for i := range pattern {
		pattern[i] = alphabet[i%len(alphabet)]
	}
	return &app{
		cfg:        cfg,
		helloBody:  body,
		helloLen:   []string{strconv.Itoa(len(body))},
		versionHdr: []string{cfg.Version},
		hostHdr:    []string{cfg.Name},
		pattern:    pattern,
		wsConns:    map[*websocket.Conn]struct{}{},
	}
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Shared, never-modified slices in canonical form: Header.Set would
	// allocate a new slice per request.
	h["X-Version"] = a.versionHdr
	h["X-Host"] = a.hostHdr
	switch {
	case r.URL.Path == "/healthz":
		a.healthz(w)
	case r.URL.Path == "/stream":
		a.stream(w, r)
	case r.URL.Path == "/ws":
		a.websocket(w, r)
	case a.cfg.ErrorPercent > 0 && a.failNext():
		http.Error(w, "failing on purpose: --error-percent", http.StatusInternalServerError)
	case r.Method == http.MethodPost:
		a.echo(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		a.hello(w, r)
	default:
		h["Allow"] = []string{"GET, HEAD, POST"}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// failNext reports whether this answer is one of --error-percent's 500s:
// the answers numbered so that n·percent crosses a multiple of 100.
func (a *app) failNext() bool {
	n := a.served.Add(1)
	p := int64(a.cfg.ErrorPercent)
	return n*p/100 != (n-1)*p/100
}

func (a *app) healthz(w http.ResponseWriter) {
	if a.cfg.FailHealth {
		http.Error(w, "unhealthy: --fail-health", http.StatusServiceUnavailable)
		return
	}
	if a.cfg.UnhealthyFile != "" {
		if _, err := os.Stat(a.cfg.UnhealthyFile); err == nil {
			http.Error(w, "unhealthy: "+a.cfg.UnhealthyFile+" exists", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	_, _ = io.WriteString(w, "ok\n")
}

// query holds the ?sleep and ?size parameters.
type query struct {
	sleep time.Duration
	size  int // -1: not given
}

// parseQuery reads ?sleep and ?size. The benchmark's plain GET / has no query,
// so it skips url.ParseQuery and its map allocation entirely.
func parseQuery(r *http.Request) (query, error) {
	q := query{size: -1}
	if r.URL.RawQuery == "" {
		return q, nil
	}
	v := r.URL.Query()
	if s := v.Get("sleep"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxSleep {
			return q, fmt.Errorf("bad sleep %q: want a duration from 0 to %s", s, maxSleep)
		}
		q.sleep = d
	}
	if s, ok := v["size"]; ok {
		n, err := strconv.Atoi(s[0])
		if err != nil || n < 0 || n > maxSize {
			return q, fmt.Errorf("bad size %q: want bytes from 0 to %d", s[0], maxSize)
		}
		q.size = n
	}
	return q, nil
}

// sleep waits d, or until the client goes away; it reports whether to answer.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (a *app) hello(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !sleep(r, q.sleep) {
		return
	}
	h := w.Header()
	if q.size < 0 {
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["Content-Length"] = a.helloLen
		_, _ = w.Write(a.helloBody)
		return
	}
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Length"] = []string{strconv.Itoa(q.size)}
	for left := q.size; left > 0; {
		n := min(left, len(a.pattern))
		if _, err := w.Write(a.pattern[:n]); err != nil {
			return // client gone
		}
		left -= n
	}
}

func (a *app) echo(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Logged before anything else happens: a request whose client or proxy
	// gave up during the sleep still ran, as far as its effects go.
	if id := r.Header.Get(RequestIDHeader); id != "" && a.reqLog != nil {
		if err := a.reqLog.record(id); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	if !sleep(r, q.sleep) {
		return
	}
	h := w.Header()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		h["Content-Type"] = []string{ct}
	} else {
		// Without this net/http would sniff the echoed bytes and invent one.
		h["Content-Type"] = []string{"application/octet-stream"}
	}
	if r.ContentLength >= 0 {
		h["Content-Length"] = []string{strconv.FormatInt(r.ContentLength, 10)}
	}
	// The echo is written while the body is still arriving. Without full
	// duplex, net/http discards the unread rest of a body smaller than 256 KiB
	// as soon as the answer's head goes out, cutting the echo short whenever
	// the body comes in more than one piece.
	_ = http.NewResponseController(w).EnableFullDuplex()
	_, _ = io.Copy(w, r.Body)
}

// Command hello is the sample HTTP service that zerodown's tests, benchmarks
// and demo deploy. Each answer says which host and version produced it, so a
// deploy can be watched switching versions; flags make it fail health checks,
// answer slowly, stream, or close idle keep-alive connections early, which are
// the situations a zero-downtime deploy has to survive.
//
// Routes:
//
//	GET  /healthz                   200 "ok", or 503 with --fail-health or while --unhealthy-file exists
//	GET  /stream?n=5&every=100ms    n lines, each flushed at once (chunked)
//	GET  /ws                        WebSocket echo
//	POST (any path)                 echoes the body with its Content-Type
//	GET  (any other path)           "hello from NAME version V"
//	     ?sleep=2s                  answers after that long (also for POST)
//	     ?size=N                    answers exactly N bytes (0..64MiB) instead
//
// Every answer carries X-Version and X-Host.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
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

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// config is the parsed command line.
type config struct {
	listen          string
	version         string
	name            string
	failHealth      bool
	unhealthyFile   string
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
}

// parseFlags reads the command line, falling back to the environment the way
// platforms that inject PORT, VERSION and HOST_NAME expect.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8080", "address to listen on; without this flag, 127.0.0.1:$PORT when PORT is set")
	fs.StringVar(&cfg.version, "version", "", `version reported in answers (default $VERSION, else "v0")`)
	fs.StringVar(&cfg.name, "name", "", "host name reported in answers (default $HOST_NAME, else the machine's host name)")
	fs.BoolVar(&cfg.failHealth, "fail-health", false, "answer 503 on /healthz, always")
	fs.StringVar(&cfg.unhealthyFile, "unhealthy-file", "", "answer 503 on /healthz while this file exists")
	fs.DurationVar(&cfg.idleTimeout, "idle-timeout", 60*time.Second, "close keep-alive connections idle this long")
	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, wait this long for in-flight requests")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "listen" {
			listenSet = true
		}
	})
	if port := getenv("PORT"); port != "" && !listenSet {
		cfg.listen = net.JoinHostPort("127.0.0.1", port)
	}
	if cfg.version == "" {
		cfg.version = getenv("VERSION")
	}
	if cfg.version == "" {
		cfg.version = "v0"
	}
	if cfg.name == "" {
		cfg.name = getenv("HOST_NAME")
	}
	if cfg.name == "" {
		h, err := os.Hostname()
		if err != nil {
			return config{}, fmt.Errorf("no --name and no host name: %w", err)
		}
		cfg.name = h
	}
	if cfg.idleTimeout < 0 {
		return config{}, fmt.Errorf("--idle-timeout must not be negative, got %s", cfg.idleTimeout)
	}
	if cfg.shutdownTimeout <= 0 {
		return config{}, fmt.Errorf("--shutdown-timeout must be positive, got %s", cfg.shutdownTimeout)
	}
	return cfg, nil
}

// run serves until SIGTERM or SIGINT and returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hello:", err)
		return 2
	}
	// Subscribe before listening so a signal sent as soon as the port is
	// open is not lost to the default handler (which would kill the process).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		fmt.Fprintln(stderr, "hello:", err)
		return 1
	}
	app := newApp(cfg)
	srv := &http.Server{
		Handler:           app,
		IdleTimeout:       cfg.idleTimeout,
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stderr, "hello: listening on %s (name %s, version %s)\n", ln.Addr(), cfg.name, cfg.version)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintln(stderr, "hello:", err)
		return 1
	case sig := <-sigs:
		fmt.Fprintf(stderr, "hello: got %s, finishing in-flight requests (up to %s)\n", sig, cfg.shutdownTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	// Hijacked WebSocket connections are invisible to Shutdown: tell them to
	// close so a deploy does not leave them dangling until the process dies.
	// This runs before Shutdown (not via RegisterOnShutdown, which runs
	// concurrently) so that no WebSocket can be tracked after waitWebSockets
	// starts waiting.
	app.closeWebSockets()
	err = srv.Shutdown(ctx)
	if err == nil {
		err = app.waitWebSockets(ctx)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hello: shutdown:", err)
		return 1
	}
	return 0
}

// app is the HTTP handler. Everything an answer needs is computed once here so
// the hot path (GET / and GET /?size=1024) allocates as little as possible.
type app struct {
	cfg        config
	helloBody  []byte
	helloLen   []string
	versionHdr []string
	hostHdr    []string
	pattern    []byte

	wsMu       sync.Mutex
	wsShutdown bool
	wsConns    map[*websocket.Conn]struct{}
	wsDone     sync.WaitGroup
}

func newApp(cfg config) *app {
	body := []byte(fmt.Sprintf("hello from %s version %s\n", cfg.name, cfg.version))
	pattern := make([]byte, patternSize)
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz\n"
	for i := range pattern {
		pattern[i] = alphabet[i%len(alphabet)]
	}
	return &app{
		cfg:        cfg,
		helloBody:  body,
		helloLen:   []string{strconv.Itoa(len(body))},
		versionHdr: []string{cfg.version},
		hostHdr:    []string{cfg.name},
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
	case r.Method == http.MethodPost:
		a.echo(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		a.hello(w, r)
	default:
		h["Allow"] = []string{"GET, HEAD, POST"}
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (a *app) healthz(w http.ResponseWriter) {
	if a.cfg.failHealth {
		http.Error(w, "unhealthy: --fail-health", http.StatusServiceUnavailable)
		return
	}
	if a.cfg.unhealthyFile != "" {
		if _, err := os.Stat(a.cfg.unhealthyFile); err == nil {
			http.Error(w, "unhealthy: "+a.cfg.unhealthyFile+" exists", http.StatusServiceUnavailable)
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

func (a *app) stream(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	n, every := 5, 100*time.Millisecond
	if s := v.Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 0 || n > maxStreamLines {
			http.Error(w, fmt.Sprintf("bad n %q: want 0 to %d", s, maxStreamLines), http.StatusBadRequest)
			return
		}
	}
	if s := v.Get("every"); s != "" {
		var err error
		if every, err = time.ParseDuration(s); err != nil || every < 0 || every > maxSleep {
			http.Error(w, fmt.Sprintf("bad every %q: want a duration from 0 to %s", s, maxSleep), http.StatusBadRequest)
			return
		}
	}
	w.Header()["Content-Type"] = []string{"text/plain; charset=utf-8"}
	rc := http.NewResponseController(w)
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for i := 1; i <= n; i++ {
		if i > 1 && tick != nil {
			select {
			case <-tick:
			case <-r.Context().Done():
				return
			}
		}
		if _, err := fmt.Fprintf(w, "line %d of %d from %s version %s\n", i, n, a.cfg.name, a.cfg.version); err != nil {
			return
		}
		// Flushing each line is the point: the client (or a proxy under
		// test) must see it before the next one is produced.
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

func (a *app) websocket(w http.ResponseWriter, r *http.Request) {
	// Through a load balancer the Origin rarely matches Host; this is a test
	// fixture, not something a browser should trust.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client already
	}
	if !a.trackWebSocket(c) {
		_ = c.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer a.untrackWebSocket(c)
	c.SetReadLimit(maxSize)
	ctx := context.Background()
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			// Closed by either side; CloseNow is a no-op on a closed conn.
			_ = c.CloseNow()
			return
		}
		wr, err := c.Writer(ctx, typ)
		if err != nil {
			_ = c.CloseNow()
			return
		}
		if _, err := io.Copy(wr, rd); err != nil {
			_ = c.CloseNow()
			return
		}
		if err := wr.Close(); err != nil {
			_ = c.CloseNow()
			return
		}
	}
}

func (a *app) trackWebSocket(c *websocket.Conn) bool {
	a.wsMu.Lock()
	defer a.wsMu.Unlock()
	if a.wsShutdown {
		return false
	}
	a.wsConns[c] = struct{}{}
	a.wsDone.Add(1)
	return true
}

func (a *app) untrackWebSocket(c *websocket.Conn) {
	a.wsMu.Lock()
	delete(a.wsConns, c)
	a.wsMu.Unlock()
	a.wsDone.Done()
}

// closeWebSockets starts the close handshake (1001 going away) on every open
// WebSocket; the echo loops then see the close and return.
func (a *app) closeWebSockets() {
	a.wsMu.Lock()
	a.wsShutdown = true
	conns := make([]*websocket.Conn, 0, len(a.wsConns))
	for c := range a.wsConns {
		conns = append(conns, c)
	}
	a.wsMu.Unlock()
	for _, c := range conns {
		// Close blocks for the peer's answer (up to 5s), so do not hold up
		// the others.
		go func() { _ = c.Close(websocket.StatusGoingAway, "server shutting down") }()
	}
}

// waitWebSockets waits for the echo loops to end, or ctx.
func (a *app) waitWebSockets(ctx context.Context) error {
	done := make(chan struct{})
	go func() { a.wsDone.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("websockets still open: %w", ctx.Err())
	}
}

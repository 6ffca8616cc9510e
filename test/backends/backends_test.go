// Package backends proves that `zerodown lb` proxies correctly to HTTP
// servers nobody here wrote: nginx, Node's http module, Python's http.server
// and, for comparison, the Go sample app. Each backend runs as its own
// process on a free loopback port behind a load balancer started in this
// process, and every operation a user relies on — plain and chunked uploads,
// large uploads, streamed answers, WebSockets — is sent through it, by Go's
// client and by curl. These backends parse HTTP their own way, so they catch
// framing mistakes (a header sent twice, a body cut short) that a Go backend
// forgives.
package backends

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

var helloBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zerodown-backends-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helloBin = filepath.Join(dir, "hello")
	if err := proctest.BuildGo(helloBin, "../../examples/hello"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// streamSpec is an answer the backend sends in parts with a pause between
// them.
type streamSpec struct {
	path  string
	first []byte // what the backend sends at once
	whole []byte // the complete answer
	// lastAfter is the least time between the request reaching the backend
	// and the backend sending the last byte.
	lastAfter time.Duration
}

// backend is one HTTP server of the zoo and what its routes answer.
type backend struct {
	name string
	// run starts the backend listening on addr (127.0.0.1:port).
	run func(t *testing.T, addr string) *proctest.Proc

	getPath string
	wantGet []byte
	// echoPath answers a POST with its body. nginx cannot without extra
	// modules; there it is "" and a body is checked by storing it with
	// WebDAV and reading it back.
	echoPath string
	// sumPath answers a POST with "<hex sha256> <length>\n"; "" to hash the
	// echo instead.
	sumPath string
	stream  streamSpec
	// wsPath is a WebSocket echo; "" when the backend cannot be one.
	wsPath string
}

// Sizes of the bodies sent and files served.
const (
	postSize      = 10 << 10  // within max_replay_body: the lb buffers it
	chunkedSize   = 100 << 10 // beyond max_replay_body: the lb streams it
	largeSize     = 8 << 20
	curlSize      = 4 << 10
	nginxFileSize = 1 << 20
	// nginx's streamed file: nginxFirst bytes at once, then nginxRate a
	// second for nginxRateParts seconds. All of it fits in a proxy's write
	// buffer, so the first part arrives early only if the lb passes on each
	// part as it comes.
	nginxFirst     = 1 << 10 // limit_rate_after in nginx.conf
	nginxRate      = 1 << 10 // limit_rate in nginx.conf
	nginxRateParts = 3
)

// Payload seeds, one per use, so no answer can pass for another.
const (
	seedPost = iota + 1
	seedChunked
	seedLarge
	seedCurl
	seedWebSocket
	seedNginxFile
	seedNginxStream
)

// streamPause is how long the script backends wait between the two parts of
// a streamed answer: long enough that the first part arriving earlier proves
// the lb did not hold it back, even on a loaded machine.
const streamPause = 2 * time.Second

var backends = []*backend{
	{
		name: "nginx",
		run:  runNginx,
		// A static file: nginx answers it with sendfile and a Content-Length.
		getPath: "/big.bin",
		wantGet: payload(nginxFileSize, seedNginxFile),
		stream: streamSpec{
			path:  "/stream.bin",
			first: payload(nginxFirst+nginxRateParts*nginxRate, seedNginxStream)[:nginxFirst],
			whole: payload(nginxFirst+nginxRateParts*nginxRate, seedNginxStream),
			// limit_rate lets nginx send nginxFirst plus nginxRate for each
			// started second of the request (counted in whole seconds of
			// the clock), head included: the last byte needs the fourth
			// second, which begins more than 2s after the request.
			lastAfter: 2 * time.Second,
		},
	},
	{
		name: "node",
		run: func(t *testing.T, addr string) *proctest.Proc {
			node := program(t, "nodejs", "/usr/bin/node", "node", "nodejs")
			return proctest.Start(t, "node", node, script(t, "node-server.js"), port(addr))
		},
		getPath:  "/hello",
		wantGet:  []byte("hello from node\n"),
		echoPath: "/echo",
		sumPath:  "/sha256",
		stream:   lineStream(fmt.Sprintf("/stream?n=2&every=%d", streamPause.Milliseconds()), "from node"),
		wsPath:   "/ws",
	},
	{
		name: "python",
		run: func(t *testing.T, addr string) *proctest.Proc {
			python := program(t, "python3", "/usr/bin/python3", "python3")
			return proctest.Start(t, "python", python, script(t, "python-server.py"), port(addr))
		},
		getPath:  "/hello",
		wantGet:  []byte("hello from python\n"),
		echoPath: "/echo",
		sumPath:  "/sha256",
		stream:   lineStream(fmt.Sprintf("/stream?n=2&every=%d", streamPause.Milliseconds()), "from python"),
		wsPath:   "/ws",
	},
	{
		name: "hello",
		run: func(t *testing.T, addr string) *proctest.Proc {
			return proctest.Start(t, "hello", helloBin, "--listen", addr, "--name", "zoo", "--version", "v1")
		},
		getPath:  "/",
		wantGet:  []byte("hello from zoo version v1\n"),
		echoPath: "/echo", // hello echoes a POST on any path
		stream:   lineStream("/stream?n=2&every="+streamPause.String(), "from zoo version v1"),
		wsPath:   "/ws",
	},
}

// lineStream is the two-line answer of the /stream routes.
func lineStream(path, from string) streamSpec {
	first := fmt.Sprintf("line 1 of 2 %s\n", from)
	second := fmt.Sprintf("line 2 of 2 %s\n", from)
	return streamSpec{path: path, first: []byte(first), whole: []byte(first + second), lastAfter: streamPause}
}

// ops are the operations tried on every backend, in order.
var ops = []struct {
	name string
	run  func(*cell, *testing.T)
}{
	{"get", (*cell).get},
	{"post", (*cell).post},
	{"chunked", (*cell).chunked},
	{"large", (*cell).large},
	{"stream", (*cell).stream},
	{"websocket", (*cell).websocket},
	{"curl-get", (*cell).curlGet},
	{"curl-post", (*cell).curlPost},
}

// TestBackends runs every operation against every backend through the lb;
// subtests are named backend/operation. Backends run in parallel, the
// operations on one backend in order.
func TestBackends(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			addr := proctest.FreeAddr(t)
			p := b.run(t, addr)
			waitReady(t, p, addr)
			c := &cell{
				b:  b,
				lb: startLB(t, addr),
				client: &http.Client{
					Transport: &http.Transport{DisableCompression: true},
					Timeout:   60 * time.Second,
				},
			}
			t.Cleanup(c.client.CloseIdleConnections)
			for _, op := range ops {
				t.Run(op.name, func(t *testing.T) { op.run(c, t) })
			}
		})
	}
}

// runNginx starts nginx in the foreground with a config and files in a
// temporary directory.
func runNginx(t *testing.T, addr string) *proctest.Proc {
	nginx := program(t, "nginx-light", "/usr/sbin/nginx", "nginx")
	dir := t.TempDir()
	for _, d := range []string{"www/dav", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{
		"www/big.bin":    payload(nginxFileSize, seedNginxFile),
		"www/stream.bin": payload(nginxFirst+nginxRateParts*nginxRate, seedNginxStream),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmpl, err := os.ReadFile(script(t, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", port(addr)).Replace(string(tmpl))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("--- nginx error.log ---\n%s", log)
		}
	})
	return proctest.Start(t, "nginx", nginx, "-p", dir, "-c", confPath)
}

// script returns the absolute path of a file in testdata.
func script(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

var (
	payloadMu    sync.Mutex
	payloadCache = map[[2]uint64][]byte{}
)

// payload returns n deterministic bytes of every value, with the sequences
// that end a chunked body and start a new request spliced in, so that a
// proxy framing by content instead of by length is caught. Callers must not
// modify the result.
func payload(n int, seed uint64) []byte {
	payloadMu.Lock()
	defer payloadMu.Unlock()
	key := [2]uint64{uint64(n), seed}
	if b, ok := payloadCache[key]; ok {
		return b
	}
	b := make([]byte, n+8)
	x := seed*0x9E3779B97F4A7C15 | 1
	for i := 0; i < n; i += 8 { // xorshift64
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	b = b[:n:n]
	traps := []string{"\r\n0\r\n\r\n", "\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"}
	for i, trap := range traps {
		if at := (i + 1) * n / (len(traps) + 1); at+len(trap) <= n {
			copy(b[at:], trap)
		}
	}
	payloadCache[key] = b
	return b
}

package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// helloBin is the sample app, built once for every test of the package.
var helloBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zerodown-agent-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helloBin = filepath.Join(dir, "hello")
	if err := proctest.BuildGo(helloBin, "../../examples/hello"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	helloTarOnce sync.Once
	helloTar     []byte
)

// helloArtifact is a tar.gz with the sample app as ./hello.
func helloArtifact(t testing.TB) []byte {
	t.Helper()
	helloTarOnce.Do(func() {
		bin, err := os.ReadFile(helloBin)
		if err != nil {
			panic(err)
		}
		helloTar = tarGz(t, []tarEntry{{name: "hello", mode: 0o755, body: string(bin)}})
	})
	return helloTar
}

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	body     string
	linkname string
}

func tarGz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.linkname, ModTime: time.Unix(1700000000, 0)}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// helloSpec runs the sample app on PORT with fast health checks.
func helloSpec(extra ...string) config.App {
	s := config.App{
		Name: "hello",
		Run:  append([]string{"./hello", "--listen", "127.0.0.1:${PORT}", "--name", "test"}, extra...),
		Health: config.AppHealth{
			Path: "/healthz", Interval: config.Duration(50 * time.Millisecond), Timeout: config.Duration(10 * time.Second),
		},
		Stop: config.AppStop{Signal: "SIGTERM", Timeout: config.Duration(5 * time.Second)},
	}
	return s
}

// release is a host.Release of bytes in memory.
func memRelease(version, format, name string, data []byte, spec config.App) host.Release {
	return host.Release{
		Version: version, SHA256: sha(data), Format: format, Name: name, Size: int64(len(data)), Spec: spec,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
	}
}

// helloRelease is the sample app as a single-file release: unpacking a
// tar.gz under the race detector costs seconds, and the archive path has
// tests of its own.
func helloRelease(t testing.TB, version string, extra ...string) host.Release {
	return memRelease(version, host.FormatFile, "hello", helloBinary(t), helloSpec(extra...))
}

var (
	helloBinOnce sync.Once
	helloBinData []byte
)

func helloBinary(t testing.TB) []byte {
	helloBinOnce.Do(func() {
		var err error
		if helloBinData, err = os.ReadFile(helloBin); err != nil {
			panic(err)
		}
	})
	return helloBinData
}

// helloTarRelease is the sample app in a tar.gz.
func helloTarRelease(t testing.TB, version string, extra ...string) host.Release {
	return memRelease(version, host.FormatTarGz, "", helloArtifact(t), helloSpec(extra...))
}

// freePort returns a loopback port nobody listens on right now.
var freePort = proctest.FreePort

// fixture is an agent running in the test process on a fresh root.
type fixture struct {
	t      testing.TB
	cfg    *config.Agent
	agent  *Agent
	client *Client
	url    string
	// app is the URL of the app's port.
	app string
}

type fixtureOption func(*config.Agent)

func withoutPreflight(c *config.Agent) { no := false; c.Preflight = &no }

func testConfig(t testing.TB, opts ...fixtureOption) *config.Agent {
	yes := true
	root := t.TempDir()
	cfg := &config.Agent{
		Listen:           "127.0.0.1:0",
		TokenFile:        filepath.Join(root, "agent.token"),
		Root:             root,
		Port:             freePort(t),
		KeepReleases:     5,
		MaxArtifactBytes: 256 << 20,
		MaxUnpackedBytes: 512 << 20,
		LogMaxBytes:      1 << 20,
		Preflight:        &yes,
		AllowRoot:        true, // tests run as root on CI; TestRunAsRoot* turn it off
		Restart:          config.AgentRestart{Backoff: config.Duration(50 * time.Millisecond), MaxBackoff: config.Duration(time.Second)},
		ShutdownTimeout:  config.Duration(10 * time.Second),
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func newFixture(t testing.TB, opts ...fixtureOption) *fixture {
	t.Helper()
	return startFixture(t, testConfig(t, opts...))
}

// startFixture runs an agent on cfg; the test's end stops the app and the
// agent.
func startFixture(t testing.TB, cfg *config.Agent, before ...func(*Agent)) *fixture {
	t.Helper()
	a, err := New(cfg, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(a)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cfg: cfg, agent: a, url: "http://" + a.Addr(), app: fmt.Sprintf("http://127.0.0.1:%d", cfg.Port)}
	f.client, err = NewClient(ClientConfig{URL: f.url, Token: a.Token()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.stop(true) })
	return f
}

// stop ends the agent; with app, the app too.
func (f *fixture) stop(app bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if app {
		if err := f.agent.StopApp(ctx); err != nil {
			f.t.Errorf("stop app: %v", err)
		}
	}
	if err := f.agent.Shutdown(ctx); err != nil {
		f.t.Errorf("shutdown: %v", err)
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) upload(r host.Release) UploadResult {
	f.t.Helper()
	res, err := f.client.Put(ctxFor(f.t, 30*time.Second), r)
	if err != nil {
		f.t.Fatalf("upload %s: %v", r.Version, err)
	}
	return res
}

func (f *fixture) activate(version string) ActivateResult {
	f.t.Helper()
	res, err := f.client.ActivateWith(ctxFor(f.t, time.Minute), ActivateRequest{Version: version})
	if err != nil {
		f.t.Fatalf("activate %s: %v", version, err)
	}
	return res
}

func (f *fixture) status() Status {
	f.t.Helper()
	s, err := f.client.AgentStatus(ctxFor(f.t, 10*time.Second))
	if err != nil {
		f.t.Fatalf("status: %v", err)
	}
	return s
}

// get fetches the app's / and returns the version header.
func (f *fixture) get() (string, error) {
	return getVersion(f.app + "/")
}

var appClient = &http.Client{Timeout: 2 * time.Second}

func getVersion(url string) (string, error) {
	resp, err := appClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return resp.Header.Get("X-Version"), nil
}

// mustServe checks that the app answers with version.
func (f *fixture) mustServe(version string) {
	f.t.Helper()
	got, err := f.get()
	if err != nil || got != version {
		f.t.Fatalf("app answers %q, %v; want version %s", got, err, version)
	}
}

func processAlive(pid int) bool {
	_, err := processStartID(pid)
	return err == nil
}

// testLogger sends the agent's log to the test's, shown on failure.
func testLogger(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// uploadGated uploads a release whose before_start hook waits until the
// returned gate file exists: its activation stays in the hooks phase
// until the test lets it go on.
func (f *fixture) uploadGated(t testing.TB, version string) (gate string) {
	t.Helper()
	gate = filepath.Join(t.TempDir(), "gate")
	spec := helloSpec()
	spec.Env = map[string]string{"GATE": gate}
	spec.Hooks.BeforeStart = [][]string{{"sh", "-c", `while [ ! -e "$GATE" ]; do sleep 0.01; done`}}
	f.upload(memRelease(version, host.FormatFile, "hello", helloBinary(t), spec))
	return gate
}

package agent

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// stored lists what the release directory holds, and fails when an upload
// left anything in tmp/.
func (f *fixture) stored() []string {
	f.t.Helper()
	tmp, err := os.ReadDir(filepath.Join(f.cfg.Root, "tmp"))
	if err != nil {
		f.t.Fatal(err)
	}
	if len(tmp) > 0 {
		f.t.Errorf("tmp/ holds %d leftover files, first %s", len(tmp), tmp[0].Name())
	}
	entries, err := os.ReadDir(filepath.Join(f.cfg.Root, "releases"))
	if err != nil {
		f.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func (f *fixture) raw(method, path string, body io.Reader, header map[string]string) (*http.Response, errorBody) {
	f.t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(f.t, 30*time.Second), method, f.url+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb errorBody
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &eb)
	return resp, eb
}

func specHeader(t testing.TB) string {
	b, err := json.Marshal(helloSpec())
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestTokenRequired(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	fi, err := os.Stat(f.cfg.TokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated token file: %v %v, want mode 0600", fi, err)
	}
	calls := []struct{ method, path string }{
		{"GET", "/v1/status"}, {"GET", "/v1/releases"}, {"GET", "/v1/releases/v1"}, {"PUT", "/v1/releases/v1"},
		{"POST", "/v1/activate"}, {"POST", "/v1/rollback"}, {"GET", "/v1/logs"}, {"GET", "/metrics"}, {"GET", "/nope"},
	}
	for _, c := range calls {
		for _, auth := range []string{"", "Bearer wrong", "Bearer " + f.agent.Token() + "x", f.agent.Token()} {
			resp, eb := f.raw(c.method, c.path, strings.NewReader("{}"), map[string]string{"Authorization": auth})
			if resp.StatusCode != http.StatusUnauthorized || eb.Code != codeUnauthorized {
				t.Errorf("%s %s with Authorization %q: %d %q, want 401", c.method, c.path, auth, resp.StatusCode, eb.Code)
			}
		}
	}
	// The next agent on the same root reads the token the first generated.
	f.stop(false)
	cfg := *f.cfg
	cfg.Listen = "127.0.0.1:0"
	a2, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Shutdown(ctxFor(t, 10*time.Second))
	if a2.Token() != f.agent.Token() {
		t.Error("the token changed between two starts")
	}
}

func TestUploadFaults(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	auth := "Bearer " + f.agent.Token()
	art := helloArtifact(t)
	good := sha(art)
	tests := []struct {
		name   string
		path   string
		body   []byte
		header map[string]string
		status int
		code   string
		has    string
	}{
		{"wrong checksum", "/v1/releases/v1?format=tar.gz&sha256=" + strings.Repeat("ab", 32), art, nil, 400, codeChecksum, "has sha256 " + good},
		{"checksum not hex", "/v1/releases/v1?sha256=xyz", art, nil, 400, codeBadInput, "64 hex digit"},
		{"no spec", "/v1/releases/v1?sha256=" + good, art, map[string]string{SpecHeader: ""}, 400, codeBadInput, "app spec is missing"},
		{"spec not base64", "/v1/releases/v1?sha256=" + good, art, map[string]string{SpecHeader: "{not base64"}, 400, codeBadInput, "not base64"},
		{"spec invalid", "/v1/releases/v1?sha256=" + good, art, map[string]string{SpecHeader: base64.StdEncoding.EncodeToString([]byte(`{"run":[]}`))}, 400, codeBadInput, "run: required"},
		{"spec unknown field", "/v1/releases/v1?sha256=" + good, art, map[string]string{SpecHeader: base64.StdEncoding.EncodeToString([]byte(`{"run":["x"],"cmd":1}`))}, 400, codeBadInput, "unknown field"},
		{"bad version", "/v1/releases/..v1?sha256=" + good, art, nil, 400, codeBadInput, "version"},
		{"reserved version suffix", "/v1/releases/v1.tmp?sha256=" + good, art, nil, 400, codeBadInput, ".tmp"},
		{"bad format", "/v1/releases/v1?format=rar&sha256=" + good, art, nil, 400, codeBadInput, "format"},
		{"file without name", "/v1/releases/v1?format=file&sha256=" + good, art, nil, 400, codeBadInput, "file name"},
		{"not a tar.gz", "/v1/releases/v1?format=tar.gz&sha256=" + sha([]byte("plain text")), []byte("plain text"), nil, 400, codeBadInput, "not a gzip file"},
		{"zip slip", "/v1/releases/v1?format=zip&sha256=" + sha(zipBytes(t, []zipEntry{{name: "../evil", body: "x"}})),
			zipBytes(t, []zipEntry{{name: "../evil", body: "x"}}), nil, 400, codeUnsafe, ".. in path"},
		{"symlink out", "/v1/releases/v1?sha256=" + sha(tarGz(t, []tarEntry{{name: "l", typ: '2', linkname: "../../.."}})),
			tarGz(t, []tarEntry{{name: "l", typ: '2', linkname: "../../.."}}), nil, 400, codeUnsafe, "outside the release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": auth, SpecHeader: specHeader(t)}
			for k, v := range tt.header {
				h[k] = v
			}
			resp, eb := f.raw("PUT", tt.path, bytes.NewReader(tt.body), h)
			if resp.StatusCode != tt.status || eb.Code != tt.code || !strings.Contains(eb.Error, tt.has) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", resp.StatusCode, eb.Code, eb.Error, tt.status, tt.code, tt.has)
			}
			if got := f.stored(); len(got) > 0 {
				t.Fatalf("a refused upload left %v", got)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The refusals are counted.
	m, err := f.client.Metrics(ctxFor(t, 5*time.Second))
	if err != nil || !strings.Contains(m, `zerodown_agent_uploads_total{result="refused"}`) {
		t.Errorf("metrics: %v\n%s", err, m)
	}
}

func TestUploadTooLarge(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *config.Agent) { c.MaxArtifactBytes = 1000; c.MaxUnpackedBytes = 2000 })
	small := tarGz(t, []tarEntry{{name: "big", body: strings.Repeat("\x00", 100_000)}}) // compresses below 1000
	if len(small) > 1000 {
		t.Fatalf("test archive is %d bytes", len(small))
	}
	tests := []struct {
		name    string
		r       host.Release
		has     string
		chunked bool
	}{
		{"declared over the cap", memRelease("v1", host.FormatFile, "app", make([]byte, 5000), helloSpec()), "over max_artifact_bytes", false},
		{"streamed over the cap", memRelease("v1", host.FormatFile, "app", make([]byte, 5000), helloSpec()), "over max_artifact_bytes", true},
		{"unpacks over the cap", memRelease("v1", host.FormatTarGz, "", small, helloSpec()), "max_unpacked_bytes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.chunked {
				tt.r.Size = -1
			}
			_, err := f.client.Put(ctxFor(t, 10*time.Second), tt.r)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge || !strings.Contains(ae.Message, tt.has) {
				t.Fatalf("got %v, want 413 containing %q", err, tt.has)
			}
			if got := f.stored(); len(got) > 0 {
				t.Fatalf("a refused upload left %v", got)
			}
		})
	}
}

func TestUploadTruncated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	art := helloArtifact(t)
	conn, err := net.Dial("tcp", f.agent.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/releases/v1?sha256=%s HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
		sha(art), f.agent.Token(), SpecHeader, specHeader(t), len(art))
	if _, err := conn.Write(art[:len(art)/2]); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite() // the sender goes away halfway
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	// Not "bad input": what was sent is fine, it did not all arrive, and
	// sending it again may work (the client does).
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "ended after") ||
		!strings.Contains(string(body), `"incomplete_upload"`) {
		t.Fatalf("got %d %s, want 408 incomplete_upload saying the upload ended early", resp.StatusCode, body)
	}
	if got := f.stored(); len(got) > 0 {
		t.Fatalf("a truncated upload left %v", got)
	}
}

func TestUploadIdempotentAndConflicts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := helloRelease(t, "v1")
	if res := f.upload(r); res.Unchanged || res.Release.SHA256 != r.SHA256 || res.Release.Spec.Run[0] != "./hello" {
		t.Fatalf("first upload: %+v", res)
	}
	// The same again: nothing to do, and the body is not even sent.
	sent := 0
	again := r
	again.Open = func() (io.ReadCloser, error) {
		rc, _ := r.Open()
		return readCounter{rc, &sent}, nil
	}
	if res := f.upload(again); !res.Unchanged {
		t.Fatalf("second upload: %+v, want unchanged", res)
	}
	if sent > 0 {
		t.Errorf("a re-upload of a stored release sent %d bytes of its body", sent)
	}
	other := memRelease("v1", host.FormatFile, "hello", []byte("other"), helloSpec())
	otherSpec := helloRelease(t, "v1", "--fail-health")
	for _, c := range []struct {
		name string
		r    host.Release
		has  string
	}{{"other artifact", other, "a version never changes"}, {"other spec", otherSpec, "another format, name or app spec"}} {
		_, err := f.client.Put(ctxFor(t, 10*time.Second), c.r)
		if !errors.Is(err, host.ErrConflict) || !strings.Contains(err.Error(), c.has) {
			t.Errorf("%s: got %v, want a conflict saying %q", c.name, err, c.has)
		}
	}
	list, err := f.client.Releases(ctxFor(t, 5*time.Second))
	if err != nil || len(list) != 1 || list[0].Version != "v1" || list[0].Size != int64(len(helloBinary(t))) {
		t.Fatalf("releases: %+v %v", list, err)
	}
	if _, err := f.client.Release(ctxFor(t, 5*time.Second), "v9"); !errors.Is(err, host.ErrNotFound) {
		t.Errorf("unknown release: %v", err)
	}
}

type readCounter struct {
	io.ReadCloser
	n *int
}

func (r readCounter) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	*r.n += n
	return n, err
}

// failingWriter fails like a full disk after limit bytes.
type failingWriter struct {
	io.WriteCloser
	left int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n, _ := w.WriteCloser.Write(p[:w.left])
		w.left = 0
		return n, syscall.ENOSPC
	}
	w.left -= len(p)
	return w.WriteCloser.Write(p)
}

func TestUploadDiskErrorKeepsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	files := 0
	f.agent.store.create = func(root *os.Root, name string, perm os.FileMode) (io.WriteCloser, error) {
		files++
		w, err := createFile(root, name, perm)
		if err != nil || files < 2 {
			return w, err
		}
		return &failingWriter{WriteCloser: w, left: 10}, nil // the second file hits a full disk
	}
	art := tarGz(t, []tarEntry{{name: "a", body: "first file"}, {name: "b", body: "second file, longer than ten bytes"}})
	_, err := f.client.Put(ctxFor(t, 10*time.Second), memRelease("v1", host.FormatTarGz, "", art, helloSpec()))
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 500 || !strings.Contains(ae.Message, "no space left on device") || !strings.Contains(ae.Message, "nothing was kept") {
		t.Fatalf("got %v, want 500 about the full disk", err)
	}
	if got := f.stored(); len(got) > 0 {
		t.Fatalf("a failed unpack left %v", got)
	}
	// With the disk fixed, the same upload works.
	f.agent.store.create = nil
	f.upload(memRelease("v1", host.FormatTarGz, "", art, helloSpec()))
	if got := f.stored(); !slices.Equal(got, []string{"v1", "v1.json"}) {
		t.Fatalf("stored %v", got)
	}
}

func TestOpenStoreCleansUp(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"releases/v1", "releases/v2", "releases/v3.tmp/x", "tmp/v4.123.artifact", "releases/.v1.json.1.new"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// v1 is complete, v2 has no metadata (a crash between unpack and record).
	if err := os.WriteFile(filepath.Join(root, "releases", "v1.json"), []byte(`{"version":"v1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := openStore(root, 1<<20, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	entries, _ := os.ReadDir(s.releases)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"v1", "v1.json"}) {
		t.Errorf("releases/ holds %v after open, want v1 and v1.json", names)
	}
	if tmp, _ := os.ReadDir(s.tmp); len(tmp) > 0 {
		t.Errorf("tmp/ holds %d entries after open", len(tmp))
	}
	// An older agent wrote the spec file 0644; it holds the env.
	if fi, err := os.Stat(filepath.Join(s.releases, "v1.json")); err != nil || fi.Mode().Perm() != specMode {
		t.Errorf("v1.json after open: %v %v, want mode %v", fi.Mode().Perm(), err, os.FileMode(specMode))
	}
}

func TestPruneKeepsCurrentAndPrevious(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *config.Agent) { c.KeepReleases = 2 })
	f.upload(helloRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))
	f.activate("v1")
	f.activate("v2") // current v2, previous v1
	for _, v := range []string{"v3", "v4"} {
		res := f.upload(helloRelease(t, v))
		if slices.Contains(res.Pruned, "v1") || slices.Contains(res.Pruned, "v2") {
			t.Fatalf("upload of %s pruned %v: the current or previous release", v, res.Pruned)
		}
	}
	list, err := f.client.Releases(ctxFor(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list {
		names = append(names, r.Version)
	}
	// v3 went when v4 came: two kept, plus current and previous.
	if !slices.Equal(names, []string{"v1", "v2", "v4"}) {
		t.Fatalf("releases %v, want v1 v2 v4", names)
	}
	if _, err := os.Stat(filepath.Join(f.cfg.Root, "releases", "v3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("v3's directory is still there: %v", err)
	}
}

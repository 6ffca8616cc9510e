package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/proctest"
)

// The store against a hostile or unlucky world: secrets on disk, two
// agents on one root, uploads racing, damaged files.

// setHooks installs upload hooks; see uploadHooks.
func (s *Store) setHooks(h uploadHooks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = h
}

func TestSpecFileMode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r := helloRelease(t, "v1")
	r.Spec.Env = map[string]string{"DB_PASSWORD": "hunter2"}
	f.upload(r)
	mask := umask(t)
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			path string
			want os.FileMode
		}{
			// The env is only the agent's to read; the code is the app's,
			// which may run as another user.
			{"releases/v1.json", 0o600},
			{"releases", 0o755 &^ mask},
			{"releases/v1", 0o755 &^ mask},
			{"releases/v1/hello", 0o755 &^ mask},
		} {
			fi, err := os.Stat(filepath.Join(f.cfg.Root, c.path))
			if err != nil || fi.Mode().Perm() != c.want {
				t.Errorf("%s: %s mode %v (%v), want %v", when, c.path, fi.Mode().Perm(), err, c.want)
			}
		}
	}
	check("after the upload")
	// A spec file an older agent left readable is made private on start.
	f.stop(false)
	if err := os.Chmod(filepath.Join(f.cfg.Root, "releases", "v1.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	startFixture(t, f.cfg)
	check("after a restart")
}

func TestRootLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	// What a second agent's start would clean up: an upload in progress.
	inflight := filepath.Join(f.cfg.Root, "tmp", "v2.123.artifact")
	if err := os.WriteFile(inflight, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	second := *f.cfg
	second.Listen = "127.0.0.1:0"
	_, err := New(&second, Options{Logger: testLogger(t)})
	want := fmt.Sprintf("root %s is in use by another zerodown agent (pid %d)", f.agent.store.root, os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a second agent on the root: %v; want an error saying %q", err, want)
	}
	if _, err := os.Stat(inflight); err != nil {
		t.Errorf("the refused agent touched the root: %v", err)
	}
	if s := f.status(); len(s.Releases) != 1 {
		t.Errorf("the first agent after the second was refused: %+v", s)
	}

	// Once the first one is stopped, the root is free again.
	f.stop(false)
	a, err := New(&second, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("an agent after the first stopped: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(f.cfg.Root, lockName))
	if err != nil || strings.TrimSpace(string(data)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("%s holds %q (%v), want the agent's pid", lockName, data, err)
	}
	if err := a.Shutdown(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

type putResult struct {
	res UploadResult
	err error
}

func TestUploadConcurrentSameVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name   string
		second func(host.Release) host.Release
		// wait: the second waits for the first and answers like a
		// re-upload after it; else it is a conflict at once.
		wait bool
	}{
		{"identical", func(r host.Release) host.Release { return r }, true},
		{"other artifact", func(r host.Release) host.Release {
			return memRelease(r.Version, host.FormatFile, "hello", []byte("another artifact"), r.Spec)
		}, false},
		{"other spec", func(r host.Release) host.Release {
			r.Spec = helloSpec("--fail-health")
			return r
		}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := helloRelease(t, fmt.Sprintf("v%d", i+1))
			held, waiting, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
			var holdOnce, waitOnce, releaseOnce sync.Once
			letGo := func() { releaseOnce.Do(func() { close(release) }) }
			t.Cleanup(letGo)
			f.agent.store.setHooks(uploadHooks{
				// The first upload to get its mark stops there until the
				// test lets it go on.
				uploading: func(string) { holdOnce.Do(func() { close(held); <-release }) },
				waiting:   func(string) { waitOnce.Do(func() { close(waiting) }) },
			})
			t.Cleanup(func() { f.agent.store.setHooks(uploadHooks{}) })
			put := func(r host.Release) chan putResult {
				c := make(chan putResult, 1)
				go func() {
					res, err := f.client.Put(ctxFor(t, 30*time.Second), r)
					c <- putResult{res, err}
				}()
				return c
			}
			within := func(c <-chan struct{}, what string) {
				t.Helper()
				select {
				case <-c:
				case <-time.After(20 * time.Second):
					t.Fatalf("timed out waiting for %s", what)
				}
			}
			result := func(c chan putResult, which string) putResult {
				t.Helper()
				select {
				case r := <-c:
					return r
				case <-time.After(30 * time.Second):
					t.Fatalf("timed out waiting for the %s upload's answer", which)
				}
				return putResult{}
			}

			firstDone := put(first)
			within(held, "the first upload to hold its version")
			secondDone := put(tt.second(first))
			if tt.wait {
				select {
				case <-waiting:
				case r2 := <-secondDone:
					t.Fatalf("the second upload answered %+v %v while the first was held; want it to wait", r2.res, r2.err)
				case <-time.After(20 * time.Second):
					t.Fatal("timed out waiting for the second upload to wait for the first")
				}
				letGo()
				r1, r2 := result(firstDone, "first"), result(secondDone, "second")
				if r1.err != nil || r2.err != nil {
					t.Fatalf("two identical uploads at once: %v; %v", r1.err, r2.err)
				}
				if r1.res.Unchanged || !r2.res.Unchanged || r2.res.Release.SHA256 != first.SHA256 {
					t.Fatalf("first %+v, second %+v; want stored, then unchanged", r1.res, r2.res)
				}
				return
			}
			r2 := result(secondDone, "second")
			if !errors.Is(r2.err, host.ErrConflict) || !strings.Contains(r2.err.Error(), "being uploaded right now") {
				t.Fatalf("another release of the same version during an upload: %v, want a conflict", r2.err)
			}
			letGo()
			if r1 := result(firstDone, "first"); r1.err != nil || r1.res.Unchanged {
				t.Fatalf("the first upload: %+v %v", r1.res, r1.err)
			}
		})
	}
}

// specJSON is helloSpec as the JSON a client sends, changed by edit.
func specJSON(t *testing.T, edit func(map[string]any)) []byte {
	t.Helper()
	data, err := json.Marshal(helloSpec())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return data
}

// putSpec uploads the sample app as version with spec sent as is.
func (f *fixture) putSpec(version string, spec []byte) (int, UploadResult, errorBody) {
	f.t.Helper()
	bin := helloBinary(f.t)
	req, err := http.NewRequestWithContext(ctxFor(f.t, 30*time.Second), http.MethodPut,
		f.url+"/v1/releases/"+version+"?format=file&name=hello&sha256="+sha(bin), bytes.NewReader(bin))
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.agent.Token())
	req.Header.Set(SpecHeader, base64.StdEncoding.EncodeToString(spec))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var res UploadResult
	var eb errorBody
	_ = json.Unmarshal(data, &res)
	_ = json.Unmarshal(data, &eb)
	return resp.StatusCode, res, eb
}

func TestUploadSpecComparedByMeaning(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	tests := []struct {
		name          string
		first, second func(map[string]any)
		want          int
	}{
		{"env {} after no env", nil, set("env", map[string]any{}), http.StatusOK},
		{"no env after env {}", set("env", map[string]any{}), nil, http.StatusOK},
		{"env null after env {}", set("env", map[string]any{}), set("env", nil), http.StatusOK},
		{"empty before_start", nil, set("hooks", map[string]any{"before_start": []any{}}), http.StatusOK},
		{"stop signal written short", nil, set("stop", map[string]any{"signal": "term", "timeout": "5s"}), http.StatusOK},
		{"another env", nil, set("env", map[string]any{"A": "b"}), http.StatusConflict},
		{"another stop timeout", nil, set("stop", map[string]any{"signal": "SIGTERM"}), http.StatusConflict},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := fmt.Sprintf("v%d", i+1)
			if status, res, eb := f.putSpec(v, specJSON(t, tt.first)); status != http.StatusCreated {
				t.Fatalf("first upload: %d %+v %+v", status, res, eb)
			}
			status, res, eb := f.putSpec(v, specJSON(t, tt.second))
			if status != tt.want || (tt.want == http.StatusOK && !res.Unchanged) {
				t.Fatalf("second upload: %d %+v %q; want %d", status, res, eb.Error, tt.want)
			}
		})
	}
}

func TestSpecEqual(t *testing.T) {
	t.Parallel()
	base := helloSpec()
	base.ApplyDefaults()
	edit := func(change func(*config.App)) config.App {
		s := helloSpec()
		s.Env = map[string]string{}
		change(&s)
		return s
	}
	tests := []struct {
		name  string
		other config.App
		equal bool
	}{
		{"empty env", edit(func(*config.App) {}), true},
		{"empty hooks", edit(func(s *config.App) { s.Hooks.BeforeStart = [][]string{} }), true},
		{"defaults left out", edit(func(s *config.App) { s.Stop.Signal = "" }), true},
		{"signal written short", edit(func(s *config.App) { s.Stop.Signal = "term" }), true},
		{"env set", edit(func(s *config.App) { s.Env["A"] = "" }), false},
		{"run differs", edit(func(s *config.App) { s.Run = append(s.Run, "x") }), false},
		{"an empty hook", edit(func(s *config.App) { s.Hooks.BeforeStart = [][]string{{}} }), false},
		{"health path", edit(func(s *config.App) { s.Health.Path = "/" }), false},
	}
	for _, tt := range tests {
		if got := specEqual(base, tt.other); got != tt.equal {
			t.Errorf("%s: specEqual %v, want %v", tt.name, got, tt.equal)
		}
		if got := specEqual(tt.other, base); got != tt.equal {
			t.Errorf("%s, the other way: specEqual %v, want %v", tt.name, got, tt.equal)
		}
	}
}

func TestDamagedReleaseFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withoutPreflight)
	for _, v := range []string{"v1", "v2", "v3"} {
		f.upload(helloRelease(t, v))
		f.activate(v)
	} // v3 current, v2 previous
	meta := filepath.Join(f.cfg.Root, "releases", "v2.json")
	good, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := os.ReadFile(filepath.Join(f.cfg.Root, "releases", "v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	damaged := func(t *testing.T, what string, err error) {
		t.Helper()
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || ae.Code != codeDamaged || !strings.Contains(ae.Message, meta) {
			t.Errorf("%s: %v; want 500 %s naming %s", what, err, codeDamaged, meta)
		}
	}
	tests := []struct {
		name string
		data []byte
		has  string
	}{
		{"empty", nil, "is empty"},
		{"truncated", good[:len(good)/2], "is damaged: unexpected end of JSON input"},
		{"not JSON", []byte("\x00\x01 not json"), "is damaged: invalid character"},
		{"another release's", v1, `is damaged: it is the metadata of version "v1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(meta, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s := f.status()
			if s.Version != "v3" || s.Previous != "v2" || !s.Healthy || len(s.Releases) != 3 {
				t.Fatalf("status: %+v", s)
			}
			for _, r := range s.Releases {
				switch {
				case r.Version == "v2" && (!strings.Contains(r.Error, meta) || !strings.Contains(r.Error, tt.has)):
					t.Errorf("v2 in status: error %q, want one naming %s and saying %q", r.Error, meta, tt.has)
				case r.Version != "v2" && (r.Error != "" || r.SHA256 == ""):
					t.Errorf("%s in status: %+v", r.Version, r)
				}
			}
			list, err := f.client.Releases(ctxFor(t, 5*time.Second))
			if err != nil || len(list) != 3 || list[1].Version != "v2" || list[1].Error == "" {
				t.Errorf("releases: %+v %v", list, err)
			}
			_, err = f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2"})
			damaged(t, "activate v2", err)
			_, err = f.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{})
			damaged(t, "rollback to v2", err)
			_, err = f.client.Put(ctxFor(t, 30*time.Second), helloRelease(t, "v2"))
			damaged(t, "upload v2 again", err)
			if _, err := f.client.Logs(ctxFor(t, 5*time.Second), "v2", 5); err != nil {
				t.Errorf("v2's log: %v", err)
			}
			f.mustServe("v3")
		})
	}
	// The others still work.
	if res := f.activate("v1"); res.Version != "v1" {
		t.Fatalf("activate v1: %+v", res)
	}
	f.mustServe("v1")
	if res, err := f.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{}); err != nil || res.Version != "v3" {
		t.Fatalf("rollback to v3: %+v %v", res, err)
	}
	f.mustServe("v3")
}

// startLogged is startFixture with the agent's log kept in log too.
func startLogged(t *testing.T, cfg *config.Agent, log *proctest.Buffer) *fixture {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, log), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cfg: cfg, agent: a, url: "http://" + a.Addr(), app: fmt.Sprintf("http://127.0.0.1:%d", cfg.Port)}
	if f.client, err = NewClient(ClientConfig{URL: f.url, Token: a.Token()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.stop(true) })
	return f
}

func TestDamagedStateRebuilt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		damage func(good []byte) []byte
		// rebuilt names where previous came from: the log, or what was
		// left of the file.
		rebuilt string
	}{
		{"empty", func([]byte) []byte { return nil }, "from logs/v2.log"},
		{"blank", func([]byte) []byte { return []byte(" \n") }, "from logs/v2.log"},
		{"truncated early", func(g []byte) []byte { return g[:5] }, "from logs/v2.log"},
		{"truncated after previous", func(g []byte) []byte { return g[:bytes.Index(g, []byte(`"port"`))] }, "kept=[previous]"},
		{"not JSON", func([]byte) []byte { return []byte("\x00garbage") }, "from logs/v2.log"},
		{"wrong types", func([]byte) []byte { return []byte(`{"previous": 7, "port": "x"}`) }, "from logs/v2.log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, withoutPreflight)
			for _, v := range []string{"v1", "v2"} {
				f.upload(helloRelease(t, v))
				f.activate(v)
			} // v2 current, v1 previous
			f.stop(false)
			statePath := filepath.Join(f.cfg.Root, "state.json")
			good, err := os.ReadFile(statePath)
			if err != nil || !bytes.Contains(good, []byte(`"port"`)) {
				t.Fatalf("state.json: %s %v", good, err)
			}
			if err := os.WriteFile(statePath, tt.damage(good), 0o644); err != nil {
				t.Fatal(err)
			}

			var log proctest.Buffer
			g := startLogged(t, f.cfg, &log)
			var s Status
			proctest.Eventually(t, 20*time.Second, "the agent to adopt v2", func() bool {
				s = g.status()
				return s.Activation == nil && s.Version == "v2" && s.Healthy
			})
			if s.Previous != "v1" {
				t.Errorf("previous %q after the rebuild, want v1", s.Previous)
			}
			if l := log.String(); !strings.Contains(l, "the agent state was damaged and has been rebuilt") ||
				!strings.Contains(l, tt.rebuilt) || !strings.Contains(l, "lost=") || !strings.Contains(l, "activation journal") {
				t.Errorf("the agent's log does not say what was rebuilt (%s) and lost:\n%s", tt.rebuilt, l)
			}
			var st agentState
			if data, err := os.ReadFile(statePath); err != nil || json.Unmarshal(data, &st) != nil || st.Previous != "v1" {
				t.Errorf("state.json after the start: %s %v", data, err)
			}
			if res, err := g.client.RollbackWith(ctxFor(t, time.Minute), RollbackRequest{}); err != nil || res.Version != "v1" {
				t.Fatalf("rollback: %+v %v", res, err)
			}
			g.mustServe("v1")

			// Damaged while the agent runs: rebuilt on the next read.
			if err := os.WriteFile(statePath, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if s := g.status(); s.Previous != "v2" || s.Version != "v1" {
				t.Errorf("status after state.json was emptied: version %s previous %q, want v1 and v2", s.Version, s.Previous)
			}
			if res := g.activate("v2"); res.Version != "v2" {
				t.Fatalf("activate v2: %+v", res)
			}
			g.mustServe("v2")
		})
	}
}

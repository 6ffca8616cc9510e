package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// fixture is a server on SQLite whose one environment points at nothing
// that answers: enough for everything but real runs (test/server has
// those), with a token per role.
type fixture struct {
	srv    *Server
	st     store.Store
	ts     *httptest.Server
	tokens map[Role]string
}

func newFixture(t testing.TB) *fixture {
	return newFixtureWith(t, func(data string) store.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(data, "state.db"), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// newFixtureWith is newFixture on the store open returns.
func newFixtureWith(t testing.TB, open func(dataDir string) store.Store) *fixture {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("lb.token", "lb-token-0123456789abcdef\n")
	write("agent.token", "agent-token-0123456789abcdef\n")
	deployPath := write("zerodown.yaml", `app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:${PORT}"]
  health: { path: /healthz, interval: 250ms, timeout: 5s }
environments:
  staging:
    lb: { driver: builtin, admin: "http://127.0.0.1:1", pool: hello, token_file: lb.token }
    hosts:
      - { name: web-1, agent: "http://127.0.0.1:1", target: "127.0.0.1:2", token_file: agent.token }
      - { name: web-2, agent: "http://127.0.0.2:1", target: "127.0.0.1:3", token_file: agent.token }
    strategy: { rolling: { batch: 1, min_healthy: 1 } }
`)
	srvPath := write("server.yaml", "deploy: zerodown.yaml\ndata: data\nlease: 3s\n")
	cfg, err := config.LoadServer(srvPath)
	if err != nil {
		t.Fatal(err)
	}
	dcfg, err := config.LoadDeploy(deployPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		t.Fatal(err)
	}
	st := open(cfg.Data)
	srv, err := New(Options{Config: cfg, Deploy: dcfg, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(srv.hub.closeAll)
	f := &fixture{srv: srv, st: st, ts: ts, tokens: map[Role]string{}}
	for r := RoleViewer; r <= RoleAdmin; r++ {
		secret, _, err := CreateToken(context.Background(), st, r.String(), r.String(), "test")
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[r] = secret
	}
	return f
}

func (f *fixture) do(t *testing.T, method, path, token, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// aRun journals a run as an executor would, without hosts.
func (f *fixture) aRun(t testing.TB, status store.RunStatus) store.Run {
	t.Helper()
	r, err := f.st.CreateRun(context.Background(), store.Run{Env: "staging", Pipeline: "rolling", Version: "v1", Artifact: "x", SHA256: strings.Repeat("a", 64), Owner: "test", Status: status})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// events journals info events "event from" to "event to" for a run, as
// its executor would (through the server's store: followers are woken).
func (f *fixture) events(t testing.TB, runID string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := f.srv.st.AppendEvent(context.Background(), store.Event{RunID: runID, Type: "info", Message: fmt.Sprintf("event %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

// TestAuthEveryEndpoint calls every route without a token, with a wrong
// one, with a revoked one and with each role: below the route's role it
// is refused with the stable code, at or above it passes the check.
func TestAuthEveryEndpoint(t *testing.T) {
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	_, revoked, err := CreateToken(context.Background(), f.st, "gone", "admin", "test")
	if err != nil {
		t.Fatal(err)
	}
	revokedSecret := ""
	{
		secret, tok, err := NewToken("gone2", RoleAdmin, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.CreateToken(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		if _, err := f.st.RevokeToken(context.Background(), tok.ID); err != nil {
			t.Fatal(err)
		}
		revokedSecret = secret
	}
	_ = revoked
	wrong := f.tokens[RoleAdmin][:len(f.tokens[RoleAdmin])-2] + "xx"
	routes := append(f.srv.routes(), route{method: "GET", pattern: "/metrics", role: RoleViewer})
	for _, rt := range routes {
		path := strings.NewReplacer("{id}", run.ID, "{env}", "staging", "{sha256}", strings.Repeat("b", 64)).Replace(rt.pattern)
		if strings.HasPrefix(rt.pattern, "/api/v1/tokens/{id}") {
			path = "/api/v1/tokens/000000000000"
		}
		name := rt.method + " " + rt.pattern
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				who   string
				token string
			}{{"none", ""}, {"wrong", wrong}, {"revoked", revokedSecret}, {"garbage", "zdt_"}, {"not ours", "Bearer-less"}} {
				resp, body := f.do(t, rt.method, path, tc.token, "")
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("%s token: status %d, want 401: %s", tc.who, resp.StatusCode, body)
				}
				if rt.method != "HEAD" && errCode(t, body) != api.CodeUnauthorized {
					t.Fatalf("%s token: code %s", tc.who, body)
				}
			}
			for r := RoleViewer; r <= RoleAdmin; r++ {
				resp, body := f.do(t, rt.method, path, f.tokens[r], "")
				forbidden := resp.StatusCode == http.StatusForbidden
				if r < rt.role && !forbidden {
					t.Fatalf("role %s on a %s route: status %d, want 403: %s", r, rt.role, resp.StatusCode, body)
				}
				if r < rt.role && errCode(t, body) != api.CodeForbidden {
					t.Fatalf("role %s: code %s", r, body)
				}
				if r >= rt.role && (forbidden || resp.StatusCode == http.StatusUnauthorized) {
					t.Fatalf("role %s on a %s route: refused %d: %s", r, rt.role, resp.StatusCode, body)
				}
			}
		})
	}
	// Only the OpenAPI document and the health check answer without a token.
	for _, p := range []string{"/api/v1/openapi.json", "/healthz"} {
		if resp, _ := f.do(t, "GET", p, "", ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// TestSessionAndCSRF signs in as the dashboard does and checks that the
// cookie is HttpOnly and SameSite=Strict, that reads work with it alone,
// and that a change needs the CSRF token and a same-site origin.
func TestSessionAndCSRF(t *testing.T) {
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	jar := &cookieJar{}
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.PostForm(f.ts.URL+"/login", url.Values{"token": {f.tokens[RoleDeployer]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", session)
	}
	if strings.Contains(session.Value, f.tokens[RoleDeployer]) {
		t.Fatal("the cookie carries the token itself")
	}
	do := func(method, path string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, f.ts.URL+path, nil)
		req.AddCookie(session)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := do("GET", "/api/v1/runs", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("read with the session: %d", r.StatusCode)
	}
	c, err := f.srv.checkSession(context.Background(), session.Value)
	if err != nil {
		t.Fatal(err)
	}
	csrf := f.srv.csrfToken(c)
	abort := "/api/v1/runs/" + run.ID + "/abort"
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"no CSRF token", nil, http.StatusForbidden},
		{"wrong CSRF token", map[string]string{"X-CSRF-Token": csrf[:10] + "x"}, http.StatusForbidden},
		{"cross-site", map[string]string{"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"other origin", map[string]string{"X-CSRF-Token": csrf, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"right token", map[string]string{"X-CSRF-Token": csrf, "Origin": f.ts.URL, "Sec-Fetch-Site": "same-origin"}, http.StatusAccepted},
	} {
		if r := do("POST", abort, tc.hdr); r.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, r.StatusCode, tc.want)
		}
	}
	got, err := f.st.GetRun(context.Background(), run.ID)
	if err != nil || !got.Abort || got.AbortBy != "deployer" {
		t.Fatalf("abort after the right token: %+v, %v", got, err)
	}
	// A forged session (another token's MAC) and an expired one are refused.
	parts := strings.Split(session.Value, ".")
	for _, v := range []string{parts[0] + "." + parts[1] + ".AAAA", parts[0] + ".1." + parts[2]} {
		if _, err := f.srv.checkSession(context.Background(), v); err == nil {
			t.Errorf("session %q accepted", v)
		}
	}
}

// cookieJar keeps nothing: the test handles the cookie itself.
type cookieJar struct{}

func (cookieJar) SetCookies(*url.URL, []*http.Cookie) {}
func (cookieJar) Cookies(*url.URL) []*http.Cookie     { return nil }

// TestEventsResume reads a run's stream, drops it half-way, and resumes
// with Last-Event-ID: every event arrives once, in order, then "end".
func TestEventsResume(t *testing.T) {
	f := newFixture(t)
	run := f.aRun(t, store.RunRunning)
	ctx := context.Background()
	f.events(t, run.ID, 1, 5)
	cl, err := api.NewClient(f.ts.URL, f.tokens[RoleViewer])
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	// First connection: read three, then the test cuts it.
	sctx, cancel := context.WithCancel(ctx)
	_, err = cl.Follow(sctx, run.ID, 0, func(e api.Event) {
		seen = append(seen, e.Seq)
		if len(seen) == 3 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("a cut stream reported the run's end")
	}
	// More events and the end arrive while no one listens; the rest then
	// arrive live.
	go func() {
		for i := 6; i <= 8; i++ {
			_, _ = f.srv.st.AppendEvent(ctx, store.Event{RunID: run.ID, Type: "info", Message: fmt.Sprintf("event %d", i)})
		}
		_ = f.srv.st.UpdateRun(ctx, run.ID, store.RunUpdate{Status: store.RunSucceeded, EndedAt: time.Now()})
	}()
	end, err := cl.Follow(ctx, run.ID, seen[len(seen)-1], func(e api.Event) { seen = append(seen, e.Seq) })
	if err != nil {
		t.Fatal(err)
	}
	if end.Status != "succeeded" || end.ExitCode == nil || *end.ExitCode != 0 {
		t.Fatalf("end: %+v", end)
	}
	for i, s := range seen {
		if s != int64(i+1) {
			t.Fatalf("events %v: want 1..8 once each", seen)
		}
	}
	if len(seen) != 8 {
		t.Fatalf("events %v: want 8", seen)
	}
	// A bad Last-Event-ID is refused.
	resp, body := f.do(t, "GET", "/api/v1/runs/"+run.ID+"/events", f.tokens[RoleViewer], "", "Accept", "text/event-stream", "Last-Event-ID", "x")
	if resp.StatusCode != http.StatusBadRequest || errCode(t, body) != api.CodeBadRequest {
		t.Fatalf("bad Last-Event-ID: %d %s", resp.StatusCode, body)
	}
}

// TestRunListPaging pages through runs with filters.
func TestRunListPaging(t *testing.T) {
	f := newFixture(t)
	for range 7 {
		f.aRun(t, store.RunSucceeded)
	}
	f.aRun(t, store.RunFailed)
	cl, _ := api.NewClient(f.ts.URL, f.tokens[RoleViewer])
	var all []string
	q := api.RunQuery{Limit: 3}
	for {
		page, err := cl.Runs(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Runs {
			all = append(all, r.ID)
		}
		if page.Next == "" {
			break
		}
		q.Before = page.Next
	}
	if len(all) != 8 {
		t.Fatalf("paged %d runs, want 8: %v", len(all), all)
	}
	seen := map[string]bool{}
	for _, id := range all {
		if seen[id] {
			t.Fatalf("run %s twice", id)
		}
		seen[id] = true
	}
	failed, err := cl.Runs(context.Background(), api.RunQuery{Status: "failed"})
	if err != nil || len(failed.Runs) != 1 {
		t.Fatalf("status filter: %+v %v", failed, err)
	}
	for _, bad := range []string{"?limit=0", "?limit=x", "?status=nope", "?before=r-nope"} {
		resp, body := f.do(t, "GET", "/api/v1/runs"+bad, f.tokens[RoleViewer], "")
		if resp.StatusCode != http.StatusBadRequest || errCode(t, body) != api.CodeBadRequest {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}

// TestRequestErrors: bad bodies and unknown things get a clear JSON
// error with a stable code, and change nothing.
func TestRequestErrors(t *testing.T) {
	f := newFixture(t)
	dep := f.tokens[RoleDeployer]
	sha := strings.Repeat("c", 64)
	for _, tc := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/api/v1/runs", `{"env":"staging","version":"v1","sha256":"` + sha + `","extra":1}`, 400, api.CodeBadRequest},
		{"POST", "/api/v1/runs", `{"env":"staging"`, 400, api.CodeBadRequest},
		{"POST", "/api/v1/runs", `{"env":"nope","version":"v1","sha256":"` + sha + `"}`, 404, api.CodeNotFound},
		{"POST", "/api/v1/runs", `{"env":"staging","version":"../x","sha256":"` + sha + `"}`, 400, api.CodeBadRequest},
		{"POST", "/api/v1/runs", `{"env":"staging","version":"v1","sha256":"` + sha + `"}`, 404, api.CodeNotFound},
		{"POST", "/api/v1/runs", `{"env":"staging","version":"v1","sha256":"short"}`, 400, api.CodeBadRequest},
		{"POST", "/api/v1/runs", `{} {}`, 400, api.CodeBadRequest},
		{"GET", "/api/v1/runs/r-nope", "", 404, api.CodeNotFound},
		{"POST", "/api/v1/runs/r-nope/abort", "", 404, api.CodeNotFound},
		{"GET", "/api/v1/environments/nope/hosts", "", 404, api.CodeNotFound},
		{"PUT", "/api/v1/artifacts/" + sha + "?name=a.tar.gz", "not the bytes", 400, api.CodeBadRequest},
		{"PUT", "/api/v1/artifacts/" + sha + "?name=../a", "x", 400, api.CodeBadRequest},
	} {
		resp, body := f.do(t, tc.method, tc.path, dep, tc.body)
		if resp.StatusCode != tc.status || errCode(t, body) != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, resp.StatusCode, body, tc.status, tc.code)
		}
	}
	if runs, _ := f.st.ListRuns(context.Background(), "", 0); len(runs) != 0 {
		t.Errorf("bad requests left %d runs", len(runs))
	}
	if ents, _ := os.ReadDir(f.srv.cfg.Artifacts); len(ents) != 0 {
		t.Errorf("a refused upload left %d entries", len(ents))
	}
}

// TestArtifactUpload stores by content, once.
func TestArtifactUpload(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "app.tar.gz")
	if err := os.WriteFile(p, []byte("\x1f\x8b some bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, _ := api.NewClient(f.ts.URL, f.tokens[RoleDeployer])
	sha, err := cl.Upload(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.srv.arts.path(sha)
	if err != nil || filepath.Base(got) != "app.tar.gz" {
		t.Fatalf("stored as %s, %v", got, err)
	}
	again, err := cl.Upload(context.Background(), p)
	if err != nil || again != sha {
		t.Fatalf("second upload: %s %v", again, err)
	}
	entries, err := f.st.Audit(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	uploads := 0
	for _, e := range entries {
		if e.Action == "artifact.upload" {
			uploads++
			if e.Actor != "deployer" || e.Target != sha {
				t.Errorf("audit entry %+v", e)
			}
		}
	}
	if uploads != 1 {
		t.Errorf("%d uploads audited, want 1 (the second sent nothing)", uploads)
	}
	// The check for the artifact is a HEAD, with no body to carry the
	// error's code: a refused token must still read as one.
	bad, _ := api.NewClient(f.ts.URL, "zdt_0123456789ab_wrong")
	_, err = bad.Upload(context.Background(), p)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Code != api.CodeUnauthorized {
		t.Errorf("upload with a wrong token: %#v, want 401 %s", err, api.CodeUnauthorized)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.StopPostgres()
	os.Exit(code)
}

// orphans judges a lock by its holder's lease: a replica with a shorter
// lease leaves a live holder alone, one with a longer lease does not wait
// past the holder's.
func TestOrphans(t *testing.T) {
	const ours = 15 * time.Second
	lock := func(env, run string, age, lease time.Duration) store.HeldLock {
		return store.HeldLock{Lock: store.Lock{Env: env, Owner: "replica-" + run, RunID: run, Lease: lease}, Age: age}
	}
	tests := []struct {
		name    string
		locks   []store.HeldLock
		running []store.Run
		want    []orphan
	}{
		{name: "within the holder's long lease, past ours: alive",
			locks: []store.HeldLock{lock("staging", "r-1", 30*time.Second, time.Minute)}},
		{name: "past the holder's short lease, within ours: gone",
			locks: []store.HeldLock{lock("staging", "r-1", 6*time.Second, 5*time.Second)},
			want:  []orphan{{"r-1", "replica-r-1", 6 * time.Second}}},
		{name: "a lock with no lease stored: judged by ours",
			locks: []store.HeldLock{lock("staging", "r-1", 10*time.Second, 0), lock("prod", "r-2", 16*time.Second, 0)},
			want:  []orphan{{"r-2", "replica-r-2", 16 * time.Second}}},
		{name: "exactly the holder's lease: not yet",
			locks: []store.HeldLock{lock("staging", "r-1", 5*time.Second, 5*time.Second)}},
		{name: "a running run whose environment no lock holds",
			locks:   []store.HeldLock{lock("staging", "r-1", time.Second, 5*time.Second)},
			running: []store.Run{{ID: "r-1", Env: "staging", Owner: "a"}, {ID: "r-3", Env: "qa", Owner: "b"}},
			want:    []orphan{{"r-3", "b", -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := orphans(tt.locks, tt.running, ours)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("orphans = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// A run's verifier report is served from the journal, so a replica serves
// the report of a run another replica executed; a run from before reports
// were journaled is served from the file beside this replica's journal.
func TestRunReport(t *testing.T) {
	f := newFixture(t)
	viewer := f.tokens[RoleViewer]
	detail := func(id string) api.RunDetail {
		t.Helper()
		resp, body := f.do(t, "GET", "/api/v1/runs/"+id, viewer, "")
		var d api.RunDetail
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &d) != nil {
			t.Fatalf("GET run %s: %d %s", id, resp.StatusCode, body)
		}
		return d
	}

	journaled := f.aRun(t, store.RunSucceeded)
	if d := detail(journaled.ID); d.Report != "" {
		t.Errorf("a run with no report links to %q", d.Report)
	}
	resp, body := f.do(t, "GET", "/api/v1/runs/"+journaled.ID+"/report", viewer, "")
	if resp.StatusCode != http.StatusNotFound || errCode(t, body) != api.CodeNotFound {
		t.Errorf("the report of a run with none: %d %s, want 404 not_found", resp.StatusCode, body)
	}
	page := "<!doctype html><title>report</title><p>4000 requests, 0 failed</p>"
	if err := f.st.PutReport(context.Background(), journaled.ID, []byte(page)); err != nil {
		t.Fatal(err)
	}

	old := f.aRun(t, store.RunSucceeded)
	oldPage := "<!doctype html><p>from before</p>"
	if err := os.MkdirAll(filepath.Dir(f.srv.reportPath(old.ID)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.srv.reportPath(old.ID), []byte(oldPage), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		run  store.Run
		want string
	}{{journaled, page}, {old, oldPage}} {
		link := detail(tc.run.ID).Report
		if link != "/api/v1/runs/"+tc.run.ID+"/report" {
			t.Errorf("run %s links to its report as %q", tc.run.ID, link)
			continue
		}
		resp, body := f.do(t, "GET", link, viewer, "")
		if resp.StatusCode != http.StatusOK || string(body) != tc.want {
			t.Errorf("GET %s: %d %q, want 200 %q", link, resp.StatusCode, body, tc.want)
		}
		if ct, csp := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"); ct != "text/html; charset=utf-8" || !strings.Contains(csp, "sandbox") {
			t.Errorf("GET %s: Content-Type %q, CSP %q; want HTML in a sandbox", link, ct, csp)
		}
	}
	if resp, _ := f.do(t, "GET", "/api/v1/runs/"+journaled.ID+"/report", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the report without a token: %d, want 401", resp.StatusCode)
	}
}

// With retention, the server prunes the runs that ended before its cut-off
// (keeping each environment's newest), with their report files, and says so
// in the audit log; without it, it never prunes.
func TestRetention(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if f.srv.cfg.Retention != nil {
		t.Fatal("the fixture's server.yaml sets retention")
	}
	old := func(age time.Duration) store.Run {
		t.Helper()
		r, err := f.st.CreateRun(ctx, store.Run{Env: "staging", Pipeline: "rolling", Version: "v1", Artifact: "x", SHA256: strings.Repeat("a", 64),
			Owner: "test", Status: store.RunSucceeded, StartedAt: time.Now().Add(-age), EndedAt: time.Now().Add(-age + time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	oldest, older, recent := old(100*24*time.Hour), old(95*24*time.Hour), old(time.Hour)
	report := f.srv.reportPath(oldest.ID)
	// Another replica pruned r-20250101-000000-abcd, and only its own copy
	// of the report; this replica's goes at its next prune.
	elsewhere := f.srv.reportPath("r-20250101-000000-abcd")
	kept := f.srv.reportPath(recent.ID)
	if err := os.MkdirAll(filepath.Dir(report), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{report, elsewhere, kept, strings.TrimSuffix(elsewhere, ".html") + ".json"} {
		if err := os.WriteFile(p, []byte("<p>old</p>"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	keep := 1
	f.srv.cfg.Retention = &config.Retention{OlderThan: config.Duration(90 * 24 * time.Hour), Keep: &keep}
	f.srv.prune(ctx)
	for _, tc := range []struct {
		run  store.Run
		gone bool
	}{{oldest, true}, {older, true}, {recent, false}} {
		if _, err := f.st.GetRun(ctx, tc.run.ID); errors.Is(err, store.ErrNotFound) != tc.gone {
			t.Errorf("run %s after the prune: %v, want gone %v", tc.run.ID, err, tc.gone)
		}
	}
	for _, p := range []string{report, elsewhere, strings.TrimSuffix(elsewhere, ".html") + ".json"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("report file %s of a pruned run: %v, want it removed", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the kept run's report file: %v", err)
	}
	entries, err := f.st.Audit(ctx, 0, 1)
	if err != nil || len(entries) != 1 || entries[0].Action != "runs.prune" || entries[0].Target != "2 runs" {
		t.Errorf("the audit log's last entry: %+v, %v; want runs.prune of 2 runs", entries, err)
	}
}

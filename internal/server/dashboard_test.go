package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/store"
)

// browser is a signed-in dashboard session: its cookie and the CSRF token
// its pages carry.
type browser struct {
	f      *fixture
	cookie *http.Cookie
	csrf   string
}

// noRedirect keeps redirects as answers, for the tests to look at.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// signIn posts the sign-in form with the role's token.
func (f *fixture) signIn(t *testing.T, role Role) *browser {
	t.Helper()
	resp, err := noRedirect.PostForm(f.ts.URL+"/login", url.Values{"token": {f.tokens[role]}, "next": {"/runs"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/runs" {
		t.Fatalf("sign in as %s: %d to %q", role, resp.StatusCode, resp.Header.Get("Location"))
	}
	b := &browser{f: f}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			b.cookie = c
		}
	}
	if b.cookie == nil {
		t.Fatal("no session cookie")
	}
	_, page := b.get(t, "/runs")
	m := regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf-token meta on the page:\n%s", page)
	}
	b.csrf = m[1]
	return b
}

func (b *browser) do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	if b != nil && b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (b *browser) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", b.f.ts.URL+path, nil)
	return b.do(t, req)
}

// post sends a form as a same-origin page would.
func (b *browser) post(t *testing.T, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", b.f.ts.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.f.ts.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(t, req)
}

// planned journals a run of a plan as an executor would: an approval
// stage, then one stage per host; the tasks named in recs are journaled
// with their state.
func (f *fixture) planned(t testing.TB, status store.RunStatus, runErr string, recs map[string]store.TaskStatus) store.Run {
	t.Helper()
	p := pipeline.Pipeline{Name: "gated", Environment: "staging", Stages: []pipeline.Stage{
		{Name: "approval", Jobs: []pipeline.Job{{Name: "gate", Tasks: []pipeline.Task{{Kind: pipeline.KindApprove, Approve: &config.ApproveTask{Message: "ship it?"}}}}}},
	}}
	for _, h := range []string{"web-1", "web-2"} {
		p.Stages = append(p.Stages, pipeline.Stage{Name: "update-" + h, Jobs: []pipeline.Job{{Name: h, Tasks: []pipeline.Task{
			{Kind: pipeline.KindDetach, Host: h}, {Kind: pipeline.KindDeploy, Host: h}, {Kind: pipeline.KindAttach, Host: h}}}}})
	}
	plan, _ := json.Marshal(p)
	ctx := context.Background()
	r, err := f.st.CreateRun(ctx, store.Run{Env: "staging", Pipeline: p.Name, Version: "v2", Artifact: "x", SHA256: strings.Repeat("a", 64),
		Owner: "test", Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range p.Stages {
		for _, j := range st.Jobs {
			for i, task := range j.Tasks {
				s, ok := recs[st.Name+"/"+task.Label()]
				if !ok {
					continue
				}
				rec := store.TaskRecord{RunID: r.ID, Stage: st.Name, Job: j.Name, Index: i, Kind: string(task.Kind), Host: task.Host}
				if _, err := f.st.StartTask(ctx, rec); err != nil {
					t.Fatal(err)
				}
				if s != store.TaskRunning {
					rec.Status = s
					if s == store.TaskFailed {
						rec.Error = "it broke <b>badly</b>"
					}
					if err := f.st.FinishTask(ctx, rec); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if status != store.RunRunning {
		if err := f.st.UpdateRun(ctx, r.ID, store.RunUpdate{Status: status, EndedAt: time.Now(), Error: runErr}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err = f.st.GetRun(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestDashboardSignIn: a page without a session goes to the sign-in
// form, which comes back to it; a wrong token shows the form again with
// why; a fragment answers 401 for the script to reload.
func TestDashboardSignIn(t *testing.T) {
	f := newFixture(t)
	anon := &browser{f: f}
	for _, p := range []string{"/", "/runs?status=failed", "/runs/r-x"} {
		resp, _ := anon.get(t, p)
		want := "/login?next=" + url.QueryEscape(p)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("GET %s signed out: %d to %q, want 303 to %q", p, resp.StatusCode, resp.Header.Get("Location"), want)
		}
	}
	for _, p := range []string{"/runs/r-x/pipeline", "/environments/staging/hosts"} {
		if resp, _ := anon.get(t, p); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("fragment %s signed out: %d, want 401", p, resp.StatusCode)
		}
	}
	resp, page := anon.get(t, "/login?next=%2Fruns%3Fstatus%3Dfailed")
	if resp.StatusCode != 200 || !strings.Contains(page, `<input type="password" id="token" name="token"`) ||
		!strings.Contains(page, `name="next" value="/runs?status=failed"`) || !strings.Contains(page, `<label for="token">`) {
		t.Fatalf("sign-in form: %d\n%s", resp.StatusCode, page)
	}
	// Elsewhere is never where sign-in goes.
	if _, page := anon.get(t, "/login?next=//evil.example/"); !strings.Contains(page, `name="next" value="/"`) {
		t.Errorf("next=//evil.example kept:\n%s", page)
	}
	resp, page = anon.post(t, "/login", url.Values{"token": {"zdt_nope_nope"}, "next": {"/runs"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, `role="alert"`) || !strings.Contains(page, "not valid") {
		t.Fatalf("wrong token: %d\n%s", resp.StatusCode, page)
	}
	b := f.signIn(t, RoleViewer)
	if resp, _ := b.get(t, "/login?next=/runs"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/runs" {
		t.Errorf("the form when signed in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Signing out needs the CSRF token, and ends the cookie.
	if resp, _ := b.post(t, "/logout", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign out without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = b.post(t, "/logout", url.Values{"csrf": {b.csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("sign out: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != sessionCookie || c[0].MaxAge >= 0 {
		t.Errorf("sign out left the cookie: %+v", c)
	}
}

// checkPage holds what every page keeps to: HTML, nothing inline for the
// CSP to refuse, nothing from elsewhere, and a main landmark.
func checkPage(t *testing.T, path string, resp *http.Response, page string) {
	t.Helper()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET %s: %d %s\n%s", path, resp.StatusCode, resp.Header.Get("Content-Type"), page)
	}
	for _, bad := range []string{"style=", "<style", "onclick", "onload", "javascript:", `src="http`, `href="http`, "//cdn"} {
		if strings.Contains(page, bad) {
			t.Errorf("GET %s: the page has %q", path, bad)
		}
	}
	for _, s := range regexp.MustCompile(`<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(s, `src="/static/`) {
			t.Errorf("GET %s: inline script %s", path, s)
		}
	}
	if !strings.Contains(page, `<main id="main"`) || !strings.Contains(page, `<html lang="en">`) {
		t.Errorf("GET %s: no main landmark or language", path)
	}
}

// TestDashboardPages renders every page for a viewer: the run's error,
// a task's error and an event's message are escaped, the pipeline is laid
// out as the plan says with each task's state in words.
func TestDashboardPages(t *testing.T) {
	t.Parallel() // it waits on the look at hosts that never answer
	f := newFixture(t)
	evil := `<script>alert("run")</script>`
	run := f.planned(t, store.RunFailed, evil, map[string]store.TaskStatus{
		"approval/approve": store.TaskPassed, "update-web-1/detach web-1": store.TaskPassed, "update-web-1/deploy web-1": store.TaskFailed})
	ctx := context.Background()
	if _, err := f.st.Approve(ctx, run.ID, "approval", "alice"); err != nil {
		t.Fatal(err)
	}
	for i, e := range []store.Event{
		{Type: "stage", Message: "stage update-web-1"},
		{Type: "failed", Host: "web-1", Message: `<img src=x onerror=alert(1)>`},
		{Type: "verify", Data: []byte(`{"t":0,"seconds":1,"sent":50,"ok":49,"failed":1,"failures":{"http_5xx":1},"p99_ms":3.5,"versions":{"v1":49}}`)},
	} {
		e.RunID = run.ID
		if _, err := f.st.AppendEvent(ctx, e); err != nil {
			t.Fatal(i, err)
		}
	}
	b := f.signIn(t, RoleViewer)

	resp, page := b.get(t, "/runs/"+run.ID)
	checkPage(t, "/runs/{id}", resp, page)
	for _, want := range []string{
		`&lt;script&gt;alert(&#34;run&#34;)&lt;/script&gt;`, // the run's error
		`it broke &lt;b&gt;badly&lt;/b&gt;`,                 // the task's
		`&lt;img src=x onerror=alert(1)&gt;`,                // an event's message
		`data-stage="approval"`, `data-stage="update-web-1"`, `data-stage="update-web-2"`,
		`<span class="label">passed</span>`, `<span class="label">failed</span>`, `<span class="label">not run</span>`,
		`approval by alice`, `ship it?`, `role="status"`, `data-after="3"`,
		`data-rows="[{&#34;t&#34;:0,`, // the verifier's sample, for the charts
	} {
		if !strings.Contains(page, want) {
			t.Errorf("run page lacks %s", want)
		}
	}
	if strings.Contains(page, evil) || strings.Contains(page, "<img src=x") || strings.Contains(page, "<b>badly") {
		t.Error("the run page has unescaped HTML from the journal")
	}
	// Stages left to right in the plan's order.
	if a, b2, c := strings.Index(page, `data-stage="approval"`), strings.Index(page, `data-stage="update-web-1"`), strings.Index(page, `data-stage="update-web-2"`); !(a < b2 && b2 < c) {
		t.Errorf("stages out of order: %d %d %d", a, b2, c)
	}
	// A viewer gets no button.
	for _, btn := range []string{`id="approve"`, `id="abort"`, `id="rollback"`} {
		if strings.Contains(page, btn) {
			t.Errorf("a viewer sees %s", btn)
		}
	}

	// A long log shows its tail first, and links to the whole.
	for i := range logTail + 5 {
		if _, err := f.st.AppendEvent(ctx, store.Event{RunID: run.ID, Type: "info", Message: fmt.Sprintf("note %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	_, page = b.get(t, "/runs/"+run.ID)
	if n := strings.Count(page, `<li class="ev `); n != logTail || !strings.Contains(page, "Show the 7 before them too") || strings.Contains(page, ">note 4<") || !strings.Contains(page, ">note 104<") {
		t.Errorf("a long log: %d events shown", n)
	}
	_, page = b.get(t, "/runs/"+run.ID+"?events=all")
	if n := strings.Count(page, `<li class="ev `); n != logTail+7 {
		t.Errorf("the whole log: %d events shown, want %d", n, logTail+7)
	}

	resp, frag := b.get(t, "/runs/"+run.ID+"/pipeline")
	if resp.StatusCode != 200 || !strings.Contains(frag, `id="pipeline"`) || !strings.Contains(frag, `id="run-status"`) || strings.Contains(frag, "<html") {
		t.Errorf("the pipeline fragment: %d\n%s", resp.StatusCode, frag)
	}

	resp, page = b.get(t, "/")
	checkPage(t, "/", resp, page)
	for _, want := range []string{`id="env-staging"`, `data-live="/environments/staging/hosts"`, `data-host="web-1"`, `data-host="web-2"`,
		`<th scope="col">Version</th>`, `<th scope="row">web-1`, `href="/runs/` + run.ID + `"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the environments page lacks %s", want)
		}
	}
	// The hosts answer nothing (their agents' port is closed): the look
	// finishes in the background, and the fragment the page polls says so.
	proctest.Eventually(t, 15*time.Second, "the hosts fragment to say web-1 is unreachable", func() bool {
		resp, frag = b.get(t, "/environments/staging/hosts")
		return resp.StatusCode == 200 && strings.Contains(frag, `id="env-staging-hosts"`) &&
			regexp.MustCompile(`data-host="web-1">.*unreachable`).MatchString(frag)
	})

	resp, page = b.get(t, "/runs")
	checkPage(t, "/runs", resp, page)
	if !strings.Contains(page, `href="/runs/`+run.ID+`"`) || !strings.Contains(page, `<span class="badge rs-failed">`) {
		t.Errorf("history lacks the run:\n%s", page)
	}

	// Errors are pages too.
	for path, status := range map[string]int{"/runs/r-nope": 404, "/runs?status=nope": 400, "/runs?before=r-nope": 400, "/environments/nope/hosts": 404} {
		resp, page := b.get(t, path)
		if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(page, `role="alert"`) {
			t.Errorf("GET %s: %d %s, want an HTML page with %d", path, resp.StatusCode, resp.Header.Get("Content-Type"), status)
		}
	}
}

// TestDashboardButtons: each button is shown to the roles its API route
// allows, and only while it makes sense.
func TestDashboardButtons(t *testing.T) {
	f := newFixture(t)
	waiting := f.planned(t, store.RunRunning, "", map[string]store.TaskStatus{"approval/approve": store.TaskRunning})
	ended := f.planned(t, store.RunSucceeded, "", nil)
	shown := func(role Role, run store.Run) map[string]bool {
		b := f.signIn(t, role)
		_, page := b.get(t, "/runs/"+run.ID)
		out := map[string]bool{}
		for _, btn := range []string{"approve", "abort", "rollback"} {
			out[btn] = strings.Contains(page, `<form id="`+btn+`" method="post" action="/runs/`+run.ID+`/`+btn+`"`)
		}
		return out
	}
	for _, tc := range []struct {
		role Role
		run  store.Run
		want map[string]bool
	}{
		{RoleViewer, waiting, map[string]bool{}},
		{RoleDeployer, waiting, map[string]bool{"abort": true}},
		{RoleApprover, waiting, map[string]bool{"approve": true, "abort": true}},
		{RoleAdmin, waiting, map[string]bool{"approve": true, "abort": true}},
		{RoleViewer, ended, map[string]bool{}},
		{RoleDeployer, ended, map[string]bool{"rollback": true}},
	} {
		got := shown(tc.role, tc.run)
		for _, btn := range []string{"approve", "abort", "rollback"} {
			if got[btn] != tc.want[btn] {
				t.Errorf("%s on a %s run: %s shown %v, want %v", tc.role, tc.run.Status, btn, got[btn], tc.want[btn])
			}
		}
	}
	b := f.signIn(t, RoleApprover)
	_, page := b.get(t, "/runs/"+waiting.ID)
	for _, want := range []string{`<button type="submit" class="primary" id="approve-btn">Approve approval</button>`,
		`data-api="/api/v1/runs/` + waiting.ID + `/approve"`, `<input type="hidden" name="csrf" value="` + b.csrf + `">`,
		`<span class="label">awaiting approval</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the approver's page lacks %s", want)
		}
	}
	d := f.signIn(t, RoleDeployer)
	if _, page := d.get(t, "/runs/"+waiting.ID); !strings.Contains(page, "Waiting for someone with the approver role") {
		t.Error("a deployer is not told the run waits for an approver")
	}
}

// TestDashboardPromoteCanary: a running canary shows the approver a
// button that ends its steps now; pressing it (the no-script form) records
// the same approval as `zerodown promote RUN`, after which it is gone.
func TestDashboardPromoteCanary(t *testing.T) {
	f := newFixture(t)
	p := pipeline.Pipeline{Name: "canary", Environment: "staging", Stages: []pipeline.Stage{
		{Name: "canary-10", Jobs: []pipeline.Job{{Name: "weights", Tasks: []pipeline.Task{
			{Kind: pipeline.KindWeights, Weights: &config.WeightsTask{Canary: []string{"web-1"}, Share: 10, Base: 100}}}}}},
	}}
	plan, _ := json.Marshal(p)
	ctx := context.Background()
	run, err := f.st.CreateRun(ctx, store.Run{Env: "staging", Pipeline: p.Name, Version: "v2", Artifact: "x", SHA256: strings.Repeat("a", 64), Owner: "test", Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	form := `<form id="promote" method="post" action="/runs/` + run.ID + `/promote"`
	if _, page := f.signIn(t, RoleDeployer).get(t, "/runs/"+run.ID); strings.Contains(page, form) {
		t.Error("a deployer is shown the promote button (it needs approver)")
	}
	b := f.signIn(t, RoleApprover)
	if _, page := b.get(t, "/runs/"+run.ID); !strings.Contains(page, form) {
		t.Fatal("the approver's page of a running canary has no promote button")
	}
	if resp, _ := b.post(t, "/runs/"+run.ID+"/promote", url.Values{"csrf": {b.csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("promote: %d", resp.StatusCode)
	}
	a, ok, err := f.st.Approved(ctx, run.ID, engine.PromoteKey)
	if err != nil || !ok || a.By != "approver" {
		t.Fatalf("the canary's promotion: %+v %v %v", a, ok, err)
	}
	if _, page := b.get(t, "/runs/"+run.ID); strings.Contains(page, form) {
		t.Error("the promote button is still shown after the promotion")
	}
}

// TestDashboardActions: the no-script forms need the CSRF token and the
// role, and do what the API does — the same approval, abort and audit
// entry.
func TestDashboardActions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	run := f.planned(t, store.RunRunning, "", map[string]store.TaskStatus{"approval/approve": store.TaskRunning})
	viewer, approver := f.signIn(t, RoleViewer), f.signIn(t, RoleApprover)
	path := "/runs/" + run.ID + "/approve"
	for _, tc := range []struct {
		name string
		b    *browser
		form url.Values
		want int
	}{
		{"no CSRF token", approver, url.Values{}, http.StatusForbidden},
		{"wrong CSRF token", approver, url.Values{"csrf": {viewer.csrf}}, http.StatusForbidden},
		{"a viewer", viewer, url.Values{"csrf": {viewer.csrf}}, http.StatusForbidden},
		{"no session", &browser{f: f}, url.Values{"csrf": {approver.csrf}}, http.StatusSeeOther},
	} {
		resp, page := tc.b.post(t, path, tc.form)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d\n%s", tc.name, resp.StatusCode, tc.want, page)
		}
		if _, ok, _ := f.st.Approved(ctx, run.ID, "approval"); ok {
			t.Fatalf("%s: approved", tc.name)
		}
	}
	// A cross-site form with the right token is refused as well.
	req, _ := http.NewRequest("POST", f.ts.URL+path, strings.NewReader(url.Values{"csrf": {approver.csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, _ := approver.do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
	resp, _ := approver.post(t, path, url.Values{"csrf": {approver.csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/runs/"+run.ID {
		t.Fatalf("approve: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	a, ok, err := f.st.Approved(ctx, run.ID, "approval")
	if err != nil || !ok || a.By != "approver" {
		t.Fatalf("approval %+v %v %v", a, ok, err)
	}
	resp, _ = approver.post(t, "/runs/"+run.ID+"/abort", url.Values{"csrf": {approver.csrf}})
	if got, _ := f.st.GetRun(ctx, run.ID); resp.StatusCode != http.StatusSeeOther || !got.Abort || got.AbortBy != "approver" {
		t.Fatalf("abort: %d, run %+v", resp.StatusCode, got)
	}
	// The API's checks hold for the form too: an ended run has nothing to
	// approve, and the page says why.
	ended := f.aRun(t, store.RunSucceeded)
	resp, page := approver.post(t, "/runs/"+ended.ID+"/approve", url.Values{"csrf": {approver.csrf}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "nothing to approve") {
		t.Errorf("approve an ended run: %d\n%s", resp.StatusCode, page)
	}
	if resp, _ := approver.post(t, "/runs/"+run.ID+"/nope", url.Values{"csrf": {approver.csrf}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown button: %d", resp.StatusCode)
	}
	entries, err := f.st.Audit(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range entries {
		if e.Target == run.ID {
			actions[e.Action]++
		}
	}
	if actions["run.approve"] != 1 || actions["run.abort"] != 1 {
		t.Errorf("audit log of the run: %v", actions)
	}
}

// TestDashboardHistory filters and pages the history as the API does.
func TestDashboardHistory(t *testing.T) {
	f := newFixture(t)
	for range defaultRunPage + 5 {
		f.aRun(t, store.RunSucceeded)
	}
	failed := f.aRun(t, store.RunFailed)
	b := f.signIn(t, RoleViewer)
	rowRE := regexp.MustCompile(`<tr><th scope="row"><a href="/runs/(r-[^"]+)">`)
	_, page := b.get(t, "/runs")
	rows := rowRE.FindAllStringSubmatch(page, -1)
	if len(rows) != defaultRunPage || rows[0][1] != failed.ID {
		t.Fatalf("first page: %d runs, first %v", len(rows), rows[0])
	}
	next := regexp.MustCompile(`<a href="([^"]+)" rel="next">`).FindStringSubmatch(page)
	if next == nil {
		t.Fatal("no link to the next page")
	}
	_, page = b.get(t, strings.ReplaceAll(next[1], "&amp;", "&"))
	if n := len(rowRE.FindAllStringSubmatch(page, -1)); n != 6 || strings.Contains(page, `rel="next"`) || !strings.Contains(page, `>Newest runs</a>`) {
		t.Errorf("second page: %d runs\n%s", n, page)
	}
	_, page = b.get(t, "/runs?status=failed&env=staging")
	rows = rowRE.FindAllStringSubmatch(page, -1)
	if len(rows) != 1 || rows[0][1] != failed.ID || !strings.Contains(page, `<option value="failed" selected>`) || !strings.Contains(page, `<option value="staging" selected>`) {
		t.Errorf("filtered by status: %v", rows)
	}
	_, page = b.get(t, "/runs?version=nope")
	if !strings.Contains(page, "No run matches.") || !strings.Contains(page, `value="nope"`) {
		t.Errorf("a filter that matches nothing:\n%s", page)
	}
}

// TestDashboardStatic serves the embedded CSS and script, kept by
// browsers for good under their content's hash.
func TestDashboardStatic(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"dash.css", "dash.js"} {
		resp, body := (&browser{f: f}).get(t, assetURL(name))
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || len(body) == 0 || len(body) > 32<<10 {
			t.Errorf("%s: %d %q, %d bytes", name, resp.StatusCode, resp.Header.Get("Cache-Control"), len(body))
		}
		if strings.Contains(body, "http://") && name == "dash.css" || strings.Contains(body, "https://") {
			t.Errorf("%s names another site", name)
		}
	}
	if resp, _ := (&browser{f: f}).get(t, "/static/nope.js"); resp.StatusCode != 404 {
		t.Errorf("an unknown file: %d", resp.StatusCode)
	}
}

// TestPipelineView: stages and jobs take their state from their tasks'.
func TestPipelineView(t *testing.T) {
	for _, tc := range []struct {
		states  []string
		running bool
		want    string
	}{
		{nil, true, "pending"},
		{[]string{"pending", "pending"}, true, "pending"},
		{[]string{"pending", "pending"}, false, "not-run"},
		{[]string{"passed", "pending"}, true, "running"},
		{[]string{"passed", "pending"}, false, "stopped"},
		{[]string{"passed", "running"}, true, "running"},
		{[]string{"passed", "skipped"}, false, "passed"},
		{[]string{"skipped"}, false, "skipped"},
		{[]string{"passed", "failed", "cancelled"}, false, "failed"},
		{[]string{"passed", "cancelled"}, false, "cancelled"},
	} {
		if got := rollUp(tc.states, tc.running); got != tc.want {
			t.Errorf("rollUp(%v, running %v) = %s, want %s", tc.states, tc.running, got, tc.want)
		}
	}
	p := &pipeline.Pipeline{Stages: []pipeline.Stage{{Name: "gate", Jobs: []pipeline.Job{{Name: "j", Tasks: []pipeline.Task{{Kind: pipeline.KindApprove}}}}}}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []store.TaskRecord{
		{Stage: "gate", Job: "j", Index: 0, Kind: "approve", Status: store.TaskRunning, StartedAt: t0},
		{Stage: "extra", Job: "k", Index: 0, Kind: "deploy", Host: "web-9", Status: store.TaskPassed, StartedAt: t0, EndedAt: t0.Add(1500 * time.Millisecond), Attempt: 2},
	}
	st := pipelineView(p, recs, true)
	// What runs carries its start, for the page to count from.
	if len(st) != 2 || st[0].Status != "waiting" || st[0].Label != "awaiting approval" || st[0].Duration != "" ||
		st[0].Since != "2026-01-01T00:00:00Z" || st[0].Jobs[0].Tasks[0].Since != st[0].Since {
		t.Fatalf("stages %+v", st)
	}
	if x := st[1]; x.Name != "extra" || x.Status != "passed" || x.Jobs[0].Tasks[0].Label != "deploy web-9" || x.Jobs[0].Tasks[0].Duration != "1.5s" {
		t.Errorf("a journaled task the plan lacks: %+v", x)
	}
	for d, want := range map[time.Duration]string{340 * time.Millisecond: "340ms", 4200 * time.Millisecond: "4.2s", 42 * time.Second: "42s",
		184 * time.Second: "3m04s", 62 * time.Minute: "1h02m", -time.Second: "0ms"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

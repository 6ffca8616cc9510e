package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// The dashboard is server-rendered HTML: each page is whole without
// script, and one small script (web/static/dash.js) makes the pages live —
// the run page follows the run's event stream and swaps in fresh
// server-rendered parts, the environments page polls its hosts. The parts
// the script swaps in are rendered by the very templates that render the
// pages, so a page and its live updates cannot disagree. Nothing is
// loaded from elsewhere: the templates, the CSS and the script are
// embedded in the binary.

//go:embed web
var webFS embed.FS

// staticAsset is an embedded file served under /static/ with its hash in
// the URL, so browsers may keep it for good.
type staticAsset struct {
	body  []byte
	ctype string
	hash  string
}

var (
	assets = loadAssets()
	pages  = loadPages()
)

func loadAssets() map[string]staticAsset {
	sub, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic(err)
	}
	out := map[string]staticAsset{}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = staticAsset{body: b, ctype: mime.TypeByExtension(path.Ext(p)), hash: hex.EncodeToString(sum[:6])}
		return nil
	})
	if err != nil {
		panic(err)
	}
	return out
}

// assetURL is a static file's URL, versioned by its content.
func assetURL(name string) string {
	a, ok := assets[name]
	if !ok {
		panic("no embedded asset " + name)
	}
	return "/static/" + name + "?v=" + a.hash
}

var templateFuncs = template.FuncMap{
	"asset":      assetURL,
	"when":       when,
	"dur":        fmtDuration,
	"runDur":     runDuration,
	"runLabel":   runStatusLabel,
	"sym":        statusSymbol,
	"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"deref":      derefTime,
	"hostState":  hostState,
	"hostClass":  hostClass,
	"chartNames": func() []chartName { return charts },
}

// loadPages parses each page with the layout and the shared parts.
func loadPages() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(templateFuncs).ParseFS(webFS, "web/layout.html", "web/parts.html"))
	out := map[string]*template.Template{}
	for _, p := range []string{"login", "error", "overview", "runs", "run"} {
		out[p] = template.Must(template.Must(base.Clone()).ParseFS(webFS, "web/"+p+".html"))
	}
	// Fragments need only the parts.
	out["parts"] = base
	return out
}

// dashboardRoutes adds the web dashboard's pages to mux.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /static/{name}", serveStatic)
	// The pages name no icon; documents that cannot (a JSON answer opened
	// in a tab) make the browser ask for this one.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.Handle("POST /logout", s.page(false, s.signOut))
	mux.Handle("GET /{$}", s.page(false, s.overviewPage))
	mux.Handle("GET /environments/{env}/hosts", s.page(true, s.envFragment))
	mux.Handle("GET /runs", s.page(false, s.runsPage))
	mux.Handle("GET /runs/{id}", s.page(false, s.runPage))
	mux.Handle("GET /runs/{id}/pipeline", s.page(true, s.runFragment))
	mux.Handle("POST /runs/{id}/{action}", s.page(false, s.runAction))
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", `"`+a.hash+`"`)
	if r.URL.Query().Get("v") == a.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// pageView is what the layout needs, with the page's own data.
type pageView struct {
	Title string
	Nav   string // which link of the navigation is the current page
	User  string
	Role  string
	CSRF  string
	Data  any
}

func (s *Server) view(c *caller, title, nav string, data any) pageView {
	v := pageView{Title: title, Nav: nav, Data: data}
	if c != nil {
		v.User, v.Role, v.CSRF = c.name(), c.role.String(), s.csrfToken(c)
	}
	return v
}

// render executes a template into a buffer first, so a failure becomes a
// clean error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page, name string, data any) {
	var b bytes.Buffer
	if err := pages[page].ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("render a dashboard page", "page", page, "template", name, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error; the server's log says more", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// pageFunc is a dashboard handler; an error it returns is shown as an
// HTML error page.
type pageFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

// page authenticates a dashboard request by its session (or bearer
// token). A page without one is sent to the sign-in form, which comes
// back to it; a fragment the script fetches gets 401, on which the script
// reloads the page. Changes need the CSRF token.
func (s *Server) page(fragment bool, h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authenticate(r)
		var ae *authError
		if errors.As(err, &ae) {
			switch {
			case fragment:
				http.Error(w, ae.Error(), http.StatusUnauthorized)
			case r.Method == http.MethodGet:
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			default:
				http.Redirect(w, r, "/login", http.StatusSeeOther)
			}
			return
		}
		if err == nil {
			if err = s.checkCSRF(r, c); err != nil {
				err = &httpError{status: http.StatusForbidden, code: api.CodeCSRF, err: err}
			}
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.failPage(w, r, c, err)
		}
	})
}

// errorView is the error page's data.
type errorView struct {
	Status  int
	Text    string
	Message string
}

// failPage shows an error as a page: the same statuses and messages as
// the API's (Server.fail), in HTML.
func (s *Server) failPage(w http.ResponseWriter, r *http.Request, c *caller, err error) {
	rec := &statusRecorder{header: http.Header{}}
	s.fail(rec, r, err)
	var body api.Error
	_ = json.Unmarshal(rec.body.Bytes(), &body)
	ev := errorView{Status: rec.status, Text: http.StatusText(rec.status), Message: body.Error.Message}
	s.render(w, r, rec.status, "error", "layout", s.view(c, fmt.Sprintf("%d %s", ev.Status, ev.Text), "", ev))
}

// statusRecorder keeps an answer instead of sending it.
type statusRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return s.body.Write(b) }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }

// loginView is the sign-in form's data.
type loginView struct {
	Next  string
	Error string
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if c, err := s.authenticate(r); err == nil && c.session != "" {
		http.Redirect(w, r, next, http.StatusSeeOther) // signed in already
		return
	}
	s.render(w, r, http.StatusOK, "login", "layout", s.view(nil, "Sign in", "", loginView{Next: next}))
}

// login is the sign-in form's POST: a wrong token shows the form again
// with why.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	err := s.signIn(w, r)
	var ae *authError
	switch {
	case err == nil:
	case errors.As(err, &ae):
		s.render(w, r, http.StatusUnauthorized, "login", "layout",
			s.view(nil, "Sign in", "", loginView{Next: safeNext(r.PostFormValue("next")), Error: ae.Error()}))
	default:
		s.failPage(w, r, nil, err)
	}
}

// safeNext keeps a redirect after sign-in on this site: a path of this
// server, nothing a browser could read as another host ("//x", "/\\x", or
// "/\t/x", since browsers drop tabs and newlines from URLs).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsRune(next, '\\') {
		return "/"
	}
	for _, c := range []byte(next) {
		if c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	if u, err := url.Parse(next); err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return next
}

// lookWait bounds how long a page waits for the hosts' answers before it
// renders with the look before (or the hosts' names alone); the script
// fills in the answers as they come.
const lookWait = 500 * time.Millisecond

// envView is one environment on the overview: its lock, last run and
// hosts.
type envView struct {
	api.Environment
	Look api.Hosts
	Rows []hostRow
}

// hostRow is a host as the overview shows it: what it answered, or its
// name alone while the look at it has not finished.
type hostRow struct {
	api.Host
	Pending bool
}

func (s *Server) envView(ctx context.Context, e api.Environment) envView {
	v := envView{Environment: e, Look: s.looks.get(ctx, e.Name)}
	for _, h := range v.Look.Hosts {
		v.Rows = append(v.Rows, hostRow{Host: h})
	}
	if len(v.Rows) == 0 {
		for _, h := range s.deploy.Environments[e.Name].Hosts {
			v.Rows = append(v.Rows, hostRow{Host: api.Host{Name: h.Name, Target: h.Target}, Pending: true})
		}
	}
	return v
}

type overviewView struct {
	Envs []envView
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request, c *caller) error {
	envs, err := s.environments(r.Context())
	if err != nil {
		return err
	}
	out := overviewView{Envs: make([]envView, len(envs))}
	ctx, cancel := context.WithTimeout(r.Context(), lookWait)
	defer cancel()
	var wg sync.WaitGroup
	for i, e := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Envs[i] = s.envView(ctx, e)
		}()
	}
	wg.Wait()
	s.render(w, r, http.StatusOK, "overview", "layout", s.view(c, "Environments", "envs", out))
	return nil
}

// envFragment is one environment's section, for the overview's polling.
func (s *Server) envFragment(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("env")
	if _, err := s.env(name); err != nil {
		return err
	}
	envs, err := s.environments(r.Context())
	if err != nil {
		return err
	}
	for _, e := range envs {
		if e.Name == name {
			ctx, cancel := context.WithTimeout(r.Context(), lookWait)
			defer cancel()
			s.render(w, r, http.StatusOK, "parts", "env", s.envView(ctx, e))
		}
	}
	return nil
}

// runsView is the history page: its filters, a page of runs, and the
// links to the next page.
type runsView struct {
	Envs     []string
	Statuses []store.RunStatus
	Env      string
	Status   string
	Version  string
	Before   string
	Runs     []api.Run
	Next     string // the next page's URL, when there is one
	First    string // the first page's URL, when this is not it
}

var runStatuses = []store.RunStatus{store.RunRunning, store.RunSucceeded, store.RunFailed, store.RunRolledBack, store.RunNeedsAttention, store.RunAborted}

func (s *Server) runsPage(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	v := runsView{Envs: s.deploy.EnvOrder, Statuses: runStatuses, Env: q.Get("env"), Status: q.Get("status"), Version: q.Get("version"), Before: q.Get("before")}
	rq := store.RunQuery{Env: v.Env, Status: store.RunStatus(v.Status), Version: v.Version, Before: v.Before, Limit: defaultRunPage + 1, Brief: true}
	if rq.Status != "" && !rq.Status.Valid() {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "status %q is not a run status", rq.Status)
	}
	runs, err := s.st.QueryRuns(r.Context(), rq)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "no run %s to page from", rq.Before)
	}
	if err != nil {
		return err
	}
	filters := url.Values{}
	for k, val := range map[string]string{"env": v.Env, "status": v.Status, "version": v.Version} {
		if val != "" {
			filters.Set(k, val)
		}
	}
	if len(runs) > defaultRunPage {
		runs = runs[:defaultRunPage]
		next := url.Values{}
		for k, val := range filters {
			next[k] = val
		}
		next.Set("before", runs[len(runs)-1].ID)
		v.Next = "/runs?" + next.Encode()
	}
	if v.Before != "" {
		v.First = "/runs"
		if len(filters) > 0 {
			v.First += "?" + filters.Encode()
		}
	}
	for _, run := range runs {
		v.Runs = append(v.Runs, runJSON(run))
	}
	s.render(w, r, http.StatusOK, "runs", "layout", s.view(c, "History", "runs", v))
	return nil
}

// runView is the run page: the run, its pipeline as stages of jobs of
// tasks, its events, the verifier's samples and the buttons the caller
// may press.
type runView struct {
	Run       api.Run
	CSRF      string
	Role      string
	Waiting   string
	Report    string
	Approvals []store.Approval
	Stages    []stageView
	Events    []api.Event // without the verifier's samples
	// Earlier is how many events before Events the page leaves out.
	Earlier int
	Samples int
	// VerifyRows is the JSON array of the verifier's per-second samples,
	// for the charts.
	VerifyRows string
	LastSeq    int64
	// Types are the event names the script listens for on the stream.
	Types string
	// Took is how long the run took; Since, while it runs, when it
	// started, for the script to count from (the part the script swaps
	// in then changes only when the run does).
	Took, Since                       string
	CanApprove, CanAbort, CanRollback bool
	// CanPromote: a running canary whose steps a person may end now.
	CanPromote bool
}

type stageView struct {
	Name     string
	Status   string
	Label    string
	Duration string
	Since    string // while it runs
	Jobs     []jobView
}

type jobView struct {
	Name   string
	Status string
	Label  string
	Tasks  []taskView
}

type taskView struct {
	Label    string
	Kind     string
	Status   string
	Duration string
	Since    string // while it runs
	Error    string
	Message  string
	Attempt  int
}

// streamTypes are the event names the run page listens for: the
// engine's and the verifier's. One it does not know still reaches the
// page: the next event's seq shows the gap, and the script reads the
// journal for it.
var streamTypes = []string{
	engine.EvStage, engine.EvTask, engine.EvDetaching, engine.EvDraining, engine.EvDrained, engine.EvDeploying,
	engine.EvActivated, engine.EvAttaching, engine.EvChecking, engine.EvHealthy, engine.EvDone, engine.EvFailed,
	engine.EvRollback, engine.EvRolledBack, engine.EvDetached, engine.EvWaiting, engine.EvApproval, engine.EvPaused,
	engine.EvInfo, engine.EvProgress, engine.EvSwitched, engine.EvCanary, deploy.EvVerify, "message",
}

// logTail is how many of a run's last events its page shows at first: a
// long run journals thousands, and the page links to all of them.
const logTail = 100

func (s *Server) runView(ctx context.Context, c *caller, id string, withEvents, allEvents bool) (runView, error) {
	d, run, tasks, err := s.loadRun(ctx, id)
	if err != nil {
		return runView{}, err
	}
	v := runView{Run: d.Run, CSRF: s.csrfToken(c), Role: c.role.String(), Waiting: d.Waiting, Report: d.Report,
		Types: strings.Join(streamTypes, " ")}
	if run.EndedAt.IsZero() {
		v.Since = isoTime(run.StartedAt)
	} else {
		v.Took = fmtDuration(run.EndedAt.Sub(run.StartedAt))
	}
	var plan pipeline.Pipeline
	if len(run.Plan) > 0 {
		if err := json.Unmarshal(run.Plan, &plan); err != nil {
			s.log.Warn("a run's plan is unreadable", "run", id, "err", err)
		}
	}
	v.Stages = pipelineView(&plan, tasks, run.Status == store.RunRunning)
	for _, st := range plan.Stages {
		if hasKind(st, pipeline.KindApprove) {
			if a, ok, err := s.st.Approved(ctx, id, st.Name); err == nil && ok {
				v.Approvals = append(v.Approvals, a)
			}
		}
	}
	running := run.Status == store.RunRunning
	v.CanApprove = running && d.Waiting != "" && c.role >= s.actionRole("approve")
	v.CanAbort = running && !run.Abort && c.role >= s.actionRole("abort")
	v.CanRollback = !running && run.Status != store.RunRolledBack && run.Status != store.RunAborted && c.role >= s.actionRole("rollback")
	if running && plan.WeightsOf() != nil && c.role >= s.actionRole("promote") {
		_, promoted, err := s.st.Approved(ctx, id, engine.PromoteKey)
		v.CanPromote = err == nil && !promoted
	}
	if !withEvents {
		return v, nil
	}
	evs, err := s.st.Events(ctx, id, 0)
	if err != nil {
		return runView{}, err
	}
	var rows []json.RawMessage
	for _, e := range evs {
		v.LastSeq = e.Seq
		if e.Type == deploy.EvVerify {
			if len(e.Data) > 0 && json.Valid(e.Data) {
				rows = append(rows, e.Data)
			}
			continue
		}
		v.Events = append(v.Events, eventJSON(e))
	}
	if n := len(v.Events); n > logTail && !allEvents {
		v.Earlier = n - logTail
		v.Events = v.Events[n-logTail:]
	}
	v.Samples = len(rows)
	b, _ := json.Marshal(rows)
	if rows == nil {
		b = []byte("[]")
	}
	v.VerifyRows = string(b)
	return v, nil
}

func hasKind(st pipeline.Stage, k pipeline.Kind) bool {
	for _, j := range st.Jobs {
		for _, t := range j.Tasks {
			if t.Kind == k {
				return true
			}
		}
	}
	return false
}

func (s *Server) runPage(w http.ResponseWriter, r *http.Request, c *caller) error {
	v, err := s.runView(r.Context(), c, r.PathValue("id"), true, r.URL.Query().Get("events") == "all")
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "run", "layout", s.view(c, "Run "+v.Run.ID, "runs", v))
	return nil
}

// runFragment is the live part of the run page — status, summary,
// buttons, pipeline — which the script swaps in as the run moves.
func (s *Server) runFragment(w http.ResponseWriter, r *http.Request, c *caller) error {
	v, err := s.runView(r.Context(), c, r.PathValue("id"), false, false)
	if err != nil {
		return err
	}
	s.render(w, r, http.StatusOK, "parts", "run-live", v)
	return nil
}

// actionRole is the role a run button needs: the one its API route needs,
// so the page and the API cannot disagree on who may press it.
func (s *Server) actionRole(action string) Role {
	want := "/api/v1/runs/{id}/" + action
	for _, rt := range s.routes() {
		if rt.method == http.MethodPost && rt.pattern == want {
			return rt.role
		}
	}
	return RoleAdmin + 1 // no such button: nobody may
}

// runAction is the run buttons' form, for a browser without script (the
// script posts to the API instead): the same implementation as the API's,
// then back to the run's page.
func (s *Server) runAction(w http.ResponseWriter, r *http.Request, c *caller) error {
	id, action := r.PathValue("id"), r.PathValue("action")
	need := s.actionRole(action)
	if need > RoleAdmin {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no button %q", action)
	}
	if c.role < need {
		return errorf(http.StatusForbidden, api.CodeForbidden, "token %s has role %s; %s needs %s", c.name(), c.role, action, need)
	}
	var err error
	switch action {
	case "approve":
		_, err = s.approve(r, c, id, r.PostFormValue("stage"))
	case "abort":
		_, err = s.abort(r, c, id)
	case "promote":
		_, err = s.endCanary(r, c, id)
	case "rollback":
		_, err = s.rollback(r, c, id)
	default:
		return errorf(http.StatusNotFound, api.CodeNotFound, "no button %q", action)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/runs/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// pipelineView lays the plan out as GoCD draws it — stages left to right,
// jobs inside, tasks in order — with each task's journal record. Records
// the plan does not name (a plan that could not be read) are added after
// it, so nothing journaled is hidden. What runs carries its start, not an
// elapsed time, so the view changes only when a task does.
func pipelineView(p *pipeline.Pipeline, recs []store.TaskRecord, running bool) []stageView {
	type key struct {
		stage, job string
		index      int
	}
	byKey := map[key]store.TaskRecord{}
	for _, r := range recs {
		byKey[key{r.Stage, r.Job, r.Index}] = r
	}
	used := map[key]bool{}
	var stages []stageView
	for _, st := range p.Stages {
		sv := stageView{Name: st.Name}
		for _, j := range st.Jobs {
			jv := jobView{Name: j.Name}
			for i, t := range j.Tasks {
				k := key{st.Name, j.Name, i}
				used[k] = true
				tv := taskView{Label: t.Label(), Kind: string(t.Kind), Status: string(store.TaskPending)}
				if t.Approve != nil {
					tv.Message = t.Approve.Message
				}
				if t.Pause != nil {
					tv.Message = t.Pause.Message
				}
				if r, ok := byKey[k]; ok {
					fillTask(&tv, r)
				}
				jv.Tasks = append(jv.Tasks, tv)
			}
			sv.Jobs = append(sv.Jobs, jv)
		}
		stages = append(stages, sv)
	}
	for _, r := range recs {
		k := key{r.Stage, r.Job, r.Index}
		if used[k] {
			continue
		}
		si := -1
		for i := range stages {
			if stages[i].Name == r.Stage {
				si = i
			}
		}
		if si < 0 {
			stages = append(stages, stageView{Name: r.Stage})
			si = len(stages) - 1
		}
		ji := -1
		for i := range stages[si].Jobs {
			if stages[si].Jobs[i].Name == r.Job {
				ji = i
			}
		}
		if ji < 0 {
			stages[si].Jobs = append(stages[si].Jobs, jobView{Name: r.Job})
			ji = len(stages[si].Jobs) - 1
		}
		label := r.Kind
		if r.Host != "" {
			label += " " + r.Host
		}
		tv := taskView{Label: label, Kind: r.Kind}
		fillTask(&tv, r)
		stages[si].Jobs[ji].Tasks = append(stages[si].Jobs[ji].Tasks, tv)
	}
	for i := range stages {
		st := &stages[i]
		var all []string
		var first, last time.Time
		for j := range st.Jobs {
			jb := &st.Jobs[j]
			var states []string
			for _, t := range jb.Tasks {
				states = append(states, t.Status)
			}
			jb.Status = rollUp(states, running)
			jb.Label = statusLabel(jb.Status)
			all = append(all, states...)
		}
		for _, r := range recs {
			if r.Stage != st.Name || r.StartedAt.IsZero() {
				continue
			}
			if first.IsZero() || r.StartedAt.Before(first) {
				first = r.StartedAt
			}
			if r.EndedAt.After(last) {
				last = r.EndedAt
			}
		}
		st.Status = rollUp(all, running)
		if st.Status == string(store.TaskRunning) && waitsForApproval(st) {
			st.Status = "waiting"
		}
		st.Label = statusLabel(st.Status)
		switch {
		case first.IsZero():
		case st.Status == string(store.TaskRunning) || st.Status == "waiting":
			st.Since = isoTime(first)
		case !last.IsZero():
			st.Duration = fmtDuration(last.Sub(first))
		}
	}
	return stages
}

func waitsForApproval(st *stageView) bool {
	for _, j := range st.Jobs {
		for _, t := range j.Tasks {
			if t.Status == string(store.TaskRunning) && (t.Kind == string(pipeline.KindApprove) || t.Kind == string(pipeline.KindPause)) {
				return true
			}
		}
	}
	return false
}

func fillTask(tv *taskView, r store.TaskRecord) {
	tv.Status, tv.Error, tv.Attempt = string(r.Status), r.Error, r.Attempt
	switch {
	case r.StartedAt.IsZero():
	case r.EndedAt.IsZero():
		tv.Since = isoTime(r.StartedAt)
	default:
		tv.Duration = fmtDuration(r.EndedAt.Sub(r.StartedAt))
	}
}

func isoTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// rollUp is a job's or a stage's state from its tasks': failed if one
// failed, running while one runs, passed when all passed (or were
// skipped), pending before any began; a run that ended half-way through
// leaves it "stopped".
func rollUp(states []string, running bool) string {
	count := map[string]int{}
	for _, s := range states {
		count[s]++
	}
	n := len(states)
	switch {
	case n == 0:
		return string(store.TaskPending)
	case count[string(store.TaskFailed)] > 0:
		return string(store.TaskFailed)
	case count[string(store.TaskRunning)] > 0:
		return string(store.TaskRunning)
	case count[string(store.TaskCancelled)] > 0:
		return string(store.TaskCancelled)
	case count[string(store.TaskSkipped)] == n:
		return string(store.TaskSkipped)
	case count[string(store.TaskPassed)]+count[string(store.TaskSkipped)] == n:
		return string(store.TaskPassed)
	case count[string(store.TaskPending)] == n:
		if running {
			return string(store.TaskPending)
		}
		return "not-run"
	case running:
		return string(store.TaskRunning) // between two of its tasks
	}
	return "stopped"
}

// statusLabel is a task's, job's or stage's state in words: the page
// never says it by colour alone.
func statusLabel(s string) string {
	switch s {
	case string(store.TaskPending):
		return "not started"
	case "waiting":
		return "awaiting approval"
	case "not-run":
		return "not run"
	}
	return s
}

// statusSymbol is a shape beside the words, for a quick scan.
func statusSymbol(s string) string {
	switch s {
	case string(store.TaskPassed), string(store.RunSucceeded):
		return "✓"
	case string(store.TaskFailed), string(store.RunNeedsAttention):
		return "✗"
	case string(store.TaskRunning):
		return "▶"
	case "waiting":
		return "‖"
	case string(store.TaskCancelled), string(store.RunAborted), "stopped":
		return "■"
	case string(store.TaskSkipped), string(store.RunRolledBack):
		return "↶"
	}
	return "○"
}

func runStatusLabel(s string) string {
	return strings.ReplaceAll(s, "_", " ")
}

// hostState is a host's health in words.
func hostState(h hostRow) string {
	switch {
	case h.Pending:
		return "asking"
	case h.Error != "":
		return "unreachable"
	case !h.Running:
		return "not running"
	case h.Healthy:
		return "healthy"
	}
	return "unhealthy"
}

// hostClass picks the health's colour; the words say the same.
func hostClass(h hostRow) string {
	switch hostState(h) {
	case "healthy":
		return "ok"
	case "unhealthy":
		return "bad"
	}
	return "off"
}

// chartName is one of the verifier's charts on the run page; the script
// draws it by its ID.
type chartName struct{ ID, Title string }

var charts = []chartName{
	{"rate", "Requests per second: sent and answered well"},
	{"failures", "Failed requests per second, by outcome"},
	{"p99", "p99 latency, milliseconds"},
	{"versions", "Answers per second, by version"},
}

// when shows a time to the second, in UTC; the script shows it in the
// browser's time zone.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// runDuration is how long an ended run took; empty while it runs.
func runDuration(r api.Run) string {
	if r.EndedAt == nil {
		return ""
	}
	return fmtDuration(r.EndedAt.Sub(r.StartedAt))
}

// fmtDuration is a duration for people: 340ms, 4.2s, 3m04s, 1h02m.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

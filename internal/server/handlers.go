package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// routes is the API: every endpoint, the least role it needs, and its
// handler. The OpenAPI document describes exactly these (a test holds them
// together).
func (s *Server) routes() []route {
	return []route{
		{"GET", "/api/v1/whoami", RoleViewer, s.whoami},
		{"GET", "/api/v1/environments", RoleViewer, s.listEnvironments},
		{"GET", "/api/v1/environments/{env}/hosts", RoleViewer, s.envHosts},
		{"GET", "/api/v1/runs", RoleViewer, s.listRuns},
		{"POST", "/api/v1/runs", RoleDeployer, s.createRun},
		{"GET", "/api/v1/runs/{id}", RoleViewer, s.getRun},
		{"GET", "/api/v1/runs/{id}/events", RoleViewer, s.serveEvents},
		{"GET", "/api/v1/runs/{id}/report", RoleViewer, s.runReport},
		{"POST", "/api/v1/runs/{id}/approve", RoleApprover, s.approveRun},
		{"POST", "/api/v1/runs/{id}/promote", RoleApprover, s.promoteCanary},
		{"POST", "/api/v1/runs/{id}/abort", RoleDeployer, s.abortRun},
		{"POST", "/api/v1/runs/{id}/rollback", RoleDeployer, s.rollbackRun},
		{"POST", "/api/v1/promote", RoleDeployer, s.promote},
		{"HEAD", "/api/v1/artifacts/{sha256}", RoleViewer, s.headArtifact},
		{"PUT", "/api/v1/artifacts/{sha256}", RoleDeployer, s.putArtifact},
		{"GET", "/api/v1/tokens", RoleAdmin, s.listTokens},
		{"POST", "/api/v1/tokens", RoleAdmin, s.createToken},
		{"DELETE", "/api/v1/tokens/{id}", RoleAdmin, s.revokeToken},
		{"GET", "/api/v1/audit", RoleAdmin, s.listAudit},
	}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, api.Whoami{Name: c.name(), Role: c.role.String()})
	return nil
}

func (s *Server) environments(ctx context.Context) ([]api.Environment, error) {
	locks, err := s.st.Locks(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]store.HeldLock{}
	for _, l := range locks {
		held[l.Env] = l
	}
	out := make([]api.Environment, 0, len(s.deploy.EnvOrder))
	for _, name := range s.deploy.EnvOrder {
		env := s.deploy.Environments[name]
		e := api.Environment{Name: name, Driver: env.LB.Driver, Strategy: strategyName(env), Hosts: []string{}}
		for _, h := range env.Hosts {
			e.Hosts = append(e.Hosts, h.Name)
		}
		if l, ok := held[name]; ok {
			e.Lock = &api.Lock{Run: l.RunID, Owner: l.Owner, Since: l.Since, Heartbeat: l.Heartbeat}
		}
		last, err := s.st.QueryRuns(ctx, store.RunQuery{Env: name, Limit: 1, Brief: true})
		if err != nil {
			return nil, err
		}
		if len(last) > 0 {
			r := runJSON(last[0])
			e.Last = &r
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Server) listEnvironments(w http.ResponseWriter, r *http.Request, c *caller) error {
	envs, err := s.environments(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, envs)
	return nil
}

func strategyName(env *config.Environment) string {
	st := env.Strategy
	switch {
	case st.Canary != nil:
		return "canary"
	case st.BlueGreen != nil:
		return "blue-green"
	case st.Swap != nil:
		return "swap"
	}
	return "rolling"
}

func (s *Server) env(name string) (*config.Environment, error) {
	env, ok := s.deploy.Environments[name]
	if !ok {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no environment %q", name)
	}
	return env, nil
}

func (s *Server) envHosts(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("env")
	if _, err := s.env(name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.looks.get(r.Context(), name))
	return nil
}

// Paging of run lists.
const (
	defaultRunPage = 50
	maxRunPage     = 500
)

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	rq := store.RunQuery{Env: q.Get("env"), Status: store.RunStatus(q.Get("status")), Version: q.Get("version"), Before: q.Get("before"), Limit: defaultRunPage, Brief: true}
	if rq.Status != "" && !rq.Status.Valid() {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "status %q is not a run status (running, succeeded, failed, rolled_back, needs_attention, aborted)", rq.Status)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxRunPage {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "limit must be from 1 to %d, got %q", maxRunPage, v)
		}
		rq.Limit = n
	}
	// One more than the page tells whether there is a next one.
	rq.Limit++
	runs, err := s.st.QueryRuns(r.Context(), rq)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "before: no run %s", rq.Before)
	}
	if err != nil {
		return err
	}
	out := api.RunList{Runs: make([]api.Run, 0, len(runs))}
	if len(runs) == rq.Limit {
		runs = runs[:len(runs)-1]
		out.Next = runs[len(runs)-1].ID
	}
	for _, run := range runs {
		out.Runs = append(out.Runs, runJSON(run))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) runDetail(ctx context.Context, id string) (api.RunDetail, error) {
	d, _, _, err := s.loadRun(ctx, id)
	return d, err
}

// loadRun reads a run and its tasks, as the API shows them and as they
// are journaled (the dashboard draws the plan from the latter).
func (s *Server) loadRun(ctx context.Context, id string) (api.RunDetail, store.Run, []store.TaskRecord, error) {
	run, err := s.st.GetRun(ctx, id)
	if err != nil {
		return api.RunDetail{}, store.Run{}, nil, notFoundRun(id, err)
	}
	tasks, err := s.st.Tasks(ctx, id)
	if err != nil {
		return api.RunDetail{}, store.Run{}, nil, err
	}
	d := api.RunDetail{Run: runJSON(run), Plan: run.Plan, Tasks: make([]api.Task, 0, len(tasks)), Waiting: deploy.WaitingStage(tasks)}
	for _, t := range tasks {
		d.Tasks = append(d.Tasks, taskJSON(t))
	}
	// The link is a convenience: a failed look leaves it out, not the run.
	has, err := s.st.HasReport(ctx, id)
	if err != nil {
		s.log.Warn("look for a run's report", "run", id, "err", err)
	}
	if !has {
		_, err := os.Stat(s.reportPath(id))
		has = err == nil
	}
	if has {
		d.Report = "/api/v1/runs/" + id + "/report"
	}
	return d, run, tasks, nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, c *caller) error {
	d, err := s.runDetail(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// reportPath is the verifier's HTML report of a run as a file beside this
// replica's journal: where runs from before reports were journaled have it.
func (s *Server) reportPath(id string) string {
	return filepath.Join(deploy.ReportDir(s.deploy), id+".html")
}

// runReport serves a run's verifier report from the journal, so every
// replica serves every run's.
func (s *Server) runReport(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if _, err := s.st.GetRun(r.Context(), id); err != nil {
		return notFoundRun(id, err)
	}
	var page io.ReadSeeker
	rep, err := s.st.Report(r.Context(), id)
	switch {
	case err == nil:
		page = bytes.NewReader(rep.HTML)
	case !errors.Is(err, store.ErrNotFound):
		return err
	default:
		f, err := os.Open(s.reportPath(id))
		if err != nil {
			return errorf(http.StatusNotFound, api.CodeNotFound, "run %s has no verifier report", id)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		page, rep.At = f, st.ModTime()
	}
	// The report is self-contained HTML with its own inline script and
	// styles: it gets a policy of its own.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	http.ServeContent(w, r, "", rep.At, page)
	return nil
}

func (s *Server) createRun(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.CreateRun
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if _, err := s.env(req.Env); err != nil {
		return err
	}
	if err := host.CheckVersion(req.Version); err != nil {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "version: %v", err)
	}
	path, err := s.arts.path(req.SHA256)
	if err != nil {
		return err
	}
	dr := deploy.Request{Env: req.Env, Version: req.Version, Artifact: path, SHA256: req.SHA256, Pipeline: req.Pipeline}
	lr, err := s.launch(r.Context(), "deploy", "", func(ctx context.Context, o deploy.Options) (*deploy.Outcome, error) {
		return deploy.Deploy(ctx, o, dr)
	})
	return s.answerLaunch(w, r, c, "run.create", lr, err, fmt.Sprintf("%s %s to %s", req.Version, req.SHA256, req.Env))
}

// answerLaunch audits a launch and answers it: a started run (201) or
// nothing to do (200).
func (s *Server) answerLaunch(w http.ResponseWriter, r *http.Request, c *caller, action string, lr launched, err error, detail string) error {
	if err := s.auditLaunch(r, c, action, lr, err, detail); err != nil {
		return err
	}
	writeLaunch(w, lr)
	return nil
}

// auditLaunch writes a launch to the audit log; it returns the launch's
// error, for the caller to answer.
func (s *Server) auditLaunch(r *http.Request, c *caller, action string, lr launched, err error, detail string) error {
	switch {
	case err != nil:
		return err
	case lr.nothingToDo:
		s.audit(r.Context(), r, c.name(), action, "", strings.TrimPrefix(detail+": nothing to do", ": "))
	default:
		s.audit(r.Context(), r, c.name(), action, lr.run.ID, detail)
	}
	return nil
}

func writeLaunch(w http.ResponseWriter, lr launched) {
	if lr.nothingToDo {
		writeJSON(w, http.StatusOK, api.CreateRunResult{NothingToDo: true})
		return
	}
	run := runJSON(lr.run)
	w.Header().Set("Location", "/api/v1/runs/"+run.ID)
	writeJSON(w, http.StatusCreated, api.CreateRunResult{Run: &run})
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.Promote
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if _, err := s.env(req.From); err != nil {
		return err
	}
	if _, err := s.env(req.To); err != nil {
		return err
	}
	p, err := deploy.FindPromotion(r.Context(), s.st, s.deploy, req.From, req.Version)
	if err != nil {
		return err
	}
	dr := p.Request(req.To)
	lr, err := s.launch(r.Context(), "promote", "", func(ctx context.Context, o deploy.Options) (*deploy.Outcome, error) {
		return deploy.Deploy(ctx, o, dr)
	})
	return s.answerLaunch(w, r, c, "run.promote", lr, err, fmt.Sprintf("%s to %s", req.From, req.To))
}

// The run buttons — approve, abort, roll back — each have one
// implementation below, which the API's handlers and the dashboard's
// forms both call: the checks, the store operation and the audit entry
// are the same whichever front end asked.

func (s *Server) rollbackRun(w http.ResponseWriter, r *http.Request, c *caller) error {
	lr, err := s.rollback(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeLaunch(w, lr)
	return nil
}

// rollback starts the rollback of an ended run.
func (s *Server) rollback(r *http.Request, c *caller, id string) (launched, error) {
	run, err := s.st.GetRun(r.Context(), id)
	if err != nil {
		return launched{}, notFoundRun(id, err)
	}
	if run.Status == store.RunRunning {
		return launched{}, errorf(http.StatusConflict, api.CodeConflict, "run %s is still running: abort it (it rolls back by itself)", id)
	}
	lr, err := s.launch(r.Context(), "rollback", id, func(ctx context.Context, o deploy.Options) (*deploy.Outcome, error) {
		return deploy.Rollback(ctx, o, id)
	})
	return lr, s.auditLaunch(r, c, "run.rollback", lr, err, "of "+id)
}

func (s *Server) approveRun(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.ApproveRun
	if r.ContentLength != 0 {
		if err := readJSON(r, &req); err != nil {
			return err
		}
	}
	a, err := s.approve(r, c, r.PathValue("id"), req.Stage)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Approval{Stage: a.Stage, By: a.By, At: a.At})
	return nil
}

// approve approves a stage of a running run: the one it waits for when
// stage is empty.
func (s *Server) approve(r *http.Request, c *caller, id, stage string) (store.Approval, error) {
	run, err := s.st.GetRun(r.Context(), id)
	if err != nil {
		return store.Approval{}, notFoundRun(id, err)
	}
	if run.Status != store.RunRunning {
		return store.Approval{}, errorf(http.StatusConflict, api.CodeConflict, "run %s ended (%s): nothing to approve", id, run.Status)
	}
	if stage == "" {
		tasks, err := s.st.Tasks(r.Context(), id)
		if err != nil {
			return store.Approval{}, err
		}
		if stage = deploy.WaitingStage(tasks); stage == "" {
			return store.Approval{}, errorf(http.StatusConflict, api.CodeConflict, "run %s is not waiting for an approval; name the stage", id)
		}
	}
	a, err := s.st.Approve(r.Context(), id, stage, c.name())
	if err != nil {
		return store.Approval{}, err
	}
	s.audit(r.Context(), r, c.name(), "run.approve", id, "stage "+stage)
	return a, nil
}

func (s *Server) promoteCanary(w http.ResponseWriter, r *http.Request, c *caller) error {
	a, err := s.endCanary(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.Approval{Stage: a.Stage, By: a.By, At: a.At})
	return nil
}

// endCanary lets a running canary's remaining steps go by without waiting
// (zerodown promote RUN): an approval under engine.PromoteKey.
func (s *Server) endCanary(r *http.Request, c *caller, id string) (store.Approval, error) {
	run, err := s.st.GetRun(r.Context(), id)
	if err != nil {
		return store.Approval{}, notFoundRun(id, err)
	}
	if run.Status != store.RunRunning {
		return store.Approval{}, errorf(http.StatusConflict, api.CodeConflict, "run %s ended (%s)", id, run.Status)
	}
	a, err := s.st.Approve(r.Context(), id, engine.PromoteKey, c.name())
	if err != nil {
		return store.Approval{}, err
	}
	s.audit(r.Context(), r, c.name(), "run.promote_canary", id, "")
	return a, nil
}

func (s *Server) abortRun(w http.ResponseWriter, r *http.Request, c *caller) error {
	run, err := s.abort(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, runJSON(run))
	return nil
}

// abort asks a running run to stop at its next safe point and roll back.
func (s *Server) abort(r *http.Request, c *caller, id string) (store.Run, error) {
	run, err := s.st.GetRun(r.Context(), id)
	if err != nil {
		return store.Run{}, notFoundRun(id, err)
	}
	if run.Status != store.RunRunning {
		return store.Run{}, errorf(http.StatusConflict, api.CodeConflict, "run %s ended (%s): nothing to abort", id, run.Status)
	}
	if err := s.st.RequestAbort(r.Context(), id, c.name()); err != nil {
		return store.Run{}, err
	}
	s.audit(r.Context(), r, c.name(), "run.abort", id, "")
	return s.st.GetRun(r.Context(), id)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, c *caller) error {
	toks, err := s.st.ListTokens(r.Context())
	if err != nil {
		return err
	}
	out := make([]api.Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, tokenJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.CreateToken
	if err := readJSON(r, &req); err != nil {
		return err
	}
	secret, t, err := CreateToken(r.Context(), s.st, req.Name, req.Role, c.name())
	if err != nil {
		return err
	}
	s.audit(r.Context(), r, c.name(), "token.create", t.ID, fmt.Sprintf("%s (%s)", t.Name, t.Role))
	writeJSON(w, http.StatusCreated, api.NewToken{Token: tokenJSON(t), Secret: secret})
	return nil
}

// CreateToken makes a token and stores it: `zerodown server token create`
// and POST /api/v1/tokens both come here.
func CreateToken(ctx context.Context, st store.Store, name, role, by string) (string, store.Token, error) {
	rl, err := ParseRole(role)
	if err != nil {
		return "", store.Token{}, errorf(http.StatusBadRequest, api.CodeBadRequest, "%v", err)
	}
	if !validTokenName(name) {
		return "", store.Token{}, errorf(http.StatusBadRequest, api.CodeBadRequest, "token name %q: use 1 to 64 letters, digits, '.', '_', '-' or '@'", name)
	}
	secret, t, err := NewToken(name, rl, by)
	if err != nil {
		return "", store.Token{}, err
	}
	t, err = st.CreateToken(ctx, t)
	if errors.Is(err, store.ErrExists) {
		return "", store.Token{}, errorf(http.StatusConflict, api.CodeConflict, "a token named %s exists already", name)
	}
	return secret, t, err
}

func validTokenName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '@') {
			return false
		}
	}
	return true
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	t, err := s.st.RevokeToken(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no token %s", id)
	}
	if err != nil {
		return err
	}
	s.audit(r.Context(), r, c.name(), "token.revoke", t.ID, t.Name)
	writeJSON(w, http.StatusOK, tokenJSON(t))
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	var before int64
	limit := 100
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "before must be an entry number, got %q", v)
		}
		before = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "limit must be from 1 to 1000, got %q", v)
		}
		limit = n
	}
	entries, err := s.st.Audit(r.Context(), before, limit)
	if err != nil {
		return err
	}
	out := make([]api.AuditEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, api.AuditEntry{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail, Remote: e.Remote})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

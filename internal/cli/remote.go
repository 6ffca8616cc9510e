package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// Environment variables of the CLI as a client of zerodown server.
const (
	envServer = "ZERODOWN_SERVER"
	envToken  = "ZERODOWN_TOKEN"
)

// addServerFlags lets a command work against a zerodown server instead of
// the local journal.
func addServerFlags(c *cobra.Command) {
	c.Flags().String("server", "", "work against this zerodown server (http(s)://host:port) instead of the local journal; default $"+envServer)
	c.Flags().String("token-file", "", "file holding the server's API token; default the token in $"+envToken)
}

// remoteClient is the server client the flags or the environment ask for;
// nil when the command works locally.
func remoteClient(c *cobra.Command) (*api.Client, error) {
	url, _ := c.Flags().GetString("server")
	if url == "" {
		url = os.Getenv(envServer)
	}
	if url == "" {
		return nil, nil
	}
	token := os.Getenv(envToken)
	if path, _ := c.Flags().GetString("token-file"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, badInput(fmt.Errorf("--token-file: %w", err))
		}
		token = strings.TrimSpace(string(b))
	}
	cl, err := api.NewClient(url, token)
	if err != nil {
		return nil, badInput(err)
	}
	return cl, nil
}

// remoteError maps the server's refusals onto the CLI's exit codes: what
// the caller sent wrong (a bad artifact, version, environment, token) is
// bad input (2); a conflict (a held lock) or anything else failed (1).
func remoteError(err error) error {
	var se *api.StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case api.CodeBadRequest, api.CodeNotFound, api.CodeUnauthorized, api.CodeForbidden, api.CodeTooLarge:
			return badInput(err)
		}
	}
	return err
}

// remoteDeploy uploads the artifact (unless the server has it), starts the
// run and follows it to its end: the same live view, output modes and exit
// codes as a local run.
func remoteDeploy(c *cobra.Command, cl *api.Client, output, artifact string, start func(ctx context.Context, sha string) (api.CreateRunResult, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sha := ""
	if artifact != "" {
		var err error
		if sha, err = cl.Upload(ctx, artifact); err != nil {
			return remoteError(err)
		}
	}
	// Once asked, the run is started whatever happens here: a signal now
	// must not cut the request and leave a run nobody aborts. It is
	// aborted once its id is known.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	res, err := start(cctx, sha)
	cancel()
	if err != nil {
		return remoteError(err)
	}
	if ctx.Err() != nil && res.Run != nil {
		fmt.Fprintf(c.ErrOrStderr(), "asking the server to abort run %s\n", res.Run.ID)
		if _, err := cl.Abort(context.Background(), res.Run.ID); err != nil {
			fmt.Fprintf(c.ErrOrStderr(), "abort: %v\n", err)
		}
	}
	if res.NothingToDo || res.Run == nil {
		out := newRunOutput(c, output)
		if output == outputJSON {
			out.jsonLine(runFinished{Type: "run_finished", Status: "nothing_to_do"})
			return nil
		}
		fmt.Fprintln(c.OutOrStdout(), "every host already runs the version and is healthy: nothing to do")
		return nil
	}
	return followRemote(c, cl, res.Run.ID, 0, output, "deploy")
}

// createTimeout bounds the request that starts a run: the server answers
// once the run exists, after its checks of the hosts and the balancer.
const createTimeout = 2 * time.Minute

// followRemote shows a run of the server from its start to its end. A
// first SIGINT or SIGTERM asks the server to abort the run (it rolls
// back) and goes on showing it; a second one stops watching.
// Events up to after are not shown (a rollback of a run follows from its
// last event before the rollback).
func followRemote(c *cobra.Command, cl *api.Client, id string, after int64, output, mode string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		fmt.Fprintf(c.ErrOrStderr(), "asking the server to abort run %s (again to stop watching)\n", id)
		if _, err := cl.Abort(ctx, id); err != nil {
			fmt.Fprintf(c.ErrOrStderr(), "abort: %v\n", err)
		}
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	d, err := cl.Run(ctx, id)
	if err != nil {
		return remoteError(err)
	}
	var p pipeline.Pipeline
	_ = json.Unmarshal(d.Plan, &p)
	out := newRunOutput(c, output)
	out.start(deploy.Start{RunID: d.ID, Env: d.Env, Version: d.Version, Pipeline: d.Pipeline, Hosts: p.Hosts(), Tasks: deploy.CountTasks(&p), Mode: mode})
	end, err := cl.Follow(ctx, id, after, func(e api.Event) {
		if e.Type == deploy.EvVerify {
			return // the view shows the run's steps; the report the load
		}
		out.event(engineEvent(e))
	})
	if err != nil {
		if out.view != nil {
			out.view.Close()
		}
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("stopped watching run %s; it goes on on the server (zerodown show %s --server %s)", id, id, cl.URL())
		}
		return remoteError(err)
	}
	return out.finishedRemote(end)
}

// engineEvent is a journaled event as the live view takes it.
func engineEvent(e api.Event) engine.Event {
	ev := engine.Event{At: e.At, Host: e.Host, Type: e.Type, Message: e.Message}
	var data struct {
		InFlight int `json:"in_flight"`
	}
	if len(e.Data) > 0 && json.Unmarshal(e.Data, &data) == nil {
		ev.InFlight = data.InFlight
	}
	return ev
}

// finishedRemote ends the view of a server's run with the exit code a
// local run of that outcome has.
func (r *runOutput) finishedRemote(run api.Run) error {
	if r.view != nil {
		r.view.Close()
	}
	code := ExitFailed
	if run.ExitCode != nil {
		code = *run.ExitCode
	}
	status := store.RunStatus(run.Status)
	if r.rollback && status == store.RunRolledBack {
		code = ExitOK
	}
	var err error
	switch {
	case code == ExitOK:
	case status == store.RunNeedsAttention:
		err = &exitError{code: code, err: fmt.Errorf("run %s needs attention: %s", run.ID, run.Error)}
	case status == store.RunFailed:
		err = &exitError{code: code, err: fmt.Errorf("run %s failed, nothing was changed: %s", run.ID, run.Error)}
	default:
		err = &exitError{code: code, err: fmt.Errorf("run %s %s: %s", run.ID, strings.ReplaceAll(string(status), "_", " "), run.Error)}
	}
	if r.mode == outputJSON {
		fin := runFinished{Type: "run_finished", Run: run.ID, Status: run.Status, ExitCode: code}
		if err != nil {
			fin.Error = run.Error
		}
		r.jsonLine(fin)
		return err
	}
	fmt.Fprintf(r.w, "run %s %s\n", run.ID, run.Status)
	return err
}

// storeRun is a server's run as the local printers take it.
func storeRun(r api.Run) store.Run {
	out := store.Run{ID: r.ID, Env: r.Env, Pipeline: r.Pipeline, Version: r.Version, SHA256: r.SHA256, Status: store.RunStatus(r.Status),
		StartedAt: r.StartedAt, Owner: r.Owner, Error: r.Error, Abort: r.Abort, AbortBy: r.AbortBy, PromotedFrom: r.PromotedFrom}
	if r.EndedAt != nil {
		out.EndedAt = *r.EndedAt
	}
	return out
}

func storeTask(runID string, t api.Task) store.TaskRecord {
	out := store.TaskRecord{RunID: runID, Stage: t.Stage, Job: t.Job, Index: t.Index, Kind: t.Kind, Host: t.Host,
		Status: store.TaskStatus(t.Status), Error: t.Error, Attempt: t.Attempt}
	if t.StartedAt != nil {
		out.StartedAt = *t.StartedAt
	}
	if t.EndedAt != nil {
		out.EndedAt = *t.EndedAt
	}
	return out
}

func storeEvent(runID string, e api.Event) store.Event {
	return store.Event{RunID: runID, Seq: e.Seq, At: e.At, Host: e.Host, Type: e.Type, Message: e.Message, Data: e.Data}
}

// remoteHistory is history against a server.
func remoteHistory(c *cobra.Command, cl *api.Client, env string, limit int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var runs []store.Run
	q := api.RunQuery{Env: env, Limit: min(max(limit, 1), 500)}
	for limit <= 0 || len(runs) < limit {
		page, err := cl.Runs(ctx, q)
		if err != nil {
			return remoteError(err)
		}
		for _, r := range page.Runs {
			runs = append(runs, storeRun(r))
		}
		if page.Next == "" {
			break
		}
		q.Before = page.Next
	}
	if limit > 0 && len(runs) > limit {
		runs = runs[:limit]
	}
	return writeRuns(c.OutOrStdout(), runs, func(store.Run) bool { return false })
}

// remoteShow is show against a server.
func remoteShow(c *cobra.Command, cl *api.Client, id string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := cl.Run(ctx, id)
	if err != nil {
		return remoteError(err)
	}
	evs, err := cl.Events(ctx, id, 0)
	if err != nil {
		return remoteError(err)
	}
	tasks := make([]store.TaskRecord, 0, len(d.Tasks))
	for _, t := range d.Tasks {
		tasks = append(tasks, storeTask(id, t))
	}
	events := make([]store.Event, 0, len(evs))
	for _, e := range evs {
		events = append(events, storeEvent(id, e))
	}
	return writeShow(c.OutOrStdout(), storeRun(d.Run), tasks, events, false)
}

// remoteRollback starts the rollback of a run on the server and shows it,
// from the run's last event before it.
func remoteRollback(c *cobra.Command, cl *api.Client, id, output string) error {
	var last int64
	var res api.CreateRunResult
	if err := remoteCall(func(ctx context.Context) error {
		evs, err := cl.Events(ctx, id, 0)
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			last = evs[len(evs)-1].Seq
		}
		res, err = cl.Rollback(ctx, id)
		return err
	}); err != nil {
		return err
	}
	if res.Run == nil {
		fmt.Fprintf(c.OutOrStdout(), "run %s: nothing to roll back\n", id)
		return nil
	}
	return followRemote(c, cl, res.Run.ID, last, output, "rollback")
}

// remoteCall runs one short call against the server, under SIGINT.
func remoteCall(fn func(ctx context.Context) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return remoteError(fn(ctx))
}

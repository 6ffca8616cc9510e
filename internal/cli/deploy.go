package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

const exitCodesHelp = `Exit codes: 0 deployed; 1 failed (every host it changed is rolled back and
attached again, or nothing was changed); 2 bad input, found before a run
exists (config, arguments, artifact, version, a token file or a token an
agent or the load balancer refuses); 3 left in a state that needs a person
(the summary names each host that is detached or half-done, and why).`

func newDeployCmds() []*cobra.Command {
	return []*cobra.Command{newDeployCmd(), newPromoteCmd(), newPlanCmd(), newHistoryCmd(), newShowCmd(),
		newResumeCmd(), newRollbackCmd(), newApproveCmd(), newAbortCmd()}
}

func addConfigFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "config", "c", "zerodown.yaml", "the zerodown.yaml to read")
}

func newDeployCmd() *cobra.Command {
	var cfgPath, version, artifact, pipelineName, output string
	var dryRun, takeOver bool
	cmd := &cobra.Command{
		Use:   "deploy ENV --version V --artifact PATH",
		Short: "Deploy a release to an environment, one safe step at a time",
		Long: `Deploy a release to every host of an environment. The artifact goes to every
host first; then, batch by batch, each host is detached from the load balancer,
waited on until drained, switched to the new release, attached again and waited
on until the load balancer reports it healthy. Hosts already on the version and
healthy are skipped, so running the same deploy again is safe. A failed step
rolls back every host the run changed. Every step is journaled: see history,
show, resume, rollback; and abort from another terminal.

` + exitCodesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if version == "" || artifact == "" {
				return badInput(errors.New("deploy needs --version and --artifact"))
			}
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				if dryRun || takeOver {
					return badInput(errors.New("--dry-run and --take-over work on the local journal: a server takes over runs by itself, and 'zerodown plan' reads zerodown.yaml"))
				}
				return remoteDeploy(c, cl, output, artifact, func(ctx context.Context, sha string) (api.CreateRunResult, error) {
					return cl.CreateRun(ctx, api.CreateRun{Env: args[0], Version: version, SHA256: sha, Pipeline: pipelineName})
				})
			}
			return runDeploy(c, cfgPath, output, dryRun, func(context.Context, *config.Deploy) (deploy.Request, error) {
				return deploy.Request{Env: args[0], Version: version, Artifact: artifact, Pipeline: pipelineName, TakeOver: takeOver}, nil
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&version, "version", "", "version of the release, such as v2 (required)")
	cmd.Flags().StringVar(&artifact, "artifact", "", "the release: a .tar.gz, .zip or single executable (required)")
	cmd.Flags().StringVar(&pipelineName, "pipeline", "", "run this hand-written pipeline instead of the environment's strategy")
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json (events as JSON lines)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVar(&takeOver, "take-over", false, "take the environment's lock from a run whose process is gone")
	addServerFlags(cmd)
	return cmd
}

// runDeploy runs the deploy that request makes of zerodown.yaml (deploy
// and promote), with the run's output and exit code.
func runDeploy(c *cobra.Command, cfgPath, output string, dryRun bool, request func(context.Context, *config.Deploy) (deploy.Request, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadDeployConfig(cfgPath)
	if err != nil {
		return err
	}
	req, err := request(ctx, cfg)
	if err != nil {
		return deployError(err)
	}
	envName, version := req.Env, req.Version
	if dryRun {
		p, skip, err := deploy.Plan(ctx, cfg, req)
		if err != nil {
			return deployError(err)
		}
		if err := printPlan(c, p, skip); err != nil {
			return err
		}
		if env, err := deploy.Environment(cfg, req.Env); err == nil {
			if names := deploy.Unskippable(env); len(names) > 0 {
				fmt.Fprintf(c.OutOrStdout(), "# cannot skip hosts already on the version: no exec.status: %s\n", strings.Join(names, ", "))
			}
		}
		return nil
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	out := newRunOutput(c, output)
	o, err := deploy.Deploy(ctx, out.options(cfg, st), req)
	if err != nil {
		out.closeView() // a run that began and was taken over by another process
		return deployError(err)
	}
	if o.NothingToDo {
		if output == outputJSON {
			out.finished(o)
		} else {
			fmt.Fprintf(c.OutOrStdout(), "every host of %s already runs %s and is healthy: nothing to do\n", envName, version)
		}
		return nil
	}
	return out.finished(o)
}

func printPlan(c *cobra.Command, p *pipeline.Pipeline, skip map[string]bool) error {
	out := c.OutOrStdout()
	if err := pipeline.WriteYAML(out, p); err != nil {
		return err
	}
	d, approvals := pipeline.Estimate(p)
	fmt.Fprintf(out, "# estimated duration: %s", d.Round(100*time.Millisecond))
	if approvals > 0 {
		fmt.Fprintf(out, " plus %d approval(s)", approvals)
	}
	fmt.Fprintln(out)
	if len(skip) > 0 {
		fmt.Fprintf(out, "# skipped, already on the version and healthy: %s\n", strings.Join(slices.Sorted(maps.Keys(skip)), ", "))
	}
	return nil
}

// planWaitsTimeout bounds plan's questions to the load balancer.
const planWaitsTimeout = 5 * time.Second

// printPlanWaits prints, as comments, the longest waits per host a deploy
// of env would use, asking its load balancer for its settings.
func printPlanWaits(ctx context.Context, out io.Writer, cfg *config.Deploy, env *config.Environment, p *pipeline.Pipeline) error {
	ctx, cancel := context.WithTimeout(ctx, planWaitsTimeout)
	defer cancel()
	bal, err := deploy.Balancer(ctx, cfg, env)
	if err != nil {
		_, err = fmt.Fprintf(out, "# waits per host: unknown, the load balancer driver could not be set up: %v\n", err)
		return err
	}
	drain, health := deploy.PipelineTimeouts(p)
	w := deploy.ReadWaits(ctx, bal, drain, health)
	fmt.Fprintf(out, "# waits per host through %s (%s driver); the recipe sleeps %s after each call:\n", describeBalancer(env, bal), env.LB.Driver, deploy.RecipeSleep)
	var b strings.Builder
	if err := writeWaits(&b, w); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		fmt.Fprintf(out, "#   %s\n", line)
	}
	for _, a := range w.Advice {
		fmt.Fprintf(out, "# note: %s\n", a)
	}
	for _, u := range w.Unread {
		fmt.Fprintf(out, "# could not read the load balancer's %s\n", u)
	}
	return nil
}

func newPromoteCmd() *cobra.Command {
	var cfgPath, version, output string
	var dryRun, takeOver bool
	cmd := &cobra.Command{
		Use:   "promote FROM TO [--version V] | promote RUN",
		Short: "Deploy to TO exactly the build that passed FROM; or end a canary's steps at once",
		Long: `Deploy to environment TO exactly the artifact (checked by its sha256) and
the app spec of the last run on environment FROM, which must have succeeded —
or, with --version, of the last run of that version on FROM. A build that did
not pass FROM is refused, and so is an artifact whose file changed since. The
deploy itself is TO's strategy, as with deploy; the run records the run it was
promoted from, and history --path shows each build's way through the
environments.

Given a running canary run instead, promote ends its analysis now and lets
its remaining steps go by without waiting: the canary is judged good, the
rest of the hosts are updated. Who promoted it is stored with the run.

` + exitCodesHelp,
		Example: `  zerodown promote staging production
  zerodown promote staging production --version 1.4.2 --dry-run
  zerodown promote r-20261201-101500-1234     # a canary run: skip its remaining steps`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				return nil
			}
			return exactArgs("FROM", "TO")(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := remoteClient(c)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if cl != nil {
					return remoteCall(func(ctx context.Context) error {
						a, err := cl.PromoteCanary(ctx, args[0])
						if err == nil {
							fmt.Fprintf(c.OutOrStdout(), "run %s promoted by %s: its remaining canary steps go by without waiting\n", args[0], a.By)
						}
						return err
					})
				}
				return promoteCanary(c, cfgPath, args[0])
			}
			from, to := args[0], args[1]
			if from == to {
				return badInput(fmt.Errorf("promote %s to itself: name two environments", from))
			}
			if cl != nil {
				if dryRun || takeOver {
					return badInput(errors.New("--dry-run and --take-over work on the local journal"))
				}
				return remoteDeploy(c, cl, output, "", func(ctx context.Context, _ string) (api.CreateRunResult, error) {
					return cl.Promote(ctx, api.Promote{From: from, To: to, Version: version})
				})
			}
			return runDeploy(c, cfgPath, output, dryRun, func(ctx context.Context, cfg *config.Deploy) (deploy.Request, error) {
				if _, err := deploy.Environment(cfg, to); err != nil {
					return deploy.Request{}, err
				}
				st, err := openStore(ctx, cfg)
				if err != nil {
					return deploy.Request{}, err
				}
				defer st.Close()
				p, err := deploy.FindPromotion(ctx, st, cfg, from, version)
				if err != nil {
					return deploy.Request{}, err
				}
				fmt.Fprintf(c.ErrOrStderr(), "promoting %s (sha256 %.12s…) from %s, where run %s passed, to %s\n", p.From.Version, p.From.SHA256, from, p.From.ID, to)
				req := p.Request(to)
				req.TakeOver = takeOver
				return req, nil
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&version, "version", "", "promote this version's last run on FROM instead of FROM's last run")
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json (events as JSON lines)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVar(&takeOver, "take-over", false, "take TO's lock from a run whose process is gone")
	addServerFlags(cmd)
	return cmd
}

// promoteCanary records `zerodown promote RUN` for a running canary run.
func promoteCanary(c *cobra.Command, cfgPath, id string) error {
	return withRun(cfgPath, id, func(ctx context.Context, st store.Store, r store.Run) error {
		if r.Status != store.RunRunning {
			return badInput(fmt.Errorf("run %s ended (%s): only a running canary can be promoted", r.ID, r.Status))
		}
		var p pipeline.Pipeline
		if err := json.Unmarshal(r.Plan, &p); err != nil || p.WeightsOf() == nil {
			return badInput(fmt.Errorf("run %s has no canary to promote (to deploy a build to another environment: zerodown promote FROM TO)", r.ID))
		}
		a, err := st.Approve(ctx, r.ID, engine.PromoteKey, store.ProcessOwner())
		if err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "canary of run %s promoted by %s: its remaining steps go by without waiting\n", a.RunID, a.By)
		return nil
	})
}

func newPlanCmd() *cobra.Command {
	var cfgPath, pipelineName string
	cmd := &cobra.Command{
		Use:   "plan ENV",
		Short: "Print what a deploy to ENV would run, in the hand-written pipeline form",
		Long: `Print the pipeline a deploy to ENV runs: the environment's strategy expanded
into stages, jobs and tasks (or a hand-written pipeline with --pipeline), in the
form zerodown.yaml accepts, with an estimated duration. It changes nothing:
it only asks the load balancer for its settings (within 5s) to print the
longest a deploy waits per host for a drain and for health, derived from
them, beside the fixed sleep 60 of the recipe zerodown replaces. At deploy
time hosts already on the version are skipped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := loadDeployConfig(cfgPath)
			if err != nil {
				return err
			}
			env, err := deploy.Environment(cfg, args[0])
			if err != nil {
				return deployError(err)
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintln(c.ErrOrStderr(), "warning: "+w)
			}
			live, err := planLive(c, env)
			if err != nil {
				return err
			}
			p, err := deploy.Pipeline(cfg, env, pipelineName, nil, live)
			if err != nil {
				return deployError(err)
			}
			if err := printPlan(c, p, nil); err != nil {
				return err
			}
			return printPlanWaits(c.Context(), c.OutOrStdout(), cfg, env, p)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&pipelineName, "pipeline", "", "a hand-written pipeline instead of the strategy")
	return cmd
}

// planLive is the pool that serves users, for the plan of a blue-green
// environment: asked of the balancer within 5s, else the first pool, said.
func planLive(c *cobra.Command, env *config.Environment) (string, error) {
	bg := env.Strategy.BlueGreen
	if bg == nil {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(c.Context(), 5*time.Second)
	defer cancel()
	live, err := deploy.LivePool(ctx, env, nil)
	if err != nil {
		fmt.Fprintf(c.ErrOrStderr(), "note: could not ask the load balancer which pool is live (%v); the plan assumes %s\n", err, bg.Pools[0])
		return bg.Pools[0], nil
	}
	return live, nil
}

// withStore opens the journal named by the config for a read or a small
// write.
func withStore(cfgPath string, fn func(ctx context.Context, cfg *config.Deploy, st store.Store) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadDeployConfig(cfgPath)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, cfg, st)
}

// withRun opens the journal and finds one run, for the commands about a run.
func withRun(cfgPath, id string, fn func(ctx context.Context, st store.Store, r store.Run) error) error {
	return withStore(cfgPath, func(ctx context.Context, _ *config.Deploy, st store.Store) error {
		r, err := getRun(ctx, st, id)
		if err != nil {
			return err
		}
		return fn(ctx, st, r)
	})
}

func getRun(ctx context.Context, st store.Store, id string) (store.Run, error) {
	r, err := deploy.GetRun(ctx, st, id)
	return r, deployError(err)
}

func newHistoryCmd() *cobra.Command {
	var cfgPath string
	var limit int
	var path bool
	cmd := &cobra.Command{
		Use:   "history [ENV] [--path]",
		Short: "List runs, newest first, or each build's path through the environments",
		Long: `List runs, newest first (of ENV only, when given). With --path, list builds
instead — an artifact by its sha256, newest first — and for each environment,
in zerodown.yaml's order, the last run of that build there: its status and
run, and the run it was promoted from.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				if path {
					return badInput(errors.New("history --path reads the local journal; the server's dashboard shows each build's path"))
				}
				env := ""
				if len(args) == 1 {
					env = args[0]
				}
				return remoteHistory(c, cl, env, limit)
			}
			return withStore(cfgPath, func(ctx context.Context, cfg *config.Deploy, st store.Store) error {
				env := ""
				if len(args) == 1 {
					env = args[0]
				}
				if path {
					if env != "" {
						return badInput(errors.New("history --path lists every environment: give no ENV"))
					}
					runs, err := st.ListRuns(ctx, "", 0)
					if err != nil {
						return err
					}
					return writeBuildPaths(c.OutOrStdout(), cfg, runs, limit)
				}
				runs, err := st.ListRuns(ctx, env, limit)
				if err != nil {
					return err
				}
				return writeRuns(c.OutOrStdout(), runs, deploy.OwnerGone)
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "show at most this many runs, or builds with --path (0: all)")
	cmd.Flags().BoolVar(&path, "path", false, "each build's path through the environments (GoCD's value stream, in text)")
	addServerFlags(cmd)
	cmd.AddCommand(newHistoryPruneCmd())
	return cmd
}

func newHistoryPruneCmd() *cobra.Command {
	var cfgPath string
	var olderThan time.Duration
	var keep int
	cmd := &cobra.Command{
		Use:   "prune --older-than DURATION [--keep N]",
		Short: "Delete old runs from the journal, with their events and reports",
		Long: `Delete from the local journal the runs that ended longer ago than
--older-than, with their tasks, events, approvals and verifier reports (the
files under reports/ too). Whatever their age, the newest --keep runs of
each environment stay (at least one: what promote and rollback ENV read),
and so does every run still running or needing attention: their journal is
what resume and rollback read.

zerodown server prunes its own journal with retention: in server.yaml. (An
environment named prune cannot be listed as history prune: this command
takes the name.)`,
		Example: `  zerodown history prune --older-than 2160h            # runs older than 90 days
  zerodown history prune --older-than 720h --keep 50`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return badInput(errors.New("history prune: --older-than is required, a duration such as 2160h (90 days)"))
			}
			if keep < 1 {
				return badInput(fmt.Errorf("history prune: --keep %d: keep at least each environment's newest run, which promote and rollback ENV read", keep))
			}
			if os.Getenv(envServer) != "" {
				return badInput(fmt.Errorf("history prune works on the local journal, and %s is set: zerodown server prunes its own with retention: in server.yaml", envServer))
			}
			return withStore(cfgPath, func(ctx context.Context, cfg *config.Deploy, st store.Store) error {
				before := time.Now().Add(-olderThan)
				ids, err := deploy.Prune(ctx, st, deploy.ReportDir(cfg), before, keep)
				fmt.Fprintf(c.OutOrStdout(), "pruned %d runs that ended before %s (kept the newest %d of each environment, and every run running or needing attention)\n",
					len(ids), before.Local().Format(time.DateTime), keep)
				for _, id := range ids {
					fmt.Fprintln(c.OutOrStdout(), id)
				}
				return err
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "delete runs that ended longer ago than this (required; 2160h is 90 days)")
	cmd.Flags().IntVar(&keep, "keep", 10, "keep this many of each environment's newest runs, whatever their age (at least 1)")
	return cmd
}

// writeShow prints a run as show does; gone: its process died.
func writeShow(out io.Writer, r store.Run, tasks []store.TaskRecord, events []store.Event, gone bool) error {
	fmt.Fprintf(out, "run %s: %s %s to %s, %s\n", r.ID, r.Pipeline, r.Version, r.Env, r.Status)
	fmt.Fprintf(out, "started %s by %s\n", r.StartedAt.Local().Format(time.RFC3339), r.Owner)
	if r.PromotedFrom != "" {
		fmt.Fprintf(out, "promoted from run %s\n", r.PromotedFrom)
	}
	if r.Abort && !r.AbortAt.IsZero() {
		fmt.Fprintf(out, "abort requested %s by %s\n", r.AbortAt.Local().Format(time.RFC3339), orDash(r.AbortBy))
	} else if r.Abort {
		fmt.Fprintln(out, "abort requested") // by a zerodown that did not record who
	}
	if r.Error != "" {
		fmt.Fprintf(out, "error: %s\n", r.Error)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nAT\tTOOK\tSTAGE\tTASK\tSTATUS\tERROR")
	for _, t := range tasks {
		took := "-"
		if !t.EndedAt.IsZero() && !t.StartedAt.IsZero() {
			took = t.EndedAt.Sub(t.StartedAt).Round(time.Millisecond).String()
		}
		label := t.Kind
		if t.Host != "" {
			label += " " + t.Host
		}
		at := "-"
		if !t.StartedAt.IsZero() {
			at = t.StartedAt.Local().Format("15:04:05.000")
		}
		status := string(t.Status)
		if t.Status == store.TaskRunning && (r.Status != store.RunRunning || gone) {
			// Its process died under it; the run went on without it.
			status = "interrupted"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", at, took, t.Stage, label, status, firstLine(t.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The events tell what the tasks do not: draining counts,
	// health, and every step of a rollback.
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nAT\tHOST\tEVENT\tMESSAGE")
	for _, e := range events {
		if e.Type == engine.EvTask || e.Type == deploy.EvVerify {
			continue // the table above has them; the report has the load
		}
		who := e.Host
		if who == "" {
			who = "-"
		}
		// A script's output follows its event, a line each.
		lines := strings.Split(strings.TrimRight(e.Message, "\n"), "\n")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.At.Local().Format("15:04:05.000"), who, e.Type, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t\t\t  | %s\n", l)
		}
	}
	return tw.Flush()
}

// writeRuns prints runs as history does; gone tells a run whose process
// died (interrupted).
func writeRuns(w io.Writer, runs []store.Run, gone func(store.Run) bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tENV\tVERSION\tSTATUS\tSTARTED\tTOOK\tBY")
	for _, r := range runs {
		took := "-"
		if !r.EndedAt.IsZero() {
			took = r.EndedAt.Sub(r.StartedAt).Round(100 * time.Millisecond).String()
		}
		status := string(r.Status)
		if gone(r) {
			status = "interrupted: resume or rollback"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Env, r.Version, status,
			r.StartedAt.Local().Format("2006-01-02 15:04:05"), took, r.Owner)
	}
	return tw.Flush()
}

// writeBuildPaths prints, per build (newest first, at most limit), the
// last run of it in each environment of cfg.
func writeBuildPaths(w io.Writer, cfg *config.Deploy, runs []store.Run, limit int) error {
	type build struct {
		sha, version string
		last         map[string]store.Run // by environment; runs come newest first
	}
	var builds []*build
	bySHA := map[string]*build{}
	for _, r := range runs {
		b := bySHA[r.SHA256]
		if b == nil {
			b = &build{sha: r.SHA256, version: r.Version, last: map[string]store.Run{}}
			bySHA[r.SHA256] = b
			builds = append(builds, b)
		}
		if _, seen := b.last[r.Env]; !seen {
			b.last[r.Env] = r
		}
	}
	if limit > 0 && len(builds) > limit {
		builds = builds[:limit]
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "BUILD\tVERSION")
	for _, env := range cfg.EnvOrder {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(env))
	}
	fmt.Fprintln(tw)
	for _, b := range builds {
		fmt.Fprintf(tw, "%.12s\t%s", b.sha, b.version)
		for _, env := range cfg.EnvOrder {
			r, ok := b.last[env]
			switch {
			case !ok:
				fmt.Fprint(tw, "\t-")
			case r.PromotedFrom != "":
				fmt.Fprintf(tw, "\t%s %s (promoted from %s)", r.Status, r.ID, r.PromotedFrom)
			default:
				fmt.Fprintf(tw, "\t%s %s", r.Status, r.ID)
			}
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func newShowCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: every task with its duration, and its events",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				return remoteShow(c, cl, args[0])
			}
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				tasks, err := st.Tasks(ctx, r.ID)
				if err != nil {
					return err
				}
				events, err := st.Events(ctx, r.ID, 0)
				if err != nil {
					return err
				}
				return writeShow(c.OutOrStdout(), r, tasks, events, deploy.OwnerGone(r))
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	addServerFlags(cmd)
	return cmd
}

func newResumeCmd() *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "resume RUN",
		Short: "Let a paused run go on, or continue a run that was interrupted (its process killed)",
		Long: `Let a run held at a pause task go on at once (its process carries on; this
command returns).

Or continue a run whose zerodown process died: tasks that passed are not run
again, the others run (every task is safe to repeat). The run's lock is taken
over when its process is gone.

` + exitCodesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			resumed, err := resumePaused(c, cfgPath, args[0])
			if err != nil || resumed {
				return err
			}
			return continueRun(c, cfgPath, args[0], output, false)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json")
	return cmd
}

// resumePaused lets a run held at a pause go on, and reports whether it
// was one: a running run whose process lives. Any other run is left to
// continueRun.
func resumePaused(c *cobra.Command, cfgPath, id string) (bool, error) {
	resumed := false
	err := withRun(cfgPath, id, func(ctx context.Context, st store.Store, r store.Run) error {
		if r.Status != store.RunRunning || deploy.OwnerGone(r) {
			return nil
		}
		tasks, err := st.Tasks(ctx, r.ID)
		if err != nil {
			return err
		}
		var paused []store.TaskRecord
		for _, t := range tasks {
			if t.Kind == string(pipeline.KindPause) && t.Status == store.TaskRunning {
				paused = append(paused, t)
			}
		}
		if len(paused) == 0 {
			return badInput(fmt.Errorf("run %s is running and not paused: resume is for a paused run, or one whose process died", r.ID))
		}
		for _, t := range paused { // parallel jobs may each be paused
			a, err := st.Approve(ctx, r.ID, engine.ResumeKey(engine.TaskKey{Stage: t.Stage, Job: t.Job, Index: t.Index}), store.ProcessOwner())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "stage %s of run %s resumed by %s\n", t.Stage, r.ID, a.By)
		}
		resumed = true
		return nil
	})
	return resumed, err
}

func newRollbackCmd() *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "rollback RUN|ENV",
		Short: "Undo a run: put every host it touched back on its previous release, attached and healthy",
		Long: `Undo a run: every host it touched goes back to its previous release through
the load balancer (detach, drained, roll back, attach, healthy). Given an
environment's name, the environment's last run is undone.

A blue-green run that switched live traffic is undone by switching it back
to the old pool, which still runs the old release: within the strategy's
rollback_window, and only for the environment's last run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				return remoteRollback(c, cl, args[0], output)
			}
			return continueRun(c, cfgPath, args[0], output, true)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json")
	addServerFlags(cmd)
	return cmd
}

// continueRun resumes or rolls back a journaled run.
func continueRun(c *cobra.Command, cfgPath, runID, output string, rollback bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadDeployConfig(cfgPath)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	out := newRunOutput(c, output)
	opts := out.options(cfg, st)
	var o *deploy.Outcome
	if _, isEnv := cfg.Environments[runID]; rollback && isEnv {
		last, err := deploy.LastRun(ctx, cfg, st, runID)
		if err != nil {
			return deployError(err)
		}
		runID = last.ID
	}
	if rollback {
		o, err = deploy.Rollback(ctx, opts, runID)
	} else {
		o, err = deploy.Resume(ctx, opts, runID)
	}
	if err != nil {
		out.closeView()
		return deployError(err)
	}
	return out.finished(o)
}

func newApproveCmd() *cobra.Command {
	var cfgPath, stage string
	cmd := &cobra.Command{
		Use:   "approve RUN --stage STAGE",
		Short: "Let a run waiting at a manual gate go on",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				return remoteCall(func(ctx context.Context) error {
					a, err := cl.Approve(ctx, args[0], stage)
					if err == nil {
						fmt.Fprintf(c.OutOrStdout(), "stage %s of run %s approved by %s\n", a.Stage, args[0], a.By)
					}
					return err
				})
			}
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				if stage == "" {
					tasks, err := st.Tasks(ctx, r.ID)
					if err != nil {
						return err
					}
					if stage = deploy.WaitingStage(tasks); stage == "" {
						return badInput(fmt.Errorf("run %s is not waiting for an approval; name the stage with --stage", r.ID))
					}
				}
				a, err := st.Approve(ctx, r.ID, stage, store.ProcessOwner())
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "stage %s of run %s approved by %s\n", a.Stage, a.RunID, a.By)
				return nil
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&stage, "stage", "", "the stage to approve (default: the one waiting)")
	addServerFlags(cmd)
	return cmd
}

func newAbortCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "abort RUN",
		Short: "Ask a running deploy to stop at its next safe point and roll back",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if cl, err := remoteClient(c); err != nil || cl != nil {
				if err != nil {
					return err
				}
				return remoteCall(func(ctx context.Context) error {
					_, err := cl.Abort(ctx, args[0])
					if err == nil {
						fmt.Fprintf(c.OutOrStdout(), "abort requested; run %s stops at its next safe point and rolls back\n", args[0])
					}
					return err
				})
			}
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				if r.Status != store.RunRunning {
					return badInput(fmt.Errorf("run %s is not running (%s)", r.ID, r.Status))
				}
				if err := st.RequestAbort(ctx, r.ID, store.ProcessOwner()); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "abort requested; run %s stops at its next safe point and rolls back\n", r.ID)
				return nil
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	addServerFlags(cmd)
	return cmd
}

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
)

const exitCodesHelp = `Exit codes: 0 deployed; 1 failed (every host it changed is rolled back and
attached again, or nothing was changed); 2 bad input (config, arguments,
artifact); 3 left in a state that needs a person (the summary names each
host that is detached or half-done, and why).`

func newDeployCmds() []*cobra.Command {
	return []*cobra.Command{newDeployCmd(), newPlanCmd(), newHistoryCmd(), newShowCmd(),
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
			return runDeploy(c, cfgPath, args[0], version, artifact, pipelineName, output, dryRun, takeOver)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&version, "version", "", "version of the release, such as v2 (required)")
	cmd.Flags().StringVar(&artifact, "artifact", "", "the release: a .tar.gz, .zip or single executable (required)")
	cmd.Flags().StringVar(&pipelineName, "pipeline", "", "run this hand-written pipeline instead of the environment's strategy")
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json (events as JSON lines)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	cmd.Flags().BoolVar(&takeOver, "take-over", false, "take the environment's lock from a run whose process is gone")
	return cmd
}

func runDeploy(c *cobra.Command, cfgPath, envName, version, artifact, pipelineName, output string, dryRun, takeOver bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadDeployConfig(cfgPath)
	if err != nil {
		return err
	}
	env, err := environment(cfg, envName)
	if err != nil {
		return err
	}
	rel, err := release(artifact, version, cfg.App)
	if err != nil {
		return err
	}
	bal, err := balancerFor(env)
	if err != nil {
		return badInput(err)
	}
	hosts, err := hostsFor(env)
	if err != nil {
		return badInput(err)
	}
	lookCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	skip, err := alreadyDone(lookCtx, env, hosts, bal, version)
	cancel()
	if err != nil {
		return err
	}
	p, err := pipelineFor(cfg, env, pipelineName, skip)
	if err != nil {
		return err
	}
	out := c.OutOrStdout()
	if dryRun {
		return printPlan(c, p, skip)
	}
	if len(p.Stages) == 0 {
		fmt.Fprintf(out, "every host of %s already runs %s and is healthy: nothing to do\n", env.Name, version)
		return nil
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	// The lock comes first, so a refused deploy leaves no run behind.
	runID := store.NewRunID(time.Now())
	ctx, lockLost := context.WithCancelCause(ctx)
	defer lockLost(nil)
	release, err := holdLock(ctx, st, env.Name, runID, takeOver, c.ErrOrStderr(), lockLost)
	if err != nil {
		return &exitError{code: ExitFailed, err: fmt.Errorf("deploy refused: %w", err)}
	}
	defer release()
	plan, _ := json.Marshal(p)
	run, err := st.CreateRun(ctx, store.Run{ID: runID, Env: env.Name, Pipeline: p.Name, Version: version, Artifact: artifact,
		SHA256: rel.SHA256, Owner: store.ProcessOwner(), Plan: plan})
	if err != nil {
		return err
	}
	eng := newEngine(env, hosts, bal, rel, st, run.ID)
	return execute(ctx, c, eng, st, run, p, nil, output, env.Verify, reportDir(cfg))
}

func newEngine(env *config.Environment, hosts map[string]engine.Host, bal lb.Balancer, rel host.Release, st store.Store, runID string) *engine.Engine {
	e := &engine.Engine{
		LB: bal, Hosts: hosts, Release: rel, Journal: engine.StoreJournal{Store: st, RunID: runID},
		MinHealthy: minHealthy(env), Rollback: env.Rollback,
	}
	if r := env.Strategy.Rolling; r != nil {
		e.UploadParallel = r.UploadParallel
		e.HealthTimeout = time.Duration(r.HealthTimeout)
	}
	return e
}

// execute runs p, shows it, journals the outcome and maps it to an exit
// code. With a verify block, the load verifier fires at the load balancer
// for the whole run: a failed request beyond its thresholds stops the run
// and rolls it back, and its report is written beside the journal.
func execute(ctx context.Context, c *cobra.Command, eng *engine.Engine, st store.Store, run store.Run, p *pipeline.Pipeline,
	skip map[engine.TaskKey]bool, output string, verify *config.Verify, reportDir string) error {
	header := fmt.Sprintf("run %s: %s %s to %s", run.ID, p.Name, run.Version, run.Env)
	view := newRunView(c.OutOrStdout(), output, header, p.Hosts(), countTasks(p))
	eng.OnEvent = view.Event
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	var ver *verifier
	if verify != nil {
		var err error
		if ver, err = startVerifier(verify, reportDir, run.ID); err != nil {
			return badInput(err)
		}
		eng.OnEvent = func(e engine.Event) { view.Event(e); ver.mark(e) }
		go ver.watch(runCtx, stopRun)
	}
	res := eng.Run(runCtx, p, skip)
	view.Close()
	if cause := context.Cause(runCtx); res.Err != nil && cause != nil && !errors.Is(cause, context.Canceled) {
		// Say why the run stopped: the verifier, or a lost lock.
		res.Err = fmt.Errorf("%w (%v)", cause, res.Err)
	}
	if ver != nil {
		summary := c.OutOrStdout()
		if output == outputJSON {
			summary = c.ErrOrStderr()
		}
		pass, err := ver.finish(summary)
		if err != nil {
			fmt.Fprintf(c.ErrOrStderr(), "warning: %v\n", err)
		}
		if !pass && res.Status == engine.StatusSucceeded {
			// The hosts are on the new version but requests failed on the
			// way: that is not a deploy to keep.
			res.Err = errors.New("the load verifier's thresholds failed (see its report above)")
			res.Stranded = eng.RollBack(context.Background(), res.Changed)
			res.Status = engine.StatusRolledBack
			if len(res.Stranded) > 0 {
				res.Status = engine.StatusNeedsAttention
			}
		}
	}
	upd := store.RunUpdate{Status: storeStatus(res), EndedAt: time.Now()}
	if res.Err != nil {
		upd.Error = res.Err.Error()
	}
	if err := st.UpdateRun(context.Background(), run.ID, upd); err != nil {
		fmt.Fprintf(c.ErrOrStderr(), "warning: could not journal the end of the run: %v\n", err)
	}
	if output != outputJSON {
		fmt.Fprintf(c.OutOrStdout(), "run %s %s\n", run.ID, upd.Status)
	}
	return exitFor(res)
}

// reportDir is where a run's verifier reports go: beside the journal.
func reportDir(cfg *config.Deploy) string {
	return filepath.Join(filepath.Dir(cfg.State), "reports")
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

func newPlanCmd() *cobra.Command {
	var cfgPath, pipelineName string
	cmd := &cobra.Command{
		Use:   "plan ENV",
		Short: "Print what a deploy to ENV would run, in the hand-written pipeline form",
		Long: `Print the pipeline a deploy to ENV runs: the environment's strategy expanded
into stages, jobs and tasks (or a hand-written pipeline with --pipeline), in the
form zerodown.yaml accepts, with an estimated duration. It contacts nothing;
at deploy time hosts already on the version are skipped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := loadDeployConfig(cfgPath)
			if err != nil {
				return err
			}
			env, err := environment(cfg, args[0])
			if err != nil {
				return err
			}
			p, err := pipelineFor(cfg, env, pipelineName, nil)
			if err != nil {
				return err
			}
			return printPlan(c, p, nil)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVar(&pipelineName, "pipeline", "", "a hand-written pipeline instead of the strategy")
	return cmd
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
	r, err := st.GetRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r, badInput(fmt.Errorf("no run %s (see zerodown history)", id))
	}
	return r, err
}

func newHistoryCmd() *cobra.Command {
	var cfgPath string
	var limit int
	cmd := &cobra.Command{
		Use:   "history [ENV]",
		Short: "List runs, newest first",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withStore(cfgPath, func(ctx context.Context, _ *config.Deploy, st store.Store) error {
				env := ""
				if len(args) == 1 {
					env = args[0]
				}
				runs, err := st.ListRuns(ctx, env, limit)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "RUN\tENV\tVERSION\tSTATUS\tSTARTED\tTOOK\tBY")
				for _, r := range runs {
					took := "-"
					if !r.EndedAt.IsZero() {
						took = r.EndedAt.Sub(r.StartedAt).Round(100 * time.Millisecond).String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Env, r.Version, r.Status,
						r.StartedAt.Local().Format("2006-01-02 15:04:05"), took, r.Owner)
				}
				return tw.Flush()
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().IntVarP(&limit, "limit", "n", 20, "show at most this many runs (0: all)")
	return cmd
}

func newShowCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "show RUN",
		Short: "Show a run: every task with its duration, and its events",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				out := c.OutOrStdout()
				fmt.Fprintf(out, "run %s: %s %s to %s, %s\n", r.ID, r.Pipeline, r.Version, r.Env, r.Status)
				fmt.Fprintf(out, "started %s by %s\n", r.StartedAt.Local().Format(time.RFC3339), r.Owner)
				if r.Error != "" {
					fmt.Fprintf(out, "error: %s\n", r.Error)
				}
				tasks, err := st.Tasks(ctx, r.ID)
				if err != nil {
					return err
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
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", at, took, t.Stage, label, t.Status, firstLine(t.Error))
				}
				return tw.Flush()
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	return cmd
}

func newResumeCmd() *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "resume RUN",
		Short: "Continue a run that was interrupted (its process killed), from where it stopped",
		Long: `Continue a run whose zerodown process died: tasks that passed are not run again,
the others run (every task is safe to repeat). The run's lock is taken over when
its process is gone.

` + exitCodesHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return continueRun(c, cfgPath, args[0], output, false)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json")
	return cmd
}

func newRollbackCmd() *cobra.Command {
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "rollback RUN",
		Short: "Undo a run: put every host it touched back on its previous release, attached and healthy",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return continueRun(c, cfgPath, args[0], output, true)
		},
	}
	addConfigFlag(cmd, &cfgPath)
	cmd.Flags().StringVarP(&output, "output", "o", outputAuto, "auto, live, log or json")
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
	run, err := getRun(ctx, st, runID)
	if err != nil {
		return err
	}
	if !rollback && run.Status != store.RunRunning {
		return badInput(fmt.Errorf("run %s ended (%s); only a run whose process died can be resumed", run.ID, run.Status))
	}
	env, err := environment(cfg, run.Env)
	if err != nil {
		return err
	}
	var p pipeline.Pipeline
	if err := json.Unmarshal(run.Plan, &p); err != nil {
		return fmt.Errorf("run %s: its plan in the journal is unreadable: %w", run.ID, err)
	}
	artifact := run.Artifact
	rel, err := release(artifact, run.Version, cfg.App)
	if err != nil {
		return err
	}
	if rel.SHA256 != run.SHA256 {
		return badInput(fmt.Errorf("artifact %s changed since run %s started (sha256 %s, was %s)", artifact, run.ID, rel.SHA256, run.SHA256))
	}
	bal, err := balancerFor(env)
	if err != nil {
		return badInput(err)
	}
	hosts, err := hostsFor(env)
	if err != nil {
		return badInput(err)
	}
	ctx, lockLost := context.WithCancelCause(ctx)
	defer lockLost(nil)
	release, err := holdLock(ctx, st, env.Name, run.ID, true, c.ErrOrStderr(), lockLost)
	if err != nil {
		return &exitError{code: ExitFailed, err: err}
	}
	defer release()
	_ = st.UpdateRun(ctx, run.ID, store.RunUpdate{Status: store.RunRunning})
	eng := newEngine(env, hosts, bal, rel, st, run.ID)
	if !rollback {
		skip, err := engine.PassedTasks(ctx, st, run.ID)
		if err != nil {
			return err
		}
		return execute(ctx, c, eng, st, run, &p, skip, output, env.Verify, reportDir(cfg))
	}
	touched, err := engine.TouchedHosts(ctx, st, run.ID)
	if err != nil {
		return err
	}
	view := newRunView(c.OutOrStdout(), output, fmt.Sprintf("run %s: rolling back %s", run.ID, strings.Join(touched, ", ")), touched, 0)
	eng.OnEvent = view.Event
	stranded := eng.RollBack(ctx, touched)
	view.Close()
	res := engine.Result{Status: engine.StatusRolledBack, Changed: touched, Stranded: stranded, Err: errors.New("rolled back on request")}
	if len(stranded) > 0 {
		res.Status = engine.StatusNeedsAttention
	}
	_ = st.UpdateRun(context.Background(), run.ID, store.RunUpdate{Status: storeStatus(res), EndedAt: time.Now(), Error: res.Err.Error()})
	if res.Status == engine.StatusRolledBack {
		fmt.Fprintf(c.OutOrStdout(), "run %s rolled back: %s\n", run.ID, strings.Join(touched, ", "))
		return nil
	}
	return exitFor(res)
}

func newApproveCmd() *cobra.Command {
	var cfgPath, stage string
	cmd := &cobra.Command{
		Use:   "approve RUN --stage STAGE",
		Short: "Let a run waiting at a manual gate go on",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				if stage == "" {
					tasks, err := st.Tasks(ctx, r.ID)
					if err != nil {
						return err
					}
					for _, t := range tasks {
						if t.Kind == string(pipeline.KindApprove) && t.Status == store.TaskRunning {
							stage = t.Stage
						}
					}
					if stage == "" {
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
	return cmd
}

func newAbortCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "abort RUN",
		Short: "Ask a running deploy to stop at its next safe point and roll back",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withRun(cfgPath, args[0], func(ctx context.Context, st store.Store, r store.Run) error {
				if r.Status != store.RunRunning {
					return badInput(fmt.Errorf("run %s is not running (%s)", r.ID, r.Status))
				}
				if err := st.RequestAbort(ctx, r.ID); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "abort requested; run %s stops at its next safe point and rolls back\n", r.ID)
				return nil
			})
		},
	}
	addConfigFlag(cmd, &cfgPath)
	return cmd
}

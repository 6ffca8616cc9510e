package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/deploy"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/store"
)

// runOutput shows a run from its start to its end in one of the output
// modes: the live view or log lines for people, JSON lines for CD servers
// (the schema is in docs/deploy.md).
type runOutput struct {
	w    io.Writer
	warn io.Writer
	mode string
	view *runView
	// rollback: the run is `zerodown rollback RUN`, for which rolled back
	// is success.
	rollback bool
}

func newRunOutput(c *cobra.Command, mode string) *runOutput {
	return &runOutput{w: c.OutOrStdout(), warn: c.ErrOrStderr(), mode: mode}
}

func (r *runOutput) options(cfg *config.Deploy, st store.Store) deploy.Options {
	return deploy.Options{Config: cfg, Store: st, Warn: r.warn, OnStart: r.start, OnEvent: r.event}
}

// jsonLine writes one line of `-o json`.
func (r *runOutput) jsonLine(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(r.w, "%s\n", b)
}

func (r *runOutput) start(s deploy.Start) {
	r.rollback = s.Mode == "rollback"
	header := fmt.Sprintf("run %s: %s %s to %s", s.RunID, s.Pipeline, s.Version, s.Env)
	switch s.Mode {
	case "resume":
		header = fmt.Sprintf("run %s: resuming %s %s to %s", s.RunID, s.Pipeline, s.Version, s.Env)
	case "rollback":
		header = fmt.Sprintf("run %s: rolling back %s on %s", s.RunID, s.Version, s.Env)
	}
	if r.mode == outputJSON {
		r.jsonLine(struct {
			Type string       `json:"type"`
			Run  deploy.Start `json:"run"`
		}{"run_started", s})
	}
	r.view = newRunView(r.w, r.mode, header, s.Hosts, s.Tasks)
}

// closeView ends the live view of a run that stopped without an outcome
// to show.
func (r *runOutput) closeView() {
	if r.view != nil {
		r.view.Close()
	}
}

func (r *runOutput) event(e engine.Event) {
	if r.view != nil {
		r.view.Event(e)
	}
}

// finished shows how the run ended and returns the error that carries its
// exit code: one message per failure, said once.
func (r *runOutput) finished(o *deploy.Outcome) error {
	if r.view != nil {
		r.view.Close()
	}
	err := outcomeError(o)
	code := exitCode(o.Result)
	if r.rollback && o.Result.Status == engine.StatusRolledBack {
		err, code = nil, ExitOK
	}
	if r.mode == outputJSON {
		if o.Verify != nil {
			r.jsonLine(struct {
				Type    string               `json:"type"`
				Summary deploy.VerifySummary `json:"summary"`
			}{"verify", o.Verify.Summary()})
		}
		fin := runFinished{Type: "run_finished", Run: o.Run.ID, Status: string(o.Run.Status), ExitCode: code, Stranded: o.Result.Stranded}
		if o.NothingToDo {
			fin.Status = "nothing_to_do"
		}
		if o.Result.Err != nil && err != nil {
			fin.Error = o.Result.Err.Error()
		}
		r.jsonLine(fin)
		return err
	}
	if v := o.Verify; v != nil {
		fmt.Fprintln(r.w, "\nload verifier:")
		if v.Report != nil {
			_ = v.Report.WriteText(r.w)
		}
		if v.LB != nil {
			fmt.Fprintf(r.w, "load balancer: %d requests failed on a target and were retried on another; %d failures toward targets\n",
				v.LB.Retries, v.LB.TargetErrors)
		}
		if v.Note != "" {
			fmt.Fprintf(r.w, "note: %s\n", v.Note)
		}
		if v.HTML != "" {
			fmt.Fprintf(r.w, "report: %s (JSON: %s)\n", v.HTML, v.JSON)
		}
	}
	if !o.NothingToDo {
		fmt.Fprintf(r.w, "run %s %s\n", o.Run.ID, o.Run.Status)
	}
	return err
}

// runFinished is the last line of `-o json`.
type runFinished struct {
	Type     string            `json:"type"`
	Run      string            `json:"run,omitempty"`
	Status   string            `json:"status"`
	ExitCode int               `json:"exit_code"`
	Error    string            `json:"error,omitempty"`
	Stranded map[string]string `json:"stranded,omitempty"`
}

package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zerodown/zerodown/internal/lb/builtin"
)

const (
	defaultLBAdmin = "http://127.0.0.1:9100"
	envLBAdmin     = "ZERODOWN_LB_ADMIN"
	envLBToken     = "ZERODOWN_LB_TOKEN"
)

// targetsOptions are the flags every `lb targets` subcommand shares.
type targetsOptions struct {
	admin     string
	tokenFile string
	output    string
	retryFor  time.Duration
}

func newLBTargetsCmd() *cobra.Command {
	o := &targetsOptions{}
	cmd := &cobra.Command{
		Use:   "targets",
		Short: "List, attach, detach and re-weight the targets of a running zerodown lb",
		Long: `Talk to the admin API of a running 'zerodown lb' to see its pools and change
which targets (backend ip:port addresses) get traffic.

The admin URL comes from --admin, else $` + envLBAdmin + `, else ` + defaultLBAdmin + `.
The token comes from --token-file, else $` + envLBToken + `; 'zerodown lb' writes one
into admin.token_file (0600) on first start when the config sets none.

Exit codes: 0 done; 1 the call failed (admin API unreachable, a wait ran out,
server error); 2 bad input (bad arguments, no token, or the API answered 400,
401 or 404).`,
		Example: `  zerodown lb targets list --token-file lb.token
  zerodown lb targets detach --pool hello 127.0.0.1:8101 --wait
  zerodown lb targets attach --pool hello 127.0.0.1:8101 --wait --timeout 1m
  zerodown lb targets weight --pool hello 127.0.0.1:8102 5`,
		// Without a subcommand: help, or a clear error for a misspelt one
		// (cobra would otherwise print help and exit 0).
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return badInput(fmt.Errorf("unknown command %q for %q (want list, attach, detach or weight)", args[0], c.CommandPath()))
			}
			return c.Help()
		},
	}
	o.addFlags(cmd.PersistentFlags(), true)
	cmd.AddCommand(
		newLBTargetsListCmd(o),
		newLBTargetsAttachCmd(o),
		newLBTargetsDetachCmd(o),
		newLBTargetsWeightCmd(o),
	)
	return cmd
}

// addFlags registers the admin API flags; retries only for calls that are
// safe to repeat.
func (o *targetsOptions) addFlags(pf *pflag.FlagSet, retries bool) {
	pf.StringVar(&o.admin, "admin", defaultLBAdmin, "base URL of the lb admin API (env "+envLBAdmin+")")
	pf.StringVar(&o.tokenFile, "token-file", "", "file holding the admin token (else env "+envLBToken+")")
	pf.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	if retries {
		pf.DurationVar(&o.retryFor, "retry-for", 10*time.Second, "keep trying this long while the admin API cannot be reached (a restart)")
	}
}

// client builds the admin API client from the shared flags and environment.
// Everything it rejects is the user's to fix, hence badInput.
func (o *targetsOptions) client(c *cobra.Command) (*builtin.Client, error) {
	if o.output != "text" && o.output != "json" {
		return nil, badInput(fmt.Errorf("--output must be text or json, got %q", o.output))
	}
	admin := o.admin
	if !c.Flags().Changed("admin") {
		if env := os.Getenv(envLBAdmin); env != "" {
			admin = env
		}
	}
	token, err := o.token()
	if err != nil {
		return nil, badInput(err)
	}
	cl, err := builtin.New(builtin.Config{Admin: admin, Token: token, RetryFor: o.retryFor})
	if err != nil {
		return nil, badInput(err)
	}
	return cl, nil
}

// token reads the admin token. It never puts the token in an error.
func (o *targetsOptions) token() (string, error) {
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		// Files written by editors or `echo` end in a newline.
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", o.tokenFile)
		}
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv(envLBToken)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no admin token: pass --token-file (the file named by admin.token_file in lb.yaml) or set %s", envLBToken)
}

func newLBTargetsListCmd(o *targetsOptions) *cobra.Command {
	var pool string
	cmd := &cobra.Command{
		Use:   "list [--pool P]",
		Short: "List pools and their targets with state, in-flight requests and counters",
		Long: `List every pool (or only --pool) and its targets: state (initial, healthy,
unhealthy, draining, unused), requests in flight, weight, and the requests and
errors counted since the target was attached. The reason of the last failed
health check, if any, is printed below the table.

With --output json the answer is {"pools": [Pool, ...]} as the admin API gives it.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			var pools []builtin.Pool
			if c.Flags().Changed("pool") {
				if pool == "" {
					return badInput(errors.New("--pool is empty"))
				}
				p, err := cl.Pool(c.Context(), pool)
				if err != nil {
					return apiFailure(err)
				}
				pools = []builtin.Pool{p}
			} else if pools, err = cl.Pools(c.Context()); err != nil {
				return apiFailure(err)
			}
			if o.output == "json" {
				if pools == nil {
					pools = []builtin.Pool{} // [] rather than null for scripts
				}
				return writeJSON(c.OutOrStdout(), struct {
					Pools []builtin.Pool `json:"pools"`
				}{pools})
			}
			return writeTargetTable(c.OutOrStdout(), pools)
		},
	}
	cmd.Flags().StringVarP(&pool, "pool", "p", "", "list only this pool")
	return cmd
}

func newLBTargetsAttachCmd(o *targetsOptions) *cobra.Command {
	var (
		pool    string
		weight  int
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "attach --pool P TARGET [--weight N] [--wait] [--timeout 30s]",
		Short: "Add a target to a pool (it gets traffic once its health checks pass)",
		Long: `Add TARGET (ip:port) to pool P. A new target starts 'initial' and gets no
traffic until its health checks pass and it becomes 'healthy'.

--weight sets its share of new requests (default: the current weight, 1 for a
new target). --wait returns only once the target is healthy, or fails after
--timeout with the state it reached.`,
		Args: exactArgs("TARGET"),
		RunE: func(c *cobra.Command, args []string) error {
			req := builtin.AttachRequest{Target: args[0], Wait: wait}
			if err := checkPoolTarget(pool, req.Target); err != nil {
				return err
			}
			if c.Flags().Changed("weight") {
				if weight < 0 {
					return badInput(fmt.Errorf("--weight must be 0 or more, got %d", weight))
				}
				req.Weight = &weight
			}
			var err error
			if req.Timeout, err = waitTimeout(c, wait, timeout); err != nil {
				return err
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			t, err := cl.Attach(c.Context(), pool, req)
			return o.printTarget(c.OutOrStdout(), pool, t, err)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&pool, "pool", "p", "", "pool to attach to (required)")
	f.IntVar(&weight, "weight", 0, "share of new requests relative to the pool's other targets (default: keep the current weight, 1 for a new target)")
	f.BoolVar(&wait, "wait", false, "return only once the target is healthy")
	f.DurationVar(&timeout, "timeout", builtin.DefaultWaitTimeout, "longest --wait")
	return cmd
}

func newLBTargetsDetachCmd(o *targetsOptions) *cobra.Command {
	var (
		pool    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "detach --pool P TARGET [--wait] [--timeout 30s]",
		Short: "Stop sending new requests to a target and let in-flight ones finish",
		Long: `Detach TARGET (ip:port) from pool P. When the command returns, no new request
will be sent to it; requests in flight finish, and the target becomes 'unused'
when none is left or the pool's deregistration_delay passes (then the rest are
cut and counted in 'cut').

--wait returns only once the target is unused, so it is safe to stop it; it
fails after --timeout with the state and in-flight count it reached.`,
		Args: exactArgs("TARGET"),
		RunE: func(c *cobra.Command, args []string) error {
			req := builtin.DetachRequest{Target: args[0], Wait: wait}
			if err := checkPoolTarget(pool, req.Target); err != nil {
				return err
			}
			var err error
			if req.Timeout, err = waitTimeout(c, wait, timeout); err != nil {
				return err
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			t, err := cl.Detach(c.Context(), pool, req)
			return o.printTarget(c.OutOrStdout(), pool, t, err)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&pool, "pool", "p", "", "pool to detach from (required)")
	f.BoolVar(&wait, "wait", false, "return only once the target is drained (unused)")
	f.DurationVar(&timeout, "timeout", builtin.DefaultWaitTimeout, "longest --wait")
	return cmd
}

func newLBTargetsWeightCmd(o *targetsOptions) *cobra.Command {
	var pool string
	cmd := &cobra.Command{
		Use:   "weight --pool P TARGET N",
		Short: "Change a target's share of new requests",
		Long: `Set the weight of TARGET (ip:port) in pool P to N. A target gets new requests
in proportion to its weight among the pool's healthy targets: with weights 1 and
9, the first gets about 10%, which is how a canary is given a small share.`,
		Args: exactArgs("TARGET", "N"),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkPoolTarget(pool, args[0]); err != nil {
				return err
			}
			n, err := strconv.Atoi(args[1])
			if err != nil || n < 0 {
				return badInput(fmt.Errorf("weight %q: want a whole number, 0 or more", args[1]))
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			t, err := cl.SetWeight(c.Context(), pool, args[0], n)
			return o.printTarget(c.OutOrStdout(), pool, t, err)
		},
	}
	cmd.Flags().StringVarP(&pool, "pool", "p", "", "pool of the target (required)")
	return cmd
}

// noArgs and exactArgs replace cobra's checks so that wrong arguments say
// what was expected and exit 2.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return badInput(fmt.Errorf("%s takes no arguments, got %q (see '%s --help')", c.CommandPath(), args, c.CommandPath()))
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return badInput(fmt.Errorf("%s wants %s, got %d argument(s) (see '%s --help')",
				c.CommandPath(), strings.Join(names, " "), len(args), c.CommandPath()))
		}
		return nil
	}
}

// checkPoolTarget rejects a missing --pool or a TARGET that is not host:port
// before contacting the admin API.
func checkPoolTarget(pool, target string) error {
	if pool == "" {
		return badInput(errors.New("--pool is required"))
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" {
		return badInput(fmt.Errorf("target %q: want ip:port, such as 127.0.0.1:8101", target))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return badInput(fmt.Errorf("target %q: port must be 1-65535", target))
	}
	return nil
}

// waitTimeout validates --timeout and renders it for the API; it is an error
// to give --timeout without --wait, since it would be silently ignored.
func waitTimeout(c *cobra.Command, wait bool, d time.Duration) (string, error) {
	if !wait {
		if c.Flags().Changed("timeout") {
			return "", badInput(errors.New("--timeout only applies with --wait"))
		}
		return "", nil
	}
	if d <= 0 {
		return "", badInput(fmt.Errorf("--timeout must be positive, got %s", d))
	}
	return d.String(), nil
}

// apiFailure sets the exit code of a failed call: 2 when the admin API
// rejected what the user asked for (400, 401, 404), else 1.
func apiFailure(err error) error {
	var ae *builtin.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 400, 401, 404:
			return badInput(err)
		}
	}
	return err
}

// printTarget prints the target a call returned. A wait that ran out still
// returns the target as it was, which is printed before the error because it
// shows how far the target got.
func (o *targetsOptions) printTarget(w io.Writer, pool string, t builtin.Target, callErr error) error {
	if callErr != nil && t.Address == "" {
		return apiFailure(callErr)
	}
	var err error
	if o.output == "json" {
		err = writeJSON(w, t)
	} else {
		err = writeTargetTable(w, []builtin.Pool{{Name: pool, Targets: []builtin.Target{t}}})
	}
	if callErr != nil {
		return apiFailure(callErr)
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTargetTable prints one row per target; a pool without targets gets a
// row of dashes so that it still shows.
func writeTargetTable(w io.Writer, pools []builtin.Pool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tTARGET\tSTATE\tIN-FLIGHT\tWEIGHT\tREQUESTS\tERRORS")
	var reasons []string
	for _, p := range pools {
		if len(p.Targets) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\n", p.Name)
		}
		for _, t := range p.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", p.Name, t.Address, t.State, t.InFlight, t.Weight, t.Requests, t.Errors)
			if t.LastHealthError != "" {
				reasons = append(reasons, fmt.Sprintf("%s %s: last health check: %s", p.Name, t.Address, t.LastHealthError))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(reasons) > 0 {
		fmt.Fprintln(w)
		for _, r := range reasons {
			fmt.Fprintln(w, r)
		}
	}
	return nil
}

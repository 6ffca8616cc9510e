package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

const (
	defaultAgentURL = "http://127.0.0.1:7101"
	envAgentURL     = "ZERODOWN_AGENT"
	envAgentToken   = "ZERODOWN_AGENT_TOKEN"
)

// agentOptions are the flags every agent client subcommand has.
type agentOptions struct {
	url       string
	tokenFile string
	caFile    string
	output    string
	retryFor  time.Duration
}

const agentClientHelp = `

The agent URL comes from --agent, else $` + envAgentURL + `, else ` + defaultAgentURL + `.
The token comes from --token-file, else $` + envAgentToken + `; the agent writes one
into <root>/agent.token on first start when its config sets none.

Exit codes: 0 done; 1 the call failed (agent unreachable, an activation failed,
server error); 2 bad input (bad arguments, no token, or the agent answered 400,
401 or 404).`

func (o *agentOptions) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.url, "agent", defaultAgentURL, "base URL of the agent API (env "+envAgentURL+")")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the agent token (else env "+envAgentToken+")")
	f.StringVar(&o.caFile, "ca-file", "", "PEM file of the CA that signed the agent's certificate, for https")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.DurationVar(&o.retryFor, "retry-for", 10*time.Second, "keep reading this long while the agent cannot be reached (a restart)")
}

// client builds the API client from the flags and environment. Everything
// it rejects is the user's to fix, hence badInput.
func (o *agentOptions) client(c *cobra.Command) (*agent.Client, error) {
	if o.output != "text" && o.output != "json" {
		return nil, badInput(fmt.Errorf("--output must be text or json, got %q", o.output))
	}
	url := o.url
	if !c.Flags().Changed("agent") {
		if env := os.Getenv(envAgentURL); env != "" {
			url = env
		}
	}
	token, err := o.token()
	if err != nil {
		return nil, badInput(err)
	}
	hc := &http.Client{}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, badInput(fmt.Errorf("reading --ca-file: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, badInput(fmt.Errorf("--ca-file %s holds no PEM certificate", o.caFile))
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = tr
	}
	cl, err := agent.NewClient(agent.ClientConfig{URL: url, Token: token, HTTPClient: hc, RetryFor: o.retryFor})
	if err != nil {
		return nil, badInput(err)
	}
	return cl, nil
}

// token reads the agent token. It never puts the token in an error.
func (o *agentOptions) token() (string, error) {
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", o.tokenFile)
		}
		return t, nil
	}
	if t := strings.TrimSpace(os.Getenv(envAgentToken)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no agent token: pass --token-file (<root>/agent.token on the host, or token_file of agent.yaml) or set %s", envAgentToken)
}

// agentFailure sets the exit code of a failed call: 2 when the agent
// refused what the user asked for (400, 401, 404), else 1.
func agentFailure(err error) error {
	var ae *agent.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 400, 401, 404, 413:
			return badInput(err)
		}
	}
	return err
}

func newAgentStatusCmd(o *agentOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the current release, its process, health and restarts",
		Long: `Show what the agent runs: the current and previous release, the app's state
(running, starting, backoff, stopped), pid, uptime, health, restarts, and an
activation in progress.

With --output json the answer is the agent's GET /v1/status.` + agentClientHelp,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			s, err := cl.AgentStatus(c.Context())
			if err != nil {
				return agentFailure(err)
			}
			if o.output == "json" {
				return writeJSON(c.OutOrStdout(), s)
			}
			return writeAgentStatus(c.OutOrStdout(), s)
		},
	}
	o.flags(cmd)
	return cmd
}

func writeAgentStatus(w io.Writer, s agent.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tPID\tHEALTHY\tUPTIME\tRESTARTS\tPREVIOUS\tPORT")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", orDash(s.Version), s.State, pidText(s.PID), yesNo(s.Healthy),
		(time.Duration(s.UptimeSeconds) * time.Second).String(), s.Restarts, orDash(s.Previous), s.Port)
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.HealthError != "" {
		fmt.Fprintln(w, "last health check:", s.HealthError)
	}
	if s.LastExit != "" {
		fmt.Fprintln(w, "last exit:", s.LastExit)
	}
	if a := s.Activation; a != nil {
		fmt.Fprintf(w, "%s of %s in progress (from %s), phase %s, since %s\n", a.Kind, orDash(a.Version), orDash(a.From), a.Phase, a.Since.Format(time.RFC3339))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func newAgentReleasesCmd(o *agentOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "releases",
		Short: "List the releases stored on the host",
		Long: `List the releases on the host, oldest upload first: version, whether it is the
current or previous one, artifact size, upload time and sha256; a release
whose stored spec is damaged shows what is wrong instead.

With --output json the answer is {"releases": [...]} as GET /v1/releases gives it.` + agentClientHelp,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			list, err := cl.Releases(c.Context())
			if err != nil {
				return agentFailure(err)
			}
			if o.output == "json" {
				if list == nil {
					list = []agent.ReleaseInfo{}
				}
				return writeJSON(c.OutOrStdout(), struct {
					Releases []agent.ReleaseInfo `json:"releases"`
				}{list})
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tROLE\tFORMAT\tSIZE\tUPLOADED\tSHA256")
			for _, r := range list {
				role := "-"
				switch {
				case r.Current:
					role = "current"
				case r.Previous:
					role = "previous"
				}
				if r.Error != "" {
					fmt.Fprintf(tw, "%s\t%s\tdamaged: %s\n", r.Version, role, r.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Version, role, r.Format, r.Size, r.UploadedAt.Format(time.RFC3339), r.SHA256[:min(12, len(r.SHA256))])
			}
			return tw.Flush()
		},
	}
	o.flags(cmd)
	return cmd
}

// artifactFormat guesses the format from the file name.
func artifactFormat(path string) string {
	switch lower := strings.ToLower(path); {
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return host.FormatTarGz
	case strings.HasSuffix(lower, ".zip"):
		return host.FormatZip
	}
	return host.FormatFile
}

func newAgentUploadCmd(o *agentOptions) *cobra.Command {
	var version, specPath, format, name, digest string
	cmd := &cobra.Command{
		Use:   "upload ARTIFACT --version V --spec app.yaml",
		Short: "Store a release on the host (a tar.gz, a zip or a single executable)",
		Long: `Upload ARTIFACT as release V with the app spec in app.yaml (the keys of the
app: block of zerodown.yaml: run, env, health, stop, hooks). The agent checks the
sha256 while it receives the artifact and keeps nothing when it does not match.

--format is guessed from the name: .tar.gz/.tgz, .zip, else a single file,
stored under --name (default: ARTIFACT's file name) and made executable.
--sha256 sends the digest you expect instead of computing it here, so the agent
verifies the file against it.

Uploading a version the host has with the same artifact and spec does nothing;
with a different one it fails: a version never changes.` + agentClientHelp,
		Example: `  zerodown agent upload hello-1.4.tar.gz --version 1.4 --spec app.yaml
  zerodown agent upload ./hello --version 1.4 --spec app.yaml --token-file agent.token`,
		Args: exactArgs("ARTIFACT"),
		RunE: func(c *cobra.Command, args []string) error {
			path := args[0]
			if version == "" {
				return badInput(errors.New("--version is required"))
			}
			if specPath == "" {
				return badInput(errors.New("--spec is required: the app spec file (run, env, health, stop, hooks)"))
			}
			spec, err := config.LoadApp(specPath)
			if err != nil {
				return badInput(err)
			}
			if format == "" {
				format = artifactFormat(path)
			}
			if format == host.FormatFile && name == "" {
				name = filepath.Base(path)
			}
			fi, err := os.Stat(path)
			if err != nil {
				return badInput(fmt.Errorf("artifact: %w", err))
			}
			if !fi.Mode().IsRegular() {
				return badInput(fmt.Errorf("artifact %s is not a file", path))
			}
			if digest == "" {
				if digest, err = fileSHA256(path); err != nil {
					return err
				}
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			res, err := cl.Put(c.Context(), host.Release{
				Version: version, SHA256: digest, Format: format, Name: name, Size: fi.Size(), Spec: *spec,
				Open: func() (io.ReadCloser, error) { return os.Open(path) },
			})
			if err != nil {
				return agentFailure(err)
			}
			if o.output == "json" {
				return writeJSON(c.OutOrStdout(), res)
			}
			switch {
			case res.Unchanged:
				fmt.Fprintf(c.OutOrStdout(), "%s is on the host already with sha256 %s; nothing to do\n", version, res.Release.SHA256)
			default:
				fmt.Fprintf(c.OutOrStdout(), "stored %s: %d bytes, sha256 %s, %d bytes unpacked\n", version, res.Release.Size, res.Release.SHA256, res.Release.Unpacked)
			}
			if len(res.Pruned) > 0 {
				fmt.Fprintf(c.OutOrStdout(), "deleted old releases to keep keep_releases: %s\n", strings.Join(res.Pruned, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "release version (required)")
	f.StringVar(&specPath, "spec", "", "app spec file (required)")
	f.StringVar(&format, "format", "", "tar.gz, zip or file (default: from the file name)")
	f.StringVar(&name, "name", "", "file name in the release for --format file (default: the artifact's)")
	f.StringVar(&digest, "sha256", "", "expected sha256 of the artifact (default: computed here)")
	o.flags(cmd)
	return cmd
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hash artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash artifact %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func newAgentActivateCmd(o *agentOptions) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "activate VERSION [--timeout 5m]",
		Short: "Switch the app to a stored release once it passes its health check",
		Long: `Make VERSION the running release: run its before_start hooks, check it on a
spare port (preflight), stop the running release, switch current, start VERSION
and wait until its health check passes. If it does not, the previous release is
put back and the command fails with VERSION's last output lines.

Returns when VERSION is healthy, or when the previous release is back.
--timeout bounds getting VERSION healthy (default: from its app spec).` + agentClientHelp,
		Args: exactArgs("VERSION"),
		RunE: func(c *cobra.Command, args []string) error {
			req := agent.ActivateRequest{Version: args[0]}
			if c.Flags().Changed("timeout") {
				if timeout <= 0 {
					return badInput(fmt.Errorf("--timeout must be positive, got %s", timeout))
				}
				req.Timeout = timeout.String()
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			res, err := cl.ActivateWith(progressTo(c), req)
			return o.printActivation(c, res, err)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "longest time to get the release healthy (default: from its app spec)")
	o.flags(cmd)
	return cmd
}

func newAgentRollbackCmd(o *agentOptions) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rollback [--timeout 5m]",
		Short: "Switch the app back to the previous release",
		Long: `Activate the previous release (the one that ran before the last successful
activation), behind its health check like any activation. Rolling back twice
returns to where you started.` + agentClientHelp,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			req := agent.RollbackRequest{}
			if c.Flags().Changed("timeout") {
				if timeout <= 0 {
					return badInput(fmt.Errorf("--timeout must be positive, got %s", timeout))
				}
				req.Timeout = timeout.String()
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			res, err := cl.RollbackWith(progressTo(c), req)
			return o.printActivation(c, res, err)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "longest time to get the release healthy (default: from its app spec)")
	o.flags(cmd)
	return cmd
}

// printActivation prints a result, or a failure with what runs now.
func (o *agentOptions) printActivation(c *cobra.Command, res agent.ActivateResult, err error) error {
	w := c.OutOrStdout()
	if err != nil {
		var ae *agent.APIError
		if o.output == "json" && errors.As(err, &ae) && ae.Failure != nil {
			_ = writeJSON(w, struct {
				Error   string                   `json:"error"`
				Failure *agent.ActivationFailure `json:"failure"`
			}{ae.Message, ae.Failure})
		}
		return agentFailure(err)
	}
	if o.output == "json" {
		return writeJSON(w, res)
	}
	if res.Unchanged {
		fmt.Fprintf(w, "%s is current and healthy already (pid %d); nothing to do\n", res.Version, res.PID)
		return nil
	}
	var phases []string
	for _, p := range res.Phases {
		phases = append(phases, fmt.Sprintf("%s %.0fms", p.Name, p.Millis))
	}
	was := "the first release"
	if res.From != "" {
		was = "was " + res.From
	}
	fmt.Fprintf(w, "%s is running and healthy (pid %d), %s; took %.0fms (%s)\n", res.Version, res.PID, was, res.Millis, strings.Join(phases, ", "))
	return nil
}

func newAgentLogsCmd(o *agentOptions) *cobra.Command {
	var (
		version string
		lines   int
	)
	cmd := &cobra.Command{
		Use:   "logs [--version V] [-n 100]",
		Short: "Print the last lines a release's app wrote (stdout and stderr)",
		Long: `Print the last lines of a release's output: what the app wrote to stdout and
stderr, with the agent's own notes (starts, stops, crashes, activations)
interleaved. Default: the current release, 100 lines (at most ` + fmt.Sprint(agent.MaxLogLines) + `).` + agentClientHelp,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if lines < 1 || lines > agent.MaxLogLines {
				return badInput(fmt.Errorf("-n must be from 1 to %d, got %d", agent.MaxLogLines, lines))
			}
			cl, err := o.client(c)
			if err != nil {
				return err
			}
			res, err := cl.Logs(c.Context(), version, lines)
			if err != nil {
				return agentFailure(err)
			}
			if o.output == "json" {
				return writeJSON(c.OutOrStdout(), res)
			}
			for _, l := range res.Lines {
				fmt.Fprintln(c.OutOrStdout(), l)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "release whose output to print (default: the current)")
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "how many lines")
	o.flags(cmd)
	return cmd
}

// progressTo reports an activation's progress on stderr, a line per step:
// stdout keeps only the result, for scripts.
func progressTo(c *cobra.Command) context.Context {
	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	w := c.ErrOrStderr()
	var mu sync.Mutex
	last := ""
	return host.WithProgress(ctx, func(msg string) {
		step, _, _ := strings.Cut(msg, " for ")
		mu.Lock()
		defer mu.Unlock()
		if step != last {
			last = step
			fmt.Fprintln(w, msg)
		}
	})
}

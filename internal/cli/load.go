package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/loadgen"
)

// Defaults of `zerodown load`.
const (
	defaultLoadRate     = 100.0
	defaultLoadDuration = 10 * time.Second
	defaultMinRate      = 0.99
	// defaultPostBody is sent by lanes whose method carries a body when no
	// --body is given.
	defaultPostBody = "zerodown load request body\n"
)

// loadOptions are the flags of `zerodown load`.
type loadOptions struct {
	rate           float64
	duration       time.Duration
	max            int
	method         string
	headers        []string
	body           string
	bodyFile       string
	mix            string
	expectBody     string
	expectEcho     bool
	versionHeader  string
	timeout        time.Duration
	maxLag         time.Duration
	maxConcurrency int
	client         string
	noKeepAlive    bool
	insecure       bool
	maxFailed      int64
	maxDropped     int64
	p99            time.Duration
	minRate        float64
	json           bool
	jtl            string
	html           string
	progress       time.Duration
	timelineRows   int
}

func newLoadCmd() *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load URL... [flags]",
		Short: "Fire requests at a constant rate and check that none fail",
		Long: `Fire HTTP requests at one or more URLs and report what became of each one.

Open model (the default, --rate): request i is due at start + i/rate whatever
the answers do. Latency is measured from the due time, so a stalled server
shows up as latency instead of being hidden by a client that waits (no
coordinated omission); how late requests started is reported separately as
start lag. A request that cannot start within --max-lag of its due time is
dropped and counts as failed. Requests in flight grow as needed, up to
--max-concurrency.

Closed loop (--max N): N connections each send the next request as soon as
the previous answer is complete, for throughput.

Every request gets exactly one outcome: ok, refused, reset, eof, timeout,
http_5xx, http_4xx, http_3xx, body_mismatch, truncated, dropped, aborted or
error. Only ok is a success: a 2xx answer whose whole body arrived and passed
the body check. Requests that Go's client silently retried on a new
connection after a reused one failed are counted separately ("retried").

The value of the --version-header in each answer is counted per second, so a
deploy shows as a version mix moving from the old version to the new one.

Thresholds decide the exit code: 0 when all pass, 1 when one fails, 2 for bad
input. By default no request may fail or be dropped and the achieved rate
must be at least 99% of --rate.

Examples:
  zerodown load http://127.0.0.1:8080/ --rate 200 --duration 30s
  zerodown load http://lb:8080/ --mix get=1,post=1 --expect-echo --p99 250ms
  zerodown load http://127.0.0.1:8080/ --max 50 --duration 10s
  zerodown load http://lb:8080/ --rate 500 --json --html report.html --jtl results.jtl

See docs/load.md for the outcomes, the JSON report and the JTL columns.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return badInput(errors.New("load: give at least one URL, such as http://127.0.0.1:8080/ (see 'zerodown load --help')"))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return runLoad(c, args, &o)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.Float64Var(&o.rate, "rate", defaultLoadRate, "open model: requests per second")
	f.DurationVar(&o.duration, "duration", defaultLoadDuration, "how long to send requests")
	f.IntVar(&o.max, "max", 0, "closed loop instead: this many connections, each sending as fast as answers come back")
	f.StringVarP(&o.method, "method", "X", http.MethodGet, "request method (ignored with --mix)")
	f.StringArrayVarP(&o.headers, "header", "H", nil, `request header "Name: value" (repeatable)`)
	f.StringVarP(&o.body, "body", "d", "", "request body, sent by POST, PUT and PATCH lanes (default: a short text)")
	f.StringVar(&o.bodyFile, "body-file", "", "read the request body from this file")
	f.StringVar(&o.mix, "mix", "", "methods and weights, such as get=1,post=1 (POSTs show failures that proxies hide by retrying GETs)")
	f.StringVar(&o.expectBody, "expect-body", "", "every 2xx answer must contain this text (else body_mismatch)")
	f.BoolVar(&o.expectEcho, "expect-echo", false, "answers to requests with a body must echo that body exactly (examples/hello's POST)")
	f.StringVar(&o.versionHeader, "version-header", loadgen.DefaultVersionHeader, "answer header that names the serving version")
	f.DurationVar(&o.timeout, "timeout", loadgen.DefaultTimeout, "bound on each request, from its start to the last byte of its answer")
	f.DurationVar(&o.maxLag, "max-lag", loadgen.DefaultMaxLag, "open model: a request not started this long after it was due is dropped")
	f.IntVar(&o.maxConcurrency, "max-concurrency", loadgen.DefaultMaxConcurrency, "open model: cap on requests in flight")
	f.StringVar(&o.client, "client", "auto", `HTTP client: "go" (net/http), "raw" (minimal HTTP/1.1, for throughput), or "auto" (raw for --max over http://, else go)`)
	f.BoolVar(&o.noKeepAlive, "no-keepalive", false, "open a new connection for every request")
	f.BoolVar(&o.insecure, "insecure", false, "accept any TLS certificate")
	f.Int64Var(&o.maxFailed, "max-failed", 0, "threshold: most failed requests allowed, dropped included (-1: no limit)")
	f.Int64Var(&o.maxDropped, "max-dropped", 0, "threshold: most dropped requests allowed (-1: no limit)")
	f.DurationVar(&o.p99, "p99", 0, "threshold: highest p99 latency allowed, from due time (0: no limit)")
	f.Float64Var(&o.minRate, "min-rate", defaultMinRate, "threshold: lowest achieved/target rate allowed, open model only (0: no limit)")
	f.BoolVar(&o.json, "json", false, "print the JSON report (docs/load.md) instead of the text summary")
	f.StringVar(&o.jtl, "jtl", "", "write every request to this file in JMeter's CSV result format")
	f.StringVar(&o.html, "html", "", "write a self-contained HTML report with charts to this file")
	f.DurationVar(&o.progress, "progress", time.Second, "print a progress line to stderr this often (0: never)")
	f.IntVar(&o.timelineRows, "timeline-rows", loadgen.DefaultTimelineRows, "bound on timeline rows (one per second until the run outlasts it)")
	return cmd
}

// loadConfig turns the command line into a generator config and thresholds.
func loadConfig(c *cobra.Command, args []string, o *loadOptions) (loadgen.Config, loadgen.Thresholds, error) {
	var cfg loadgen.Config
	var th loadgen.Thresholds
	changed := c.Flags().Changed
	if o.max < 0 {
		return cfg, th, fmt.Errorf("--max must be a positive number of connections, got %d", o.max)
	}
	if o.max > 0 && changed("rate") {
		return cfg, th, errors.New("--rate (open model) and --max (closed loop) exclude each other")
	}
	if o.max > 0 && changed("min-rate") {
		return cfg, th, errors.New("--min-rate applies to the open model (--rate) only")
	}
	if o.max > 0 && (changed("max-lag") || changed("max-concurrency")) {
		return cfg, th, errors.New("--max-lag and --max-concurrency apply to the open model (--rate) only")
	}
	if o.max == 0 && (math.IsNaN(o.rate) || math.IsInf(o.rate, 0) || o.rate <= 0) {
		return cfg, th, fmt.Errorf("--rate must be a positive number of requests per second, got %v", o.rate)
	}
	if o.duration <= 0 {
		return cfg, th, fmt.Errorf("--duration must be positive, got %s", o.duration)
	}
	if o.timeout <= 0 {
		return cfg, th, fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	}
	if o.maxLag <= 0 {
		return cfg, th, fmt.Errorf("--max-lag must be positive, got %s", o.maxLag)
	}
	if o.maxConcurrency <= 0 {
		return cfg, th, fmt.Errorf("--max-concurrency must be positive, got %d", o.maxConcurrency)
	}
	if o.maxFailed < -1 || o.maxDropped < -1 {
		return cfg, th, errors.New("--max-failed and --max-dropped must be 0 or more, or -1 for no limit")
	}
	if o.p99 < 0 {
		return cfg, th, fmt.Errorf("--p99 must not be negative, got %s", o.p99)
	}
	if math.IsNaN(o.minRate) || o.minRate < 0 || o.minRate > 1 {
		return cfg, th, fmt.Errorf("--min-rate must be a ratio from 0 to 1, such as 0.99, got %v", o.minRate)
	}
	if o.progress < 0 {
		return cfg, th, fmt.Errorf("--progress must not be negative, got %s", o.progress)
	}
	client := loadgen.ClientKind(o.client)
	switch o.client {
	case "auto":
		client = loadgen.ClientAuto
	case string(loadgen.ClientGo), string(loadgen.ClientRaw):
	default:
		return cfg, th, fmt.Errorf("--client %q: want auto, go or raw", o.client)
	}

	header := http.Header{}
	for _, h := range o.headers {
		name, value, err := loadgen.ParseHeader(h)
		if err != nil {
			return cfg, th, fmt.Errorf("--header: %w", err)
		}
		header.Add(name, value)
	}
	body := []byte(o.body)
	bodySet := changed("body")
	if o.bodyFile != "" {
		if bodySet {
			return cfg, th, errors.New("--body and --body-file exclude each other")
		}
		data, err := os.ReadFile(o.bodyFile)
		if err != nil {
			return cfg, th, fmt.Errorf("--body-file: %w", err)
		}
		body, bodySet = data, true
	}
	mix := []loadgen.MixEntry{{Method: strings.ToUpper(o.method), Weight: 1}}
	if o.mix != "" {
		if changed("method") {
			return cfg, th, errors.New("--method and --mix exclude each other: put the method in the mix")
		}
		m, err := loadgen.ParseMix(o.mix)
		if err != nil {
			return cfg, th, fmt.Errorf("--mix: %w", err)
		}
		mix = m
	}
	for _, u := range args {
		for _, m := range mix {
			t := loadgen.Target{
				Method: m.Method,
				URL:    u,
				Header: header,
				Weight: m.Weight,
			}
			if carriesBody(m.Method) || (bodySet && o.mix == "") {
				t.Body = body
				if !bodySet {
					t.Body = []byte(defaultPostBody)
				}
			}
			if o.expectEcho && len(t.Body) > 0 {
				t.ExpectEcho = true
			} else {
				t.ExpectBody = o.expectBody
			}
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	cfg.Duration = o.duration
	cfg.Timeout = o.timeout
	cfg.VersionHeader = o.versionHeader
	cfg.Client = client
	cfg.DisableKeepAlives = o.noKeepAlive
	cfg.InsecureSkipVerify = o.insecure
	cfg.TimelineRows = o.timelineRows
	if o.max > 0 {
		cfg.Connections = o.max
	} else {
		cfg.Rate = o.rate
		cfg.MaxLag = o.maxLag
		cfg.MaxConcurrency = o.maxConcurrency
		th.MinRate = o.minRate
	}
	th.MaxFailed = o.maxFailed
	th.MaxDropped = o.maxDropped
	th.P99 = o.p99
	return cfg, th, nil
}

func carriesBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

func runLoad(c *cobra.Command, args []string, o *loadOptions) error {
	cfg, th, err := loadConfig(c, args, o)
	if err != nil {
		return badInput(err)
	}
	stdout, stderr := c.OutOrStdout(), c.ErrOrStderr()

	// Files are created before the run so that a bad path fails at once.
	var jtlFile, htmlFile *os.File
	if o.jtl != "" {
		if jtlFile, err = os.Create(o.jtl); err != nil {
			return badInput(fmt.Errorf("--jtl: %w", err))
		}
		defer jtlFile.Close()
		cfg.JTL = jtlFile
	}
	if o.html != "" {
		if htmlFile, err = os.Create(o.html); err != nil {
			return badInput(fmt.Errorf("--html: %w", err))
		}
		defer htmlFile.Close()
	}
	if o.progress > 0 {
		cfg.OnSecond = progressPrinter(stderr, o.progress)
	}
	gen, err := loadgen.New(cfg)
	if err != nil {
		return badInput(err)
	}

	ctx := c.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	// The first Ctrl-C stops sending and reports; the handler is then
	// removed, so a second one kills the process.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	defer stop()
	if o.progress > 0 {
		if cfg.Connections > 0 {
			fmt.Fprintf(stderr, "load: %d connections for %s against %d target(s), %s client\n",
				cfg.Connections, cfg.Duration, len(cfg.Targets), gen.ClientKind())
		} else {
			fmt.Fprintf(stderr, "load: %v requests/s for %s against %d target(s), %s client\n",
				cfg.Rate, cfg.Duration, len(cfg.Targets), gen.ClientKind())
		}
	}
	rep, runErr := gen.Run(ctx)
	if rep == nil {
		return runErr
	}
	pass := rep.Evaluate(th)

	var outErr error
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		outErr = enc.Encode(rep)
	} else {
		outErr = rep.WriteText(stdout)
	}
	if htmlFile != nil {
		if err := rep.WriteHTML(htmlFile); err != nil {
			outErr = errors.Join(outErr, fmt.Errorf("--html: %w", err))
		} else if err := htmlFile.Close(); err != nil {
			outErr = errors.Join(outErr, fmt.Errorf("--html: %w", err))
		}
	}
	if jtlFile != nil {
		if err := jtlFile.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("--jtl: %w", err)
		}
	}
	if err := errors.Join(runErr, outErr); err != nil {
		return err
	}
	if !pass {
		failed := 0
		var names []string
		for _, t := range rep.Thresholds {
			if !t.Pass {
				failed++
				names = append(names, t.Name)
			}
		}
		return &exitError{code: ExitFailed, err: fmt.Errorf("load: %d of %d thresholds failed: %s",
			failed, len(rep.Thresholds), strings.Join(names, ", "))}
	}
	return nil
}

// progressPrinter prints one line per interval (rounded to whole seconds)
// summing the seconds since the previous line.
func progressPrinter(w io.Writer, every time.Duration) func(loadgen.Row) {
	n := max(int64(every/time.Second), 1)
	var acc loadgen.Row
	var count int64
	return func(r loadgen.Row) {
		if count == 0 {
			acc = loadgen.Row{T: r.T}
		}
		count++
		acc.Sent += r.Sent
		acc.OK += r.OK
		acc.Failed += r.Failed
		acc.P99 = max(acc.P99, r.P99)
		for k, v := range r.Versions {
			if acc.Versions == nil {
				acc.Versions = map[string]int64{}
			}
			acc.Versions[k] += v
		}
		if count < n {
			return
		}
		count = 0
		var vs []string
		keys := make([]string, 0, len(acc.Versions))
		for k := range acc.Versions {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			vs = append(vs, fmt.Sprintf("%s %d", k, acc.Versions[k]))
		}
		fmt.Fprintf(w, "%5ds  sent %-6d ok %-6d failed %-5d p99 %-9s %s\n",
			r.T+1, acc.Sent, acc.OK, acc.Failed, acc.P99, strings.Join(vs, " "))
	}
}

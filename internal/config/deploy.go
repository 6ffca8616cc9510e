package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Deploy is zerodown.yaml: how the app runs, the environments it is deployed
// to, and optional hand-written pipelines.
type Deploy struct {
	// Path is the file the config was read from; set by the loader.
	Path string `yaml:"-"`

	App          App                     `yaml:"app"`
	Environments map[string]*Environment `yaml:"environments"`
	Pipelines    map[string]*Pipeline    `yaml:"pipelines"`
	// State is the journal database. Like every path of this machine in
	// the file (token_file, exec dir) it is relative to the file's
	// directory; the loader makes it absolute (see deploy_paths.go).
	State string `yaml:"state"`
	// Notify sends webhooks on run events; a webhook that is down never
	// blocks or fails a deploy.
	Notify Notify `yaml:"notify"`

	// EnvOrder and PipelineOrder keep file order for listings.
	EnvOrder      []string `yaml:"-"`
	PipelineOrder []string `yaml:"-"`

	// tokenFiles are the token_file keys written, for CheckTokenFiles.
	tokenFiles []tokenFileRef
}

// Environment is a named fleet behind one load balancer pool.
type Environment struct {
	Name   string `yaml:"-"`
	LB     EnvLB  `yaml:"lb"`
	Agents Agents `yaml:"agents"`
	// SSH is how hosts with an ssh: destination are reached: zerodown
	// installs their agent (`zerodown hosts bootstrap`) and talks to it
	// through the SSH connection (docs/hosts.md).
	SSH      SSH      `yaml:"ssh"`
	Hosts    []Host   `yaml:"hosts"`
	Strategy Strategy `yaml:"strategy"`
	Verify   *Verify  `yaml:"verify"`
	// Rollback is RollbackAuto (default): a failed run rolls back every host
	// it changed; or RollbackManual: it stops and leaves that to a person.
	Rollback string `yaml:"rollback"`
	// RequireApproval makes every run on the environment wait for
	// `zerodown approve` before it changes anything.
	RequireApproval bool `yaml:"require_approval"`
}

// EnvLB says which load balancer fronts an environment and how to reach it.
type EnvLB struct {
	Driver    string `yaml:"driver"` // builtin | haproxy | nginx | aws-elb | aws-alb
	Admin     string `yaml:"admin"`  // builtin: admin API URL
	Pool      string `yaml:"pool"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Socket and Backend are the haproxy driver's: the Runtime API's
	// stats socket (a unix socket path, or host:port) at level admin, and
	// the backend whose servers are the hosts' targets.
	Socket  string `yaml:"socket"`
	Backend string `yaml:"backend"`
	// CheckInter is HAProxy's `inter` for the backend's servers, which
	// the Runtime API does not report (rise and fall it does); unset,
	// HAProxy's default 2s. It bounds the wait for health.
	CheckInter Duration `yaml:"check_inter"`
	// UpstreamFile, Upstream, Test, Reload and PidFile are the nginx
	// driver's: the include file zerodown owns, holding the upstream block
	// named Upstream; the commands that check nginx's config and reload
	// it; and the master's pid file, whose workers tell when a drain ends.
	UpstreamFile string `yaml:"upstream_file"`
	// SwitchFile is nginx's blue-green: the include file zerodown owns
	// that maps $zerodown_live and $zerodown_preview to the two upstreams.
	SwitchFile string   `yaml:"switch_file"`
	Upstream   string   `yaml:"upstream"`
	Test       []string `yaml:"test"`
	Reload     []string `yaml:"reload"`
	PidFile    string   `yaml:"pid_file"`
	// Name, TargetGroup, Region, Endpoint and Profile are the AWS
	// drivers': the classic load balancer's name (aws-elb) or the target
	// group's ARN (aws-alb); credentials come from the standard chain
	// (environment, Profile or AWS_PROFILE, instance role); Endpoint
	// replaces AWS's for tests and AWS-compatible clouds.
	Name        string `yaml:"name"`
	TargetGroup string `yaml:"target_group"`
	Region      string `yaml:"region"`
	Endpoint    string `yaml:"endpoint"`
	Profile     string `yaml:"profile"`
	// Map is the haproxy driver's blue-green map, by the path HAProxy
	// loaded it from: use_backend rules read its "live" and "preview"
	// entries, which a switch sets with `set map`.
	Map string `yaml:"map"`
	// Listener and PreviewListener are aws-alb's blue-green: the ARNs of
	// the listener users reach, whose default action forwards to the live
	// target group, and of the one that forwards to the idle group.
	// Listener is also aws-alb's canary: the listener whose default
	// action forwards to TargetGroup and CanaryTargetGroup by weight.
	Listener        string `yaml:"listener"`
	PreviewListener string `yaml:"preview_listener"`
	// CanaryTargetGroup is aws-alb's canary: the ARN of the target group
	// of the canary hosts (strategy.canary.hosts, the first hosts), since
	// an ALB weighs target groups, not targets.
	CanaryTargetGroup string `yaml:"canary_target_group"`
	// PollInterval is how often the AWS drivers ask for target health
	// (default 2s): AWS throttles a faster poll, and its own waiters
	// poll every 15s, far slower than a target changes.
	PollInterval Duration `yaml:"poll_interval"`
}

// Notify is where run events are sent.
type Notify struct {
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one receiver of run events: a JSON POST signed with
// HMAC-SHA256 when a secret is set (docs/notifications.md).
type Webhook struct {
	URL        string   `yaml:"url"`
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Events     []string `yaml:"events"` // empty: all
}

// Agents holds what every host's agent shares; a host may override it.
type Agents struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Host is one server of an environment.
type Host struct {
	Name string `yaml:"name"`
	// Agent is the agent's API URL. With SSH it is the agent's address
	// on the host itself, a loopback URL (default http://127.0.0.1:7101),
	// reached through the SSH connection.
	Agent string `yaml:"agent"`
	// SSH is the host's SSH destination, [user@]host[:port]; the
	// environment's ssh: block fills in the rest.
	SSH string `yaml:"ssh"`
	// Exec drives the host with the user's own deploy scripts instead of
	// an agent.
	Exec   *HostExec `yaml:"exec"`
	Target string    `yaml:"target"` // ip:port the load balancer sends this host's traffic to
	// Server is the host's server name in the HAProxy backend; by default
	// the server named like the host, else the one at Target.
	Server string `yaml:"server"`
	// Instance is the host's EC2 instance ID: required by aws-elb, and by
	// aws-alb when the target group registers instances (with Target's
	// port) rather than IP addresses.
	Instance  string `yaml:"instance"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Pool is the host's pool under blue-green: a pool of zerodown lb,
	// or an HAProxy backend; one of strategy.blue_green.pools.
	Pool string `yaml:"pool"`
	// SwapTarget is the address of the app's second slot on this host
	// (the agent's swap_port), for the swap strategy: a new release
	// starts there and the load balancer moves to it.
	SwapTarget string `yaml:"swap_target"`
}

// Strategy generates an environment's pipeline; exactly one is set.
type Strategy struct {
	Rolling   *Rolling   `yaml:"rolling"`
	BlueGreen *BlueGreen `yaml:"blue_green"`
	Swap      *Swap      `yaml:"swap"`
	Canary    *Canary    `yaml:"canary"`
}

// Canary puts the new release on a few hosts first and shifts a growing
// share of traffic to them by load-balancer weight, step by step; between
// steps the canary is compared with the baseline (error rate, p99) and a
// failed comparison aborts and rolls back at once. After the last step
// the other hosts are updated as in a rolling deploy.
type Canary struct {
	// Hosts is how many hosts (a count or a percentage) run the canary;
	// default 1.
	Hosts Quantity `yaml:"hosts"`
	// Steps are the canary's shares of traffic, in percent, each held
	// for its pause while the analysis runs; the last is 100.
	Steps    []CanaryStep `yaml:"steps"`
	Analysis Analysis     `yaml:"analysis"`
	// Weight is every host's weight outside a canary, set back at its
	// end; default 1, HAProxy's and zerodown lb's own default.
	Weight int `yaml:"weight"`
	// Batch sizes the rollout to the other hosts after the last step.
	Batch          BatchSpec `yaml:"batch"`
	DrainTimeout   Duration  `yaml:"drain_timeout"`
	HealthTimeout  Duration  `yaml:"health_timeout"`
	UploadParallel int       `yaml:"upload_parallel"`
}

// CanaryStep is one share of traffic for the canary and how long it holds.
type CanaryStep struct {
	Weight int      `yaml:"weight"` // percent of the traffic, 1 to 100
	Pause  Duration `yaml:"pause"`
}

// Analysis are the canary's thresholds against its baseline.
type Analysis struct {
	// MaxErrorRate is how many percentage points the canary's error rate
	// (5xx and failed requests) may exceed the baseline's; default 1.
	MaxErrorRate *float64 `yaml:"max_error_rate"`
	// MaxP99Increase is how many percent the canary's p99 may exceed the
	// baseline's (beyond a 10ms noise floor); default 50.
	MaxP99Increase *float64 `yaml:"max_p99_increase"`
	// MinRequests is how many canary answers a comparison needs; default
	// 20.
	MinRequests int `yaml:"min_requests"`
}

// Swap replaces each host's release in place without taking the host out
// first: the new release starts in the agent's other slot, the load
// balancer attaches it and reports it healthy, then the old slot is
// detached, drained and stopped. One host is enough for zero downtime.
type Swap struct {
	DrainTimeout   Duration `yaml:"drain_timeout"`
	HealthTimeout  Duration `yaml:"health_timeout"`
	UploadParallel int      `yaml:"upload_parallel"`
}

// HostTimeouts are the strategy's bounds for one host's drain and health,
// and how many hosts receive the artifact at once.
func (s Strategy) HostTimeouts() (drain, health time.Duration, uploadParallel int) {
	switch {
	case s.BlueGreen != nil:
		b := s.BlueGreen
		return time.Duration(b.DrainTimeout), time.Duration(b.HealthTimeout), b.UploadParallel
	case s.Swap != nil:
		w := s.Swap
		return time.Duration(w.DrainTimeout), time.Duration(w.HealthTimeout), w.UploadParallel
	case s.Canary != nil:
		c := s.Canary
		return time.Duration(c.DrainTimeout), time.Duration(c.HealthTimeout), c.UploadParallel
	case s.Rolling != nil:
		r := s.Rolling
		return time.Duration(r.DrainTimeout), time.Duration(r.HealthTimeout), r.UploadParallel
	}
	return DefaultDrainTimeout, DefaultRolloutHealthTimeout, DefaultUploadParallel
}

// BlueGreen deploys to the idle one of two pools while users are served
// by the other, checks it through the preview route, then switches live
// traffic to it at once; the old pool keeps running, so a rollback within
// RollbackWindow is a switch back.
type BlueGreen struct {
	// Pools are the two pools the hosts are split into (hosts[].pool):
	// zerodown lb pools, HAProxy backends, nginx upstreams, or ALB
	// target group ARNs. The
	// first is the one the balancer's live routes name in its own config
	// (lb.yaml's live listener); the second the one its preview routes
	// name.
	Pools []string `yaml:"pools"`
	// Preview is a URL through the preview route, which reaches the idle
	// pool: the smoke checks and the preview load are sent there.
	Preview string `yaml:"preview"`
	// Smoke checks the idle pool through the preview before the switch;
	// by default one GET of Preview must answer 200.
	Smoke []SmokeTask `yaml:"smoke"`
	// PreviewLoad is the load verifier fired at Preview before the
	// switch; every request must succeed. Rate 0 turns it off.
	PreviewLoad PreviewLoad `yaml:"preview_load"`
	// RollbackWindow is how long after a switch `zerodown rollback`
	// switches back to the old pool, which still runs the old release.
	RollbackWindow Duration `yaml:"rollback_window"`
	DrainTimeout   Duration `yaml:"drain_timeout"`
	HealthTimeout  Duration `yaml:"health_timeout"`
	UploadParallel int      `yaml:"upload_parallel"`
}

// PreviewLoad is a short constant-rate load at the preview route.
type PreviewLoad struct {
	Rate     *int     `yaml:"rate"`
	Duration Duration `yaml:"duration"`
}

// Rolling replaces hosts a batch at a time.
type Rolling struct {
	// Batch is the batch size, or a list of sizes for successive batches
	// (the last repeats): 1, "25%", [1, "50%", "100%"].
	Batch BatchSpec `yaml:"batch"`
	// MinHealthy is how many hosts must stay healthy in the load balancer
	// while a batch is out: a count or a percentage of the environment.
	MinHealthy    Quantity `yaml:"min_healthy"`
	DrainTimeout  Duration `yaml:"drain_timeout"`
	HealthTimeout Duration `yaml:"health_timeout"`
	Bake          Duration `yaml:"bake"`
	// UploadParallel bounds how many hosts receive the artifact at once.
	UploadParallel int `yaml:"upload_parallel"`
}

// BatchSpec is the batch sizes of a rolling update: entry i sizes batch i
// and the last entry repeats. In YAML it is one size (1, "25%") or a list
// of sizes ([1, "50%", "100%"]).
type BatchSpec []Quantity

// UnmarshalYAML implements yaml.InterfaceUnmarshaler: a scalar is a list of
// one. The loader checks the same values with their positions first.
func (b *BatchSpec) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	items, isList := v.([]any)
	if !isList {
		if v == nil {
			*b = nil
			return nil
		}
		items = []any{v}
	}
	out := make(BatchSpec, 0, len(items))
	for i, item := range items {
		q, err := parseQuantity(item)
		if err == nil && item == nil {
			err = errors.New("an empty entry; want a batch size")
		}
		if err != nil {
			if isList {
				return fmt.Errorf("batch[%d]: %w", i, err)
			}
			return err
		}
		out = append(out, q)
	}
	*b = out
	return nil
}

// Quantity is a count or a percentage, written 2 or "50%". A percentage is
// from 1 to 100; a count is not negative.
type Quantity struct {
	N       int
	Percent bool
}

// Of resolves q against a total: a percentage rounds up, so "25%" of 3
// hosts is 1, never 0.
func (q Quantity) Of(total int) int {
	if !q.Percent {
		return q.N
	}
	return (q.N*total + 99) / 100
}

// String writes q as the config does: 2 or 50%.
func (q Quantity) String() string {
	if q.Percent {
		return strconv.Itoa(q.N) + "%"
	}
	return strconv.Itoa(q.N)
}

// UnmarshalYAML implements yaml.InterfaceUnmarshaler: an integer, or a
// string such as "25%".
func (q *Quantity) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	got, err := parseQuantity(v)
	if err != nil {
		return err
	}
	*q = got
	return nil
}

// quantityHint is what a quantity looks like.
const quantityHint = `want a count such as 2 or a percentage such as "25%"`

// parseQuantity converts what the YAML library decoded a scalar to; nil is
// the zero Quantity (not set).
func parseQuantity(v any) (Quantity, error) {
	switch v := v.(type) {
	case nil:
		return Quantity{}, nil
	case int64:
		if v < 0 {
			return Quantity{}, fmt.Errorf("must not be negative, got %d", v)
		}
		if v > math.MaxInt {
			return Quantity{}, fmt.Errorf("%d is too large", v)
		}
		return Quantity{N: int(v)}, nil
	case uint64:
		if v > math.MaxInt {
			return Quantity{}, fmt.Errorf("%d is too large", v)
		}
		return Quantity{N: int(v)}, nil
	case float64:
		return Quantity{}, fmt.Errorf("invalid quantity %v: a count is a whole number of hosts", v)
	case string:
		num, percent := strings.CutSuffix(v, "%")
		if !allDigits(num) {
			return Quantity{}, fmt.Errorf("invalid quantity %q: %s", v, quantityHint)
		}
		n, err := strconv.Atoi(num)
		switch {
		case percent && (err != nil || n < 1 || n > 100):
			return Quantity{}, fmt.Errorf("invalid percentage %q: want 1%% to 100%%", v)
		case percent:
			return Quantity{N: n, Percent: true}, nil
		case err != nil:
			// The YAML library reads an integer too large for 64 bits as a
			// string.
			return Quantity{}, fmt.Errorf("%s is too large", v)
		}
		return Quantity{}, fmt.Errorf("invalid quantity %q: write a count without quotes, as %d", v, n)
	}
	return Quantity{}, fmt.Errorf("%s, got %s", quantityHint, describeValue(v))
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Verify is the load fired at the load balancer during a run.
type Verify struct {
	URL        string   `yaml:"url"`
	Rate       int      `yaml:"rate"`
	MaxFailed  *int     `yaml:"max_failed"`
	MaxDropped *int     `yaml:"max_dropped"`
	P99        Duration `yaml:"p99"`
	// PostEcho also POSTs a small body to URL, half of the requests, and
	// requires it echoed back: proxies retry failed GETs silently, a failed
	// POST shows.
	PostEcho bool `yaml:"post_echo"`
	// Post is a non-idempotent endpoint the app declares (a path on URL's
	// host, or a URL): half of the requests POST a small body to it and
	// need a 2xx. A load balancer never retries a POST it sent, so a
	// failure on a target shows here.
	Post string `yaml:"post"`
	// MaxLBRetries fails the verification when the load balancer retried
	// more requests than this on another target during the run (failures
	// it hid from clients); unset: reported, not a threshold.
	MaxLBRetries *int `yaml:"max_lb_retries"`
}

// Pipeline is a hand-written pipeline, GoCD style: stages in order, jobs of
// a stage in parallel, tasks of a job in order.
type Pipeline struct {
	Name        string  `yaml:"-"`
	Environment string  `yaml:"environment"`
	Stages      []Stage `yaml:"stages"`
}

// Stage is one step of a pipeline; its jobs run in parallel.
type Stage struct {
	Name string `yaml:"name"`
	Jobs []Job  `yaml:"jobs"`
}

// Job is a list of tasks run in order.
type Job struct {
	Name  string `yaml:"name"`
	Tasks []Task `yaml:"tasks"`
}

// Task is one action. Exactly one of the kind fields is set; RunIf and
// OnCancel apply to any kind, as in GoCD.
type Task struct {
	Detach      string `yaml:"detach"`       // host name
	Attach      string `yaml:"attach"`       // host name
	Deploy      string `yaml:"deploy"`       // host name: upload + activate
	WaitHealthy string `yaml:"wait-healthy"` // host name
	WaitDrained string `yaml:"wait-drained"` // host name
	Retire      string `yaml:"retire"`       // host name (swap)
	Upload      string `yaml:"upload"`       // host name: the artifact only
	// Slot is the swap strategy's: deploy into the "idle" slot; attach
	// and wait-healthy the "new" slot's target; detach and wait-drained
	// the "old" one's.
	Slot    string       `yaml:"slot"`
	Sleep   Duration     `yaml:"sleep"`
	Exec    *ExecTask    `yaml:"exec"`
	Smoke   *SmokeTask   `yaml:"smoke"`
	Approve *ApproveTask `yaml:"approve"`
	Pause   *PauseTask   `yaml:"pause"`
	// Switch and PreviewLoad are blue-green's: send live traffic from
	// one of strategy.blue_green.pools to the other; fire a short load at
	// the preview route.
	Switch      *SwitchTask `yaml:"switch"`
	PreviewLoad *LoadTask   `yaml:"preview-load"`
	// Weights and Analyze are the canary's: set the canary hosts' share of
	// traffic by weight; compare them with the other hosts for a while.
	Weights *WeightsTask `yaml:"weights"`
	Analyze *AnalyzeTask `yaml:"analyze"`

	// RunIf is RunIfPassed (default), RunIfFailed or RunIfAny: whether the
	// task runs after an earlier task of its job passed or failed.
	RunIf string `yaml:"run_if"`
	// OnCancel runs when the task is cancelled (abort, SIGINT, SIGTERM).
	OnCancel *Task `yaml:"on_cancel"`
	// Timeout bounds the task; 0 takes the kind's default.
	Timeout Duration `yaml:"timeout"`
}

// ExecTask runs a local command.
type ExecTask struct {
	// Command is the argv, no shell. A program with a slash ("./smoke.sh")
	// is relative to Dir, else it is looked up in PATH.
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	// Dir is where the command runs: relative to the directory of
	// zerodown.yaml, which is also the default. The loader makes it
	// absolute.
	Dir string `yaml:"dir"`
}

// SmokeTask checks an HTTP answer.
type SmokeTask struct {
	URL    string `yaml:"url"`
	Status int    `yaml:"status"`        // default 200
	Body   string `yaml:"body_contains"` // optional
}

// WeightsTask gives the Canary hosts Share percent of the traffic by
// weight, and the others the rest; Share 0 puts every host back on
// weight Base.
type WeightsTask struct {
	Canary []string `yaml:"canary" json:"canary"`
	Share  int      `yaml:"share" json:"share"`
	Base   int      `yaml:"base" json:"base"`
}

// AnalyzeTask compares the Canary hosts with the others for For, and
// fails as soon as the canary is worse than the thresholds allow.
type AnalyzeTask struct {
	Canary         []string `yaml:"canary" json:"canary"`
	For            Duration `yaml:"for" json:"for"`
	MaxErrorRate   float64  `yaml:"max_error_rate" json:"max_error_rate"`
	MaxP99Increase float64  `yaml:"max_p99_increase" json:"max_p99_increase"`
	MinRequests    int      `yaml:"min_requests" json:"min_requests"`
}

// SwitchTask sends live traffic from pool From to pool To.
type SwitchTask struct {
	From string `yaml:"from" json:"from"`
	To   string `yaml:"to" json:"to"`
}

// LoadTask fires Rate requests a second at URL for Duration; every one
// must succeed.
type LoadTask struct {
	URL      string   `yaml:"url" json:"url"`
	Rate     int      `yaml:"rate" json:"rate"`
	Duration Duration `yaml:"duration" json:"duration"`
}

// PauseTask holds the run for For, or, without For, until a person runs
// `zerodown resume RUN`; `zerodown resume RUN` also ends a timed pause
// early.
type PauseTask struct {
	For     Duration `yaml:"for"`
	Message string   `yaml:"message"`
}

// ApproveTask waits until a person runs `zerodown approve RUN`.
type ApproveTask struct {
	Message string `yaml:"message"`
}

// Rollback policies.
const (
	RollbackAuto   = "auto"
	RollbackManual = "manual"
)

// RunIf values.
const (
	RunIfPassed = "passed"
	RunIfFailed = "failed"
	RunIfAny    = "any"
)

// Load balancer drivers.
const (
	DriverBuiltin = "builtin"
	DriverHAProxy = "haproxy"
	DriverNginx   = "nginx"
	DriverAWSELB  = "aws-elb"
	DriverAWSALB  = "aws-alb"
)

// Deploy defaults.
const (
	DefaultStatePath            = ".zerodown/state.db"
	DefaultDrainTimeout         = 60 * time.Second
	DefaultRolloutHealthTimeout = 60 * time.Second
	DefaultUploadParallel       = 4
	DefaultExecTimeout          = 10 * time.Minute
	DefaultSmokeTimeout         = 10 * time.Second
	DefaultApproveTimeout       = 24 * time.Hour
	DefaultAWSPollInterval      = 2 * time.Second
	DefaultNginxPidFile         = "/run/nginx.pid"
)

// The nginx driver's default commands.
var (
	DefaultNginxTest   = []string{"nginx", "-t"}
	DefaultNginxReload = []string{"nginx", "-s", "reload"}
)

// Warnings are what in the file is valid but likely not what its author
// wants, for `zerodown validate` and `plan`.
func (d *Deploy) Warnings() []string {
	var out []string
	for _, name := range d.EnvOrder {
		e := d.Environments[name]
		if e.Strategy.Rolling != nil && len(e.Hosts) == 1 {
			out = append(out, fmt.Sprintf("%s: environments.%s.strategy: a rolling deploy of a single host takes it out of the load balancer, so nobody serves until it is back; "+
				"give the agent a swap_port, the host a swap_target, and use strategy: { swap: {} } (the default for one host with a swap_target)", d.Path, name))
		}
		for i, h := range e.Hosts {
			if h.Exec != nil && len(h.Exec.Status) == 0 {
				out = append(out, fmt.Sprintf("%s: environments.%s.hosts[%d].exec: cannot skip hosts already on the version: no exec.status; "+
					"every deploy runs %s's deploy script again, and zerodown knows its version only from what it deployed there", d.Path, name, i, h.Name))
			}
		}
	}
	return out
}

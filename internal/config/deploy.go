package config

import "time"

// Deploy is zerodown.yaml: how the app runs, the environments it is deployed
// to, and optional hand-written pipelines.
type Deploy struct {
	// Path is the file the config was read from; set by the loader.
	Path string `yaml:"-"`

	App          App                     `yaml:"app"`
	Environments map[string]*Environment `yaml:"environments"`
	Pipelines    map[string]*Pipeline    `yaml:"pipelines"`
	// State is the journal database; relative paths are relative to the
	// directory the command runs in.
	State string `yaml:"state"`

	// EnvOrder and PipelineOrder keep file order for listings.
	EnvOrder      []string `yaml:"-"`
	PipelineOrder []string `yaml:"-"`
}

// Environment is a named fleet behind one load balancer pool.
type Environment struct {
	Name     string   `yaml:"-"`
	LB       EnvLB    `yaml:"lb"`
	Agents   Agents   `yaml:"agents"`
	Hosts    []Host   `yaml:"hosts"`
	Strategy Strategy `yaml:"strategy"`
	Verify   *Verify  `yaml:"verify"`
	// Rollback is RollbackAuto (default): a failed run rolls back every host
	// it changed; or RollbackManual: it stops and leaves that to a person.
	Rollback string `yaml:"rollback"`
}

// EnvLB says which load balancer fronts an environment and how to reach it.
type EnvLB struct {
	Driver    string `yaml:"driver"` // builtin | haproxy | nginx | aws-elb | aws-alb
	Admin     string `yaml:"admin"`  // builtin: admin API URL
	Pool      string `yaml:"pool"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Agents holds what every host's agent shares; a host may override it.
type Agents struct {
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Host is one server of an environment.
type Host struct {
	Name      string `yaml:"name"`
	Agent     string `yaml:"agent"`  // agent API URL
	Target    string `yaml:"target"` // ip:port the load balancer sends this host's traffic to
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Strategy generates an environment's pipeline; exactly one is set.
type Strategy struct {
	Rolling *Rolling `yaml:"rolling"`
}

// Rolling replaces hosts a batch at a time.
type Rolling struct {
	// Batch is the batch size, or a list of sizes for successive batches
	// (the last repeats): 1, "25%", [1, "50%", "100%"].
	Batch []Quantity `yaml:"batch"`
	// MinHealthy is how many hosts must stay healthy in the load balancer
	// while a batch is out: a count or a percentage of the environment.
	MinHealthy    Quantity `yaml:"min_healthy"`
	DrainTimeout  Duration `yaml:"drain_timeout"`
	HealthTimeout Duration `yaml:"health_timeout"`
	Bake          Duration `yaml:"bake"`
	// UploadParallel bounds how many hosts receive the artifact at once.
	UploadParallel int `yaml:"upload_parallel"`
}

// Quantity is a count or a percentage, written 2 or "50%".
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

// Verify is the load fired at the load balancer during a run.
type Verify struct {
	URL        string   `yaml:"url"`
	Rate       int      `yaml:"rate"`
	MaxFailed  *int     `yaml:"max_failed"`
	MaxDropped *int     `yaml:"max_dropped"`
	P99        Duration `yaml:"p99"`
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
	Detach      string       `yaml:"detach"`       // host name
	Attach      string       `yaml:"attach"`       // host name
	Deploy      string       `yaml:"deploy"`       // host name: upload + activate
	WaitHealthy string       `yaml:"wait-healthy"` // host name
	WaitDrained string       `yaml:"wait-drained"` // host name
	Sleep       Duration     `yaml:"sleep"`
	Exec        *ExecTask    `yaml:"exec"`
	Smoke       *SmokeTask   `yaml:"smoke"`
	Approve     *ApproveTask `yaml:"approve"`

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
	Command []string          `yaml:"command"` // argv, no shell
	Env     map[string]string `yaml:"env"`
	Dir     string            `yaml:"dir"`
}

// SmokeTask checks an HTTP answer.
type SmokeTask struct {
	URL    string `yaml:"url"`
	Status int    `yaml:"status"`        // default 200
	Body   string `yaml:"body_contains"` // optional
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
)

package config

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/zerodown/zerodown/internal/notify"
)

// LoadDeploy reads and parses zerodown.yaml at path; see ParseDeploy.
func LoadDeploy(path string) (*Deploy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read deploy config: %w", err)
	}
	return ParseDeploy(path, data)
}

// ParseDeploy parses zerodown.yaml the way ParseLB parses lb.yaml: ${VAR}
// from the environment (an unset variable is an error; ${PORT} and
// ${VERSION} stay for the agent to fill in when it starts the app), strict
// keys and types, defaults, and validation that reports every problem as
// an Errors with file:line:col and key path. path names the file in errors,
// and the paths of this machine in it (state, token_file, exec dir) are
// resolved against its directory and made absolute; see deploy_paths.go.
// Whether the token files can be read is CheckTokenFiles' to say.
//
// On success the config is complete: every environment and pipeline has
// its Name, EnvOrder and PipelineOrder list them in file order, every
// environment has a rolling strategy with its defaults, host targets are
// normalized (NormalizeTarget), hosts without a token inherit the agents:
// one, and every task has exactly one kind and its RunIf.
func ParseDeploy(path string, data []byte) (*Deploy, error) {
	cfg, c, raw, err := parseDeployFile(path, data, deployLookup(os.LookupEnv))
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	d := &deployValidator{validator: validator{c: c}, cfg: cfg, raw: raw}
	d.prepare()
	d.validate()
	if len(d.errs) > 0 {
		return nil, d.errs.sorted()
	}
	return cfg, nil
}

// deployLookup leaves ${PORT} and ${VERSION} as written: the agent sets
// them when it starts the app (see ParseApp).
func deployLookup(lookup func(string) (string, bool)) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if slices.Contains(appReserved, name) || slices.Contains(hostVars, name) {
			return "${" + name + "}", true
		}
		return lookup(name)
	}
}

// parseDeployFile is parseConfig for zerodown.yaml. The check walks the
// file along the Deploy type; it does not know quantities (a count or a
// percentage, and a batch that is one of them or a list), so its type
// errors about them are dropped and checkQuantities reports those values
// instead, from the document decoded without types. That untyped document
// is returned too: validation needs to know which keys are written, also
// through aliases and merge keys, such as a min_healthy: 0 or an approve:
// without a message.
func parseDeployFile(path string, data []byte, lookup func(string) (string, bool)) (*Deploy, *checker, any, error) {
	expanded, envErrs := expandEnv(path, data, lookup)
	c := newChecker(path)
	file, err := parseYAML(expanded)
	if err != nil {
		return nil, nil, nil, append(envErrs, c.libraryError(err)).sorted()
	}
	root, docErr := c.body(file)
	if docErr != nil {
		return nil, nil, nil, append(envErrs, docErr).sorted()
	}
	c.at[""] = position{1, 1}
	if p := startPos(root); p.Line > 0 {
		c.at[""] = p
	}
	if root != nil {
		c.value(root, reflect.TypeFor[Deploy](), "", c.at[""], true, false)
	}
	if len(envErrs) > 0 {
		pathOn := c.pathsOn()
		for _, e := range envErrs {
			e.Path = pathOn(e.Line, e.Column)
		}
		return nil, nil, nil, envErrs.sorted()
	}
	errs := Errors{}
	for _, e := range c.errs {
		if !quantityTypeError(e) {
			errs = append(errs, e)
		}
	}
	var raw any
	// A document whose aliases expand too far is not decoded at all.
	if root != nil && c.budget > 0 {
		if err := decodeUntyped(root, &raw); err != nil {
			if len(errs) == 0 {
				return nil, nil, nil, Errors{c.libraryError(err)}
			}
			return nil, nil, nil, errs.sorted()
		}
	}
	v := &validator{c: c}
	checkQuantities(v, raw)
	errs = append(errs, v.errs...)
	if len(errs) > 0 {
		return nil, nil, nil, errs.sorted()
	}
	cfg := &Deploy{}
	if root != nil {
		if err := decodeNode(root, cfg); err != nil {
			return nil, nil, nil, Errors{c.libraryError(err)}
		}
	}
	return cfg, c, raw, nil
}

// decodeUntyped decodes the document into maps, lists and scalars. Aliases
// decode to the value their anchor decoded to, so they do not multiply.
func decodeUntyped(root ast.Node, v *any) (err error) {
	defer recoverLibrary(&err)
	return yaml.NodeToValue(root, v, yaml.AllowDuplicateMapKey())
}

// quantityTypeError reports an error of the check that only says a
// quantity is not the struct or list it is in Go: checkQuantities judges
// those values itself.
func quantityTypeError(e *Error) bool {
	if !strings.HasPrefix(e.Msg, "want a mapping") && !strings.HasPrefix(e.Msg, "want a list") && !strings.HasPrefix(e.Msg, "unknown key") {
		return false
	}
	rest, ok := strings.CutPrefix(e.Path, "environments.")
	if !ok {
		return false
	}
	if strings.HasPrefix(rest, `"`) {
		name, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return false
		}
		rest = rest[len(name):]
	} else if i := strings.IndexByte(rest, '.'); i >= 0 {
		rest = rest[i:] // plain keys have no dots
	} else {
		return false
	}
	for _, k := range []string{".strategy.rolling.batch", ".strategy.rolling.min_healthy", ".strategy.canary.batch", ".strategy.canary.hosts"} {
		if after, ok := strings.CutPrefix(rest, k); ok && (after == "" || after[0] == '.' || after[0] == '[') {
			return true
		}
	}
	return false
}

// checkQuantities reports batch and min_healthy values that are not
// quantities, with their positions.
func checkQuantities(v *validator, raw any) {
	c := v.c
	envs, _ := rawKey(raw, "environments").(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(envs)) {
		if canary, _ := rawKey(rawKey(envs[name], "strategy"), "canary").(map[string]any); canary != nil {
			cp := c.key(c.key(c.key("environments", name), "strategy"), "canary")
			checkBatchList(v, c.key(cp, "batch"), canary["batch"])
			if h := canary["hosts"]; h != nil {
				checkBatchSize(v, c.key(cp, "hosts"), h)
			}
		}
		rolling, _ := rawKey(rawKey(envs[name], "strategy"), "rolling").(map[string]any)
		if rolling == nil {
			continue
		}
		rp := c.key(c.key(c.key("environments", name), "strategy"), "rolling")
		checkBatchList(v, c.key(rp, "batch"), rolling["batch"])
		if mh := rolling["min_healthy"]; mh != nil {
			if _, err := parseQuantity(mh); err != nil {
				v.errorf(c.key(rp, "min_healthy"), "%v", err)
			}
		}
	}
}

// checkBatchList checks a batch: one size or a list of them.
func checkBatchList(v *validator, bp string, raw any) {
	switch b := raw.(type) {
	case nil:
	case []any:
		if len(b) == 0 {
			v.errorf(bp, "want a batch size or a list of them, got an empty list")
		}
		for i, item := range b {
			checkBatchSize(v, v.c.item(bp, i), item)
		}
	default:
		checkBatchSize(v, bp, b)
	}
}

func checkBatchSize(v *validator, path string, item any) {
	q, err := parseQuantity(item)
	switch {
	case item == nil:
		v.errorf(path, "an empty entry; want a batch size")
	case err != nil:
		v.errorf(path, "%v", err)
	case q.N == 0:
		v.errorf(path, "a batch needs at least 1 host, got 0")
	}
}

// rawKey is the value of key k of an untyped mapping; nil when v is not a
// mapping or has no such key.
func rawKey(v any, k string) any {
	m, _ := v.(map[string]any)
	return m[k]
}

// rawItem is item i of an untyped list; nil when there is none.
func rawItem(v any, i int) any {
	l, _ := v.([]any)
	if i < 0 || i >= len(l) {
		return nil
	}
	return l[i]
}

// rawHas reports whether the untyped mapping v has key k, even with a null
// value.
func rawHas(v any, k string) bool {
	m, _ := v.(map[string]any)
	_, ok := m[k]
	return ok
}

type deployValidator struct {
	validator
	cfg *Deploy
	raw any
}

// prepare gives every environment and pipeline its own structs (an alias
// decodes to the same pointer as its anchor), its name and its defaults,
// resolves the paths of this machine against the file's directory, and
// records the file order.
func (d *deployValidator) prepare() {
	cfg := d.cfg
	cfg.EnvOrder = fileOrder(d.c, "environments", cfg.Environments)
	cfg.PipelineOrder = fileOrder(d.c, "pipelines", cfg.Pipelines)
	paths := newPathResolver(cfg.Path)
	orDefault(&cfg.State, DefaultStatePath)
	cfg.State = paths.resolve(cfg.State)
	for i := range cfg.Notify.Webhooks {
		w := &cfg.Notify.Webhooks[i]
		w.SecretFile = paths.resolve(w.SecretFile)
	}
	cfg.App.ApplyDefaults()
	for _, name := range cfg.EnvOrder {
		e := cloneEnvironment(cfg.Environments[name])
		e.Name = name
		cfg.Environments[name] = e
		d.resolveEnvPaths(paths, e, d.c.key("environments", name))
		envDefaults(e, rawKey(rawKey(d.raw, "environments"), name))
	}
	for _, name := range cfg.PipelineOrder {
		p := clonePipeline(cfg.Pipelines[name])
		p.Name = name
		cfg.Pipelines[name] = p
		rawStages := rawKey(rawKey(rawKey(d.raw, "pipelines"), name), "stages")
		for si := range p.Stages {
			rawJobs := rawKey(rawItem(rawStages, si), "jobs")
			for ji := range p.Stages[si].Jobs {
				rawTasks := rawKey(rawItem(rawJobs, ji), "tasks")
				for ti := range p.Stages[si].Jobs[ji].Tasks {
					t := &p.Stages[si].Jobs[ji].Tasks[ti]
					taskDefaults(t, rawItem(rawTasks, ti))
					resolveTaskPaths(paths, t)
				}
			}
		}
	}
}

// fileOrder is the names of m in the order the file writes them; names
// that come from a merge key (<<), which have no place of their own, follow
// in alphabetical order.
func fileOrder[T any](c *checker, parent string, m map[string]T) []string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int {
		pa, okA := c.at[c.key(parent, a)]
		pb, okB := c.at[c.key(parent, b)]
		switch {
		case okA && okB:
			return cmp.Or(cmp.Compare(pa.Line, pb.Line), cmp.Compare(pa.Column, pb.Column), strings.Compare(a, b))
		case okA:
			return -1
		case okB:
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

func envDefaults(e *Environment, raw any) {
	orDefault(&e.Rollback, RollbackAuto)
	orDefault(&e.LB.Driver, DriverBuiltin)
	switch e.LB.Driver {
	case DriverNginx:
		if len(e.LB.Test) == 0 {
			e.LB.Test = append([]string(nil), DefaultNginxTest...)
		}
		if len(e.LB.Reload) == 0 {
			e.LB.Reload = append([]string(nil), DefaultNginxReload...)
		}
		orDefault(&e.LB.PidFile, DefaultNginxPidFile)
	case DriverAWSELB, DriverAWSALB:
		if e.LB.PollInterval == 0 {
			e.LB.PollInterval = Duration(DefaultAWSPollInterval)
		}
	}
	sshDefaults(e)
	for i := range e.Hosts {
		h := &e.Hosts[i]
		if h.Token == "" && h.TokenFile == "" && h.SSH == "" && h.Exec == nil {
			h.Token, h.TokenFile = e.Agents.Token, e.Agents.TokenFile
		}
	}
	if e.Verify != nil {
		ptrDefault(&e.Verify.MaxFailed, 0)
		ptrDefault(&e.Verify.MaxDropped, 0)
	}
	strategyDefaults(e, raw)
}

// strategyDefaults fills the environment's strategy: rolling when none is
// written, swap for one host with a second slot.
func strategyDefaults(e *Environment, raw any) {
	if bg := e.Strategy.BlueGreen; bg != nil {
		blueGreenDefaults(bg)
		return
	}
	// One host with a second slot: swap is the only strategy that keeps
	// it serving, so it is the default.
	if rawKey(raw, "strategy") == nil && len(e.Hosts) == 1 && e.Hosts[0].SwapTarget != "" {
		e.Strategy.Swap = &Swap{}
	}
	if cn := e.Strategy.Canary; cn != nil {
		canaryDefaults(cn)
		return
	}
	if w := e.Strategy.Swap; w != nil {
		orDefault(&w.DrainTimeout, Duration(DefaultDrainTimeout))
		orDefault(&w.HealthTimeout, Duration(DefaultRolloutHealthTimeout))
		orDefault(&w.UploadParallel, DefaultUploadParallel)
		return
	}
	if e.Strategy.Rolling == nil {
		e.Strategy.Rolling = &Rolling{}
	}
	r := e.Strategy.Rolling
	if len(r.Batch) == 0 {
		r.Batch = BatchSpec{{N: 1}}
	}
	if rawKey(rawKey(rawKey(raw, "strategy"), "rolling"), "min_healthy") == nil {
		r.MinHealthy = Quantity{}
		if len(e.Hosts) > 1 {
			r.MinHealthy = Quantity{N: 1}
		}
	}
	orDefault(&r.DrainTimeout, Duration(DefaultDrainTimeout))
	orDefault(&r.HealthTimeout, Duration(DefaultRolloutHealthTimeout))
	orDefault(&r.UploadParallel, DefaultUploadParallel)
}

// Blue-green defaults: an hour to switch back; a preview load of 20
// requests a second for 3 seconds.
const (
	DefaultRollbackWindow      = time.Hour
	DefaultPreviewLoadRate     = 20
	DefaultPreviewLoadDuration = 3 * time.Second
)

// Canary defaults: one canary host; 1 point of error rate and 50% of p99
// over the baseline; 20 answers before a comparison counts.
const (
	DefaultCanaryMaxErrorRate   = 1.0
	DefaultCanaryMaxP99Increase = 50.0
	DefaultCanaryMinRequests    = 20
)

func canaryDefaults(cn *Canary) {
	if cn.Hosts == (Quantity{}) {
		cn.Hosts = Quantity{N: 1}
	}
	if len(cn.Batch) == 0 {
		cn.Batch = BatchSpec{{N: 1}}
	}
	orDefault(&cn.Weight, DefaultWeight)
	ptrDefault(&cn.Analysis.MaxErrorRate, DefaultCanaryMaxErrorRate)
	ptrDefault(&cn.Analysis.MaxP99Increase, DefaultCanaryMaxP99Increase)
	orDefault(&cn.Analysis.MinRequests, DefaultCanaryMinRequests)
	orDefault(&cn.DrainTimeout, Duration(DefaultDrainTimeout))
	orDefault(&cn.HealthTimeout, Duration(DefaultRolloutHealthTimeout))
	orDefault(&cn.UploadParallel, DefaultUploadParallel)
}

func blueGreenDefaults(bg *BlueGreen) {
	orDefault(&bg.RollbackWindow, Duration(DefaultRollbackWindow))
	orDefault(&bg.DrainTimeout, Duration(DefaultDrainTimeout))
	orDefault(&bg.HealthTimeout, Duration(DefaultRolloutHealthTimeout))
	orDefault(&bg.UploadParallel, DefaultUploadParallel)
	ptrDefault(&bg.PreviewLoad.Rate, DefaultPreviewLoadRate)
	orDefault(&bg.PreviewLoad.Duration, Duration(DefaultPreviewLoadDuration))
	if len(bg.Smoke) == 0 && bg.Preview != "" {
		bg.Smoke = []SmokeTask{{URL: bg.Preview}}
	}
	for i := range bg.Smoke {
		orDefault(&bg.Smoke[i].Status, 200)
	}
}

// taskDefaults fills RunIf and the smoke status, and turns an approve:
// written without a message into an approval.
func taskDefaults(t *Task, raw any) {
	orDefault(&t.RunIf, RunIfPassed)
	if t.Approve == nil && rawHas(raw, "approve") {
		t.Approve = &ApproveTask{}
	}
	if t.Pause == nil && rawHas(raw, "pause") {
		t.Pause = &PauseTask{}
	}
	if t.Smoke != nil {
		orDefault(&t.Smoke.Status, 200)
	}
	if t.OnCancel != nil {
		taskDefaults(t.OnCancel, rawKey(raw, "on_cancel"))
	}
}

func cloneEnvironment(e *Environment) *Environment {
	if e == nil {
		return &Environment{}
	}
	cp := *e
	cp.Hosts = slices.Clone(e.Hosts)
	for i, h := range cp.Hosts {
		if h.Exec != nil {
			x := *h.Exec
			cp.Hosts[i].Exec = &x
		}
	}
	if e.Strategy.Rolling != nil {
		r := *e.Strategy.Rolling
		r.Batch = slices.Clone(r.Batch)
		cp.Strategy.Rolling = &r
	}
	if e.Strategy.Swap != nil {
		w := *e.Strategy.Swap
		cp.Strategy.Swap = &w
	}
	if e.Strategy.Canary != nil {
		cn := *e.Strategy.Canary
		cn.Steps = slices.Clone(cn.Steps)
		cn.Batch = slices.Clone(cn.Batch)
		cn.Analysis.MaxErrorRate = clonePtr(cn.Analysis.MaxErrorRate)
		cn.Analysis.MaxP99Increase = clonePtr(cn.Analysis.MaxP99Increase)
		cp.Strategy.Canary = &cn
	}
	if e.Strategy.BlueGreen != nil {
		bg := *e.Strategy.BlueGreen
		bg.Pools = slices.Clone(bg.Pools)
		bg.Smoke = slices.Clone(bg.Smoke)
		bg.PreviewLoad.Rate = clonePtr(bg.PreviewLoad.Rate)
		cp.Strategy.BlueGreen = &bg
	}
	if e.Verify != nil {
		v := *e.Verify
		v.MaxFailed = clonePtr(v.MaxFailed)
		v.MaxDropped = clonePtr(v.MaxDropped)
		v.MaxLBRetries = clonePtr(v.MaxLBRetries)
		cp.Verify = &v
	}
	return &cp
}

func clonePipeline(p *Pipeline) *Pipeline {
	if p == nil {
		return &Pipeline{}
	}
	cp := *p
	cp.Stages = slices.Clone(p.Stages)
	for si := range cp.Stages {
		st := &cp.Stages[si]
		st.Jobs = slices.Clone(st.Jobs)
		for ji := range st.Jobs {
			j := &st.Jobs[ji]
			j.Tasks = slices.Clone(j.Tasks)
			for ti := range j.Tasks {
				cloneTaskParts(&j.Tasks[ti])
			}
		}
	}
	return &cp
}

// cloneTaskParts replaces what t points to with copies.
func cloneTaskParts(t *Task) {
	if t.Exec != nil {
		e := *t.Exec
		e.Command = slices.Clone(e.Command)
		e.Env = maps.Clone(e.Env)
		t.Exec = &e
	}
	t.Smoke = clonePtr(t.Smoke)
	t.Approve = clonePtr(t.Approve)
	t.Pause = clonePtr(t.Pause)
	t.Switch = clonePtr(t.Switch)
	t.PreviewLoad = clonePtr(t.PreviewLoad)
	if t.Weights != nil {
		w := *t.Weights
		w.Canary = slices.Clone(w.Canary)
		t.Weights = &w
	}
	if t.Analyze != nil {
		a := *t.Analyze
		a.Canary = slices.Clone(a.Canary)
		t.Analyze = &a
	}
	if t.OnCancel != nil {
		oc := *t.OnCancel
		cloneTaskParts(&oc)
		t.OnCancel = &oc
	}
}

func (d *deployValidator) validate() {
	c, cfg := d.c, d.cfg
	validateApp(&cfg.App, "app", c, d.errorf)
	if len(cfg.Environments) == 0 {
		d.errorf(c.key("", "environments"), "at least one environment is required")
	}
	for _, name := range cfg.EnvOrder {
		d.environment(cfg.Environments[name], c.key("environments", name))
	}
	for _, name := range cfg.PipelineOrder {
		d.pipeline(cfg.Pipelines[name], c.key("pipelines", name))
	}
	d.notify(&cfg.Notify, c.key("", "notify"))
}

func (d *deployValidator) notify(n *Notify, np string) {
	c := d.c
	wp := c.key(np, "webhooks")
	for i := range n.Webhooks {
		w := &n.Webhooks[i]
		ip := c.item(wp, i)
		if w.URL == "" {
			d.errorf(ip, "a webhook needs a url, such as https://hooks.example.com/zerodown")
		} else if err := checkURL(w.URL, "https://hooks.example.com/zerodown"); err != nil {
			d.errorf(c.key(ip, "url"), "%v", err)
		}
		if w.Secret != "" && w.SecretFile != "" {
			d.errorf(c.key(ip, "secret_file"), "secret and secret_file are both set; use one")
		}
		ep := c.key(ip, "events")
		for j, ev := range w.Events {
			if !slices.Contains(notify.Events, ev) {
				d.errorf(c.item(ep, j), "unknown event %q (want one of: %s)", ev, strings.Join(notify.Events, ", "))
			}
		}
	}
}

// checkName accepts names for environments, hosts and pipelines: they
// appear on command lines, in the journal and in file names.
func checkName(name string) error {
	ok := name != ""
	for i, r := range name {
		alnum := '0' <= r && r <= '9' || 'a' <= r && r <= 'z'
		if !alnum && (i == 0 || r != '.' && r != '_' && r != '-') {
			ok = false
		}
	}
	if !ok {
		return fmt.Errorf("invalid name %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return nil
}

// checkURL accepts an http:// or https:// URL with a host.
func checkURL(s, example string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Hostname() == "" {
		return fmt.Errorf("invalid URL %q: want http:// or https:// and a host, such as %s", s, example)
	}
	return nil
}

func (d *deployValidator) tokens(parent, token, tokenFile string) {
	if token != "" && tokenFile != "" {
		d.errorf(d.c.key(parent, "token_file"), "token and token_file are both set; use one")
	}
}

func (d *deployValidator) environment(e *Environment, ep string) {
	c := d.c
	if err := checkName(e.Name); err != nil {
		d.errorf(ep, "%v", err)
	}
	d.lb(e, c.key(ep, "lb"))
	ap := c.key(ep, "agents")
	d.tokens(ap, e.Agents.Token, e.Agents.TokenFile)
	d.hosts(e, ep)
	d.sshBlock(e, ep)
	sp := c.key(ep, "strategy")
	var set []string
	for _, s := range []struct {
		key string
		set bool
	}{{"rolling", e.Strategy.Rolling != nil}, {"blue_green", e.Strategy.BlueGreen != nil}, {"swap", e.Strategy.Swap != nil}, {"canary", e.Strategy.Canary != nil}} {
		if s.set {
			set = append(set, s.key)
		}
	}
	switch {
	case len(set) > 1:
		// Only one gets its defaults: checking the others would read
		// values never filled in.
		d.errorf(c.key(sp, set[1]), "%s and %s are both set: an environment has one strategy", set[0], set[1])
	case e.Strategy.BlueGreen != nil:
		d.blueGreen(e, c.key(ep, "strategy"))
	case e.Strategy.Swap != nil:
		d.swap(e, sp)
	case e.Strategy.Canary != nil:
		d.canary(e, sp)
	default:
		d.rolling(e, c.key(sp, "rolling"))
	}
	if e.Verify != nil {
		d.verify(e.Verify, c.key(ep, "verify"))
	}
	if e.Rollback != RollbackAuto && e.Rollback != RollbackManual {
		d.errorf(c.key(ep, "rollback"), "unknown rollback policy %q (want %s or %s)", e.Rollback, RollbackAuto, RollbackManual)
	}
}

// lbDrivers are the load balancer drivers zerodown knows, in the order
// error messages list them.
var lbDrivers = []string{DriverBuiltin, DriverHAProxy, DriverNginx, DriverAWSELB, DriverAWSALB}

func (d *deployValidator) lb(e *Environment, lp string) {
	c, lb := d.c, &e.LB
	switch lb.Driver {
	case DriverBuiltin:
		admin := c.key(lp, "admin")
		if lb.Admin == "" {
			d.errorf(admin, "required by the builtin driver: the URL of the admin API of zerodown lb, such as http://127.0.0.1:9100")
		} else if err := checkURL(lb.Admin, "http://127.0.0.1:9100"); err != nil {
			d.errorf(admin, "%v", err)
		}
		pool := c.key(lp, "pool")
		if e.Strategy.BlueGreen != nil {
			if lb.Pool != "" {
				d.errorf(pool, "unused under blue_green: each host names its pool (hosts[].pool), one of strategy.blue_green.pools")
			}
		} else if lb.Pool == "" {
			d.errorf(pool, "required by the builtin driver: the pool of zerodown lb that serves this environment")
		} else if err := checkPoolName(lb.Pool); err != nil {
			d.errorf(pool, "%v", err)
		}
	case DriverHAProxy:
		if lb.Socket == "" {
			d.errorf(c.key(lp, "socket"), "required by the haproxy driver: HAProxy's stats socket at level admin, a path such as /run/haproxy/admin.sock or host:port such as 127.0.0.1:9999")
		} else if !strings.HasPrefix(lb.Socket, "/") && !strings.HasPrefix(lb.Socket, "./") {
			if _, _, err := net.SplitHostPort(lb.Socket); err != nil {
				d.errorf(c.key(lp, "socket"), "%q is neither a unix socket path nor host:port", lb.Socket)
			}
		}
		switch {
		case e.Strategy.BlueGreen != nil && lb.Backend != "":
			d.errorf(c.key(lp, "backend"), "unused under blue_green: each host names its backend (hosts[].pool), one of strategy.blue_green.pools")
		case e.Strategy.BlueGreen != nil && lb.Map == "":
			d.errorf(c.key(lp, "map"), "required by blue_green on the haproxy driver: the map HAProxy's use_backend rules read, by the path HAProxy loaded it from, such as /etc/haproxy/bluegreen.map (docs/strategies.md)")
		case e.Strategy.BlueGreen == nil && lb.Backend == "":
			d.errorf(c.key(lp, "backend"), "required by the haproxy driver: the backend whose servers are the hosts' targets")
		case e.Strategy.BlueGreen == nil && lb.Map != "":
			d.errorf(c.key(lp, "map"), "the blue-green map is used by strategy.blue_green only")
		}
	case DriverNginx:
		if lb.UpstreamFile == "" {
			d.errorf(c.key(lp, "upstream_file"), "required by the nginx driver: the include file zerodown owns, holding the upstream block, such as /etc/nginx/conf.d/app-upstream.conf")
		}
		switch {
		case e.Strategy.BlueGreen != nil && lb.Upstream != "":
			d.errorf(c.key(lp, "upstream"), "unused under blue_green: the upstreams are strategy.blue_green.pools, each host names its own (hosts[].pool)")
		case e.Strategy.BlueGreen != nil && lb.SwitchFile == "":
			d.errorf(c.key(lp, "switch_file"), "required by blue_green on the nginx driver: the include file zerodown owns that maps $zerodown_live and $zerodown_preview to the upstreams, such as /etc/nginx/conf.d/app-bluegreen.conf (docs/strategies.md)")
		case e.Strategy.BlueGreen == nil && lb.SwitchFile != "":
			d.errorf(c.key(lp, "switch_file"), "the blue-green switch file is used by strategy.blue_green only")
		case lb.SwitchFile != "" && filepath.Clean(lb.SwitchFile) == filepath.Clean(lb.UpstreamFile):
			d.errorf(c.key(lp, "switch_file"), "is upstream_file too: a switch rewrites its file whole, which would delete the upstreams; use a file of its own")
		}
		if e.Strategy.BlueGreen == nil && lb.Upstream == "" {
			d.errorf(c.key(lp, "upstream"), "required by the nginx driver: the name of the upstream block in upstream_file, such as app")
		} else if lb.Upstream != "" && !nginxName.MatchString(lb.Upstream) {
			d.errorf(c.key(lp, "upstream"), "%q is not an nginx upstream name (letters, digits, '_', '-', '.')", lb.Upstream)
		}
		for _, k := range []struct {
			key  string
			argv []string
		}{{"test", lb.Test}, {"reload", lb.Reload}} {
			if len(k.argv) == 0 || k.argv[0] == "" {
				d.errorf(c.key(lp, k.key), "the command is empty: a program and its arguments, such as [%s]", strings.Join(map[string][]string{"test": DefaultNginxTest, "reload": DefaultNginxReload}[k.key], ", "))
			}
		}
		// zerodown reads worker_shutdown_timeout by running test with -T
		// (test and dump) in place of -t.
		if len(lb.Test) > 0 && lb.Test[0] != "" && !slices.Contains(lb.Test, "-t") {
			d.errorf(c.key(lp, "test"), "the test command has no -t argument: zerodown runs it with -T in its place to read worker_shutdown_timeout, such as [nginx, -c, /etc/nginx/nginx.conf, -t]")
		}
	case DriverAWSELB:
		if lb.Name == "" {
			d.errorf(c.key(lp, "name"), "required by the aws-elb driver: the classic load balancer's name, such as my-classic-elb")
		}
		d.aws(lb, lp)
	case DriverAWSALB:
		if e.Strategy.BlueGreen != nil {
			if lb.TargetGroup != "" {
				d.errorf(c.key(lp, "target_group"), "unused under blue_green: the target groups are strategy.blue_green.pools, and each host names its own (hosts[].pool)")
			}
			if lb.Listener == "" {
				d.errorf(c.key(lp, "listener"), "required by blue_green on the aws-alb driver: the ARN of the listener users reach, whose default action forwards to the live target group")
			}
			d.aws(lb, lp)
			break
		}
		if lb.PreviewListener != "" {
			d.errorf(c.key(lp, "preview_listener"), "used by strategy.blue_green only")
		}
		if e.Strategy.Canary != nil {
			if lb.CanaryTargetGroup == "" {
				d.errorf(c.key(lp, "canary_target_group"), "required by canary on the aws-alb driver: an ALB weighs target groups, not targets, so the canary hosts (the first strategy.canary.hosts) need a target group of their own")
			}
			if lb.Listener == "" {
				d.errorf(c.key(lp, "listener"), "required by canary on the aws-alb driver: the ARN of the listener users reach, whose default action zerodown points at target_group and canary_target_group by weight")
			}
		} else {
			if lb.Listener != "" {
				d.errorf(c.key(lp, "listener"), "used by strategy.blue_green and strategy.canary only")
			}
			if lb.CanaryTargetGroup != "" {
				d.errorf(c.key(lp, "canary_target_group"), "used by strategy.canary only")
			}
		}
		d.targetGroup(lb, lp, "target_group", lb.TargetGroup, true)
		d.targetGroup(lb, lp, "canary_target_group", lb.CanaryTargetGroup, false)
		if lb.CanaryTargetGroup != "" && lb.CanaryTargetGroup == lb.TargetGroup {
			d.errorf(c.key(lp, "canary_target_group"), "the same group as target_group: the canary hosts need a target group of their own")
		}
		d.aws(lb, lp)
	default:
		d.errorf(c.key(lp, "driver"), "unknown driver %q (want one of: %s)", lb.Driver, strings.Join(lbDrivers, ", "))
	}
	d.tokens(lp, lb.Token, lb.TokenFile)
	d.foreignKeys(lb, lp)
}

// foreignKeys reports a key of another driver: a config half-converted
// from one load balancer to another would otherwise be read without it.
func (d *deployValidator) foreignKeys(lb *EnvLB, lp string) {
	for _, k := range []struct {
		key     string
		set     bool
		drivers []string
	}{
		{"admin", lb.Admin != "", []string{DriverBuiltin}},
		{"pool", lb.Pool != "", []string{DriverBuiltin}},
		{"token", lb.Token != "", []string{DriverBuiltin}},
		{"token_file", lb.TokenFile != "", []string{DriverBuiltin}},
		{"socket", lb.Socket != "", []string{DriverHAProxy}},
		{"backend", lb.Backend != "", []string{DriverHAProxy}},
		{"check_inter", lb.CheckInter != 0, []string{DriverHAProxy}},
		{"map", lb.Map != "", []string{DriverHAProxy}},
		{"upstream_file", lb.UpstreamFile != "", []string{DriverNginx}},
		{"upstream", lb.Upstream != "", []string{DriverNginx}},
		{"switch_file", lb.SwitchFile != "", []string{DriverNginx}},
		{"test", len(lb.Test) > 0, []string{DriverNginx}},
		{"reload", len(lb.Reload) > 0, []string{DriverNginx}},
		{"pid_file", lb.PidFile != "", []string{DriverNginx}},
		{"poll_interval", lb.PollInterval != 0, []string{DriverAWSELB, DriverAWSALB}},
		{"name", lb.Name != "", []string{DriverAWSELB}},
		{"target_group", lb.TargetGroup != "", []string{DriverAWSALB}},
		{"listener", lb.Listener != "", []string{DriverAWSALB}},
		{"preview_listener", lb.PreviewListener != "", []string{DriverAWSALB}},
		{"canary_target_group", lb.CanaryTargetGroup != "", []string{DriverAWSALB}},
		{"region", lb.Region != "", []string{DriverAWSELB, DriverAWSALB}},
		{"endpoint", lb.Endpoint != "", []string{DriverAWSELB, DriverAWSALB}},
		{"profile", lb.Profile != "", []string{DriverAWSELB, DriverAWSALB}},
	} {
		if k.set && !slices.Contains(k.drivers, lb.Driver) && slices.Contains(lbDrivers, lb.Driver) {
			of := "the " + k.drivers[0] + " driver"
			if len(k.drivers) > 1 {
				of = "the " + strings.Join(k.drivers, " and ") + " drivers"
			}
			d.errorf(d.c.key(lp, k.key), "%s is a key of %s; the %s driver does not use it", k.key, of, lb.Driver)
		}
	}
}

// nginxName is what nginx accepts as an upstream name here: no spaces,
// braces or semicolons that would break the file zerodown writes.
var nginxName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// ARNRegion is the region field of an ARN (arn:PARTITION:SERVICE:REGION:...).
func ARNRegion(arn string) (string, bool) {
	f := strings.SplitN(arn, ":", 6)
	if len(f) < 6 || f[0] != "arn" || f[3] == "" {
		return "", false
	}
	return f[3], true
}

// aws checks what both AWS drivers share.
// targetGroup checks a target group's ARN, and that region: agrees with it.
func (d *deployValidator) targetGroup(lb *EnvLB, lp, key, arn string, required bool) {
	c := d.c
	if arn == "" {
		if required {
			d.errorf(c.key(lp, key), "required by the aws-alb driver: the target group's ARN, such as arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app/0123456789abcdef")
		}
		return
	}
	if region, ok := ARNRegion(arn); !ok || !strings.Contains(arn, ":targetgroup/") {
		d.errorf(c.key(lp, key), "%q is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)", arn)
	} else if lb.Region != "" && region != lb.Region {
		d.errorf(c.key(lp, "region"), "region %s is not the target group's: %s's ARN says %s", lb.Region, key, region)
	}
}

func (d *deployValidator) aws(lb *EnvLB, lp string) {
	c := d.c
	if lb.Endpoint != "" {
		if err := checkURL(lb.Endpoint, "http://127.0.0.1:4566"); err != nil {
			d.errorf(c.key(lp, "endpoint"), "%v", err)
		}
	}
	if lb.PollInterval < Duration(100*time.Millisecond) {
		d.errorf(c.key(lp, "poll_interval"), "%s is too short: AWS throttles describe calls; use 1s to 5s", time.Duration(lb.PollInterval))
	}
}

func (d *deployValidator) hosts(e *Environment, ep string) {
	c := d.c
	hsp := c.key(ep, "hosts")
	if len(e.Hosts) == 0 {
		d.errorf(hsp, "at least one host is required")
	}
	names := map[string]string{}
	agents := map[string]string{}
	targets := map[string]string{}
	lbNames := map[string]string{} // HAProxy server names and EC2 instance IDs, each once
	for i := range e.Hosts {
		h := &e.Hosts[i]
		hp := c.item(hsp, i)
		np := c.key(hp, "name")
		if h.Name == "" {
			d.errorf(np, "required: a name such as %s-%d", cmp.Or(e.Name, "web"), i+1)
		} else if err := checkName(h.Name); err != nil {
			d.errorf(np, "%v", err)
		} else if prev, dup := names[h.Name]; dup {
			d.errorf(np, "duplicate host name %s (also %s)", h.Name, prev)
		} else {
			names[h.Name] = np
		}

		d.hostKind(e, h, hp)
		agp := c.key(hp, "agent")
		if h.Exec != nil {
			// Checked by hostKind.
		} else if h.SSH != "" {
			// An agent behind SSH is on the host's loopback, the same
			// address on every host; two hosts on one machine need two.
			if dest, err := e.SSHDestination(h); err == nil {
				key := fmt.Sprintf("ssh %s port %d", strings.ToLower(dest.Host), h.AgentPort())
				if prev, dup := agents[key]; dup {
					d.errorf(agp, "the agent of %s on port %d is also %s's: give one of them another agent: http://127.0.0.1:PORT", dest.Host, h.AgentPort(), prev)
				} else {
					agents[key] = h.Name
				}
			}
		} else if h.Agent == "" {
			d.errorf(agp, "required: the URL of the host's zerodown agent, such as http://10.0.0.11:7101 (or ssh: to reach it over SSH, or exec: to deploy with your scripts)")
		} else if err := checkURL(h.Agent, "http://10.0.0.11:7101"); err != nil {
			d.errorf(agp, "%v", err)
		} else {
			u, _ := url.Parse(h.Agent)
			key := u.Scheme + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.Path, "/")
			if prev, dup := agents[key]; dup {
				d.errorf(agp, "duplicate agent %s (also %s)", h.Agent, prev)
			} else {
				agents[key] = agp
			}
		}

		tp := c.key(hp, "target")
		if h.Target == "" {
			d.errorf(tp, "required: the address the load balancer sends this host's traffic to, such as 10.0.0.11:8080")
		} else if norm, err := NormalizeTarget(h.Target); err != nil {
			d.errorf(tp, "%v", err)
		} else if prev, dup := targets[norm]; dup {
			d.errorf(tp, "duplicate target %s (also %s)", h.Target, prev)
		} else {
			targets[norm] = tp
			h.Target = norm
		}
		if h.SwapTarget != "" {
			sp := c.key(hp, "swap_target")
			if norm, err := NormalizeTarget(h.SwapTarget); err != nil {
				d.errorf(sp, "%v", err)
			} else if prev, dup := targets[norm]; dup {
				d.errorf(sp, "duplicate target %s (also %s)", h.SwapTarget, prev)
			} else {
				targets[norm] = sp
				h.SwapTarget = norm
				if ip, _, _ := net.SplitHostPort(norm); h.Target != "" && !strings.HasPrefix(h.Target, ip+":") && !strings.HasPrefix(h.Target, "["+ip+"]:") {
					d.errorf(sp, "%s is not on target %s's address: the two slots are two ports of one host", h.SwapTarget, h.Target)
				}
			}
			if e.Strategy.Swap == nil {
				d.errorf(sp, "swap_target is used by strategy.swap only")
			}
		}
		d.tokens(hp, h.Token, h.TokenFile)
		d.hostLB(e, h, hp)
		// Two hosts on one server or instance would have the wrong one
		// drained while the other restarts in rotation.
		key, kp := "", ""
		switch {
		case e.LB.Driver == DriverHAProxy:
			// Under blue-green the same name may be in each backend.
			backend := ""
			if h.Pool != "" {
				backend = h.Pool + "/"
			}
			key, kp = "server "+backend+cmp.Or(h.Server, h.Name), c.key(hp, "server")
			if h.Server == "" {
				kp = np
			}
		case h.Instance != "":
			key, kp = "instance "+h.Instance, c.key(hp, "instance")
		}
		if key != "" {
			if prev, dup := lbNames[key]; dup {
				d.errorf(kp, "duplicate %s (also %s): each host needs its own", key, prev)
			} else {
				lbNames[key] = kp
			}
		}
	}
}

// hostLB checks what a host says to its environment's load balancer
// driver: an HAProxy server name, an EC2 instance ID.
func (d *deployValidator) hostLB(e *Environment, h *Host, hp string) {
	c := d.c
	if h.Pool != "" && e.Strategy.BlueGreen == nil {
		d.errorf(c.key(hp, "pool"), "a host's pool is used by strategy.blue_green only; the environment's pool is lb.pool")
	}
	if h.Server != "" && e.LB.Driver != DriverHAProxy {
		d.errorf(c.key(hp, "server"), "server names an HAProxy server; the %s driver does not use it", e.LB.Driver)
	}
	ip := c.key(hp, "instance")
	switch {
	case h.Instance == "" && e.LB.Driver == DriverAWSELB:
		d.errorf(ip, "required by the aws-elb driver: the host's EC2 instance ID, such as i-0abc123def4567890")
	case h.Instance != "" && e.LB.Driver != DriverAWSELB && e.LB.Driver != DriverAWSALB:
		d.errorf(ip, "instance names an EC2 instance; the %s driver does not use it", e.LB.Driver)
	case h.Instance != "" && !instanceID.MatchString(h.Instance):
		d.errorf(ip, "%q is not an EC2 instance ID (i- and 8 or 17 hex digits)", h.Instance)
	}
}

// canary checks the steps, the thresholds and that the driver can weigh.
func (d *deployValidator) canary(e *Environment, sp string) {
	c, cn := d.c, e.Strategy.Canary
	cp := c.key(sp, "canary")
	if e.LB.Driver != DriverBuiltin && e.LB.Driver != DriverHAProxy && e.LB.Driver != DriverAWSALB && slices.Contains(lbDrivers, e.LB.Driver) {
		d.errorf(cp, "canary shifts traffic by weight through the builtin, haproxy and aws-alb drivers; the %s driver cannot yet", e.LB.Driver)
	}
	if e.LB.Driver == DriverAWSALB && e.Verify == nil {
		d.errorf(cp, "on the aws-alb driver the canary is compared on the load verifier's answers only (an ALB counts no answers per target): set verify: on the environment")
	}
	if n := len(e.Hosts); n > 0 {
		if k := cn.Hosts.Of(n); k < 1 || k >= n {
			d.errorf(c.key(cp, "hosts"), "%s of %d hosts is %d canary hosts: want at least 1 and fewer than all, so a baseline is left to compare with", cn.Hosts, n, k)
		}
	}
	stp := c.key(cp, "steps")
	if len(cn.Steps) == 0 {
		d.errorf(stp, "want at least one step, such as [{weight: 10, pause: 30s}, {weight: 50, pause: 1m}, {weight: 100}]")
	}
	prev := 0
	for i, st := range cn.Steps {
		ip := c.item(stp, i)
		last := i == len(cn.Steps)-1
		switch {
		case st.Weight < 1 || st.Weight > 100:
			d.errorf(c.key(ip, "weight"), "a share of the traffic in percent, from 1 to 100, got %d", st.Weight)
		case st.Weight <= prev:
			d.errorf(c.key(ip, "weight"), "%d is not above the step before (%d): each step gives the canary more", st.Weight, prev)
		case last && st.Weight != 100:
			d.errorf(c.key(ip, "weight"), "the last step is 100, got %d: the canary then serves everything before the rest is updated", st.Weight)
		case !last && st.Pause <= 0:
			d.errorf(c.key(ip, "pause"), "required before the last step: how long the canary holds %d%% while it is compared with the baseline, such as 30s", st.Weight)
		}
		prev = st.Weight
	}
	ap := c.key(cp, "analysis")
	if v := *cn.Analysis.MaxErrorRate; v < 0 || v > 100 {
		d.errorf(c.key(ap, "max_error_rate"), "percentage points from 0 to 100, got %g", v)
	}
	if v := *cn.Analysis.MaxP99Increase; v < 0 {
		d.errorf(c.key(ap, "max_p99_increase"), "a percentage, not negative, got %g", v)
	}
	if cn.Analysis.MinRequests < 1 {
		d.errorf(c.key(ap, "min_requests"), "at least 1, got %d", cn.Analysis.MinRequests)
	}
	if cn.Weight < 1 || cn.Weight > 256 {
		d.errorf(c.key(cp, "weight"), "from 1 to 256 (HAProxy's range), got %d", cn.Weight)
	}
}

// swap checks that every host has a second slot the load balancer can
// reach.
func (d *deployValidator) swap(e *Environment, sp string) {
	c := d.c
	switch e.LB.Driver {
	case DriverBuiltin, DriverHAProxy:
	default:
		if slices.Contains(lbDrivers, e.LB.Driver) {
			d.errorf(c.key(sp, "swap"), "swap moves a host between two targets through the builtin and haproxy drivers; the %s driver cannot yet", e.LB.Driver)
		}
	}
	hsp := c.key(c.key("environments", e.Name), "hosts")
	for i, h := range e.Hosts {
		if h.SwapTarget == "" {
			d.errorf(c.item(hsp, i), "host %s: swap_target is required by the swap strategy: the address of the app's second slot (the agent's swap_port), such as 10.0.0.11:8081", h.Name)
		}
	}
}

// blueGreen checks the strategy against the hosts and the driver: two
// pools the driver can switch between, every host in one, a preview.
func (d *deployValidator) blueGreen(e *Environment, sp string) {
	c, bg := d.c, e.Strategy.BlueGreen
	bp := c.key(sp, "blue_green")
	alb := e.LB.Driver == DriverAWSALB
	if e.LB.Driver == DriverAWSELB {
		d.errorf(bp, "blue_green switches pools through the builtin, haproxy, nginx and aws-alb drivers; a classic ELB has one pool")
	}
	pp := c.key(bp, "pools")
	pools := map[string]int{}
	switch {
	case len(bg.Pools) != 2:
		d.errorf(pp, "want two pools, such as [blue, green]: the first is the one the load balancer's live routes name, the second the preview's")
	case bg.Pools[0] == bg.Pools[1]:
		d.errorf(c.item(pp, 1), "the two pools are both %s", bg.Pools[0])
	default:
		for i, name := range bg.Pools {
			switch {
			case alb && !strings.Contains(name, ":targetgroup/"):
				d.errorf(c.item(pp, i), "%q is not a target group ARN: under aws-alb the pools are the two target groups' ARNs", name)
			case e.LB.Driver == DriverNginx && !nginxName.MatchString(name):
				d.errorf(c.item(pp, i), "%q is not an nginx upstream name (letters, digits, '_', '-', '.')", name)
			case !alb:
				if err := checkPoolName(name); err != nil {
					d.errorf(c.item(pp, i), "%v", err)
				}
			}
			pools[name] = 0
		}
	}
	hsp := c.key(c.key("environments", e.Name), "hosts")
	for i, h := range e.Hosts {
		hp := c.key(c.item(hsp, i), "pool")
		n, ok := pools[h.Pool]
		switch {
		case len(pools) == 0:
		case h.Pool == "":
			d.errorf(c.item(hsp, i), "host %s: pool is required under blue_green: %s or %s", h.Name, bg.Pools[0], bg.Pools[1])
		case !ok:
			d.errorf(hp, "pool %s is not one of strategy.blue_green.pools (%s, %s)", h.Pool, bg.Pools[0], bg.Pools[1])
		default:
			pools[h.Pool] = n + 1
		}
	}
	for i, name := range bg.Pools {
		if n, ok := pools[name]; ok && n == 0 && len(e.Hosts) > 0 {
			d.errorf(c.item(pp, i), "no host is in pool %s: blue-green needs hosts in both pools", name)
		}
	}
	prp := c.key(bp, "preview")
	if bg.Preview == "" {
		d.errorf(prp, "required: a URL through the preview route, which reaches the idle pool, such as http://127.0.0.1:8081/")
	} else if err := checkURL(bg.Preview, "http://127.0.0.1:8081/"); err != nil {
		d.errorf(prp, "%v", err)
	}
	for i, st := range bg.Smoke {
		if err := checkURL(st.URL, bg.Preview); err != nil {
			d.errorf(c.key(c.item(c.key(bp, "smoke"), i), "url"), "%v", err)
		}
	}
	lp := c.key(bp, "preview_load")
	if r := bg.PreviewLoad.Rate; r != nil && *r < 0 {
		d.errorf(c.key(lp, "rate"), "must not be negative (0 turns the preview load off)")
	}
	if bg.PreviewLoad.Duration < 0 {
		d.errorf(c.key(lp, "duration"), "must not be negative")
	}
}

// instanceID is an EC2 instance ID, old and new length.
var instanceID = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// rolling checks min_healthy against the hosts: it must leave at least one
// host to update, and every batch must leave min_healthy hosts in service.
func (d *deployValidator) rolling(e *Environment, rp string) {
	c, r, n := d.c, e.Strategy.Rolling, len(e.Hosts)
	if n == 0 {
		return
	}
	mhp := c.key(rp, "min_healthy")
	rawRolling := rawKey(rawKey(rawKey(rawKey(d.raw, "environments"), e.Name), "strategy"), "rolling")
	written := rawKey(rawRolling, "min_healthy") != nil
	mh := r.MinHealthy.Of(n)
	if mh >= n {
		// Only a written value gets here: the default is less than n.
		what := r.MinHealthy.String()
		if r.MinHealthy.Percent {
			what = fmt.Sprintf("%s (%d hosts)", what, mh)
		}
		d.errorf(mhp, "%s must be less than the number of hosts (%d), or no host can be updated", what, n)
		return
	}
	left := n
	for k := 0; left > 0; k++ {
		entry := min(k, len(r.Batch)-1)
		size := min(r.Batch[entry].Of(n), left)
		if size < 1 {
			return // reported by checkQuantities
		}
		if n-size < mh {
			if written {
				d.errorf(mhp, "min_healthy %s needs %d of %d hosts in service, but batch %d takes %d out, leaving %d",
					r.MinHealthy, mh, n, k+1, size, n-size)
				return
			}
			bp := c.key(rp, "batch")
			if _, isList := rawKey(rawRolling, "batch").([]any); isList {
				bp = c.item(bp, entry)
			}
			d.errorf(bp, "batch %d takes %d of %d hosts out, leaving %d, but the default min_healthy is %d; set min_healthy: 0 to allow it",
				k+1, size, n, n-size, mh)
			return
		}
		left -= size
	}
}

func (d *deployValidator) verify(vf *Verify, vp string) {
	c := d.c
	up := c.key(vp, "url")
	if vf.URL == "" {
		d.errorf(up, "required: the URL the load is fired at, through the load balancer, such as http://127.0.0.1:8080/")
	} else if err := checkURL(vf.URL, "http://127.0.0.1:8080/"); err != nil {
		d.errorf(up, "%v", err)
	}
	if vf.Rate <= 0 {
		d.errorf(c.key(vp, "rate"), "required: requests per second, such as 200")
	}
	if *vf.MaxFailed < 0 {
		d.errorf(c.key(vp, "max_failed"), "must not be negative, got %d", *vf.MaxFailed)
	}
	if *vf.MaxDropped < 0 {
		d.errorf(c.key(vp, "max_dropped"), "must not be negative, got %d", *vf.MaxDropped)
	}
	if vf.MaxLBRetries != nil && *vf.MaxLBRetries < 0 {
		d.errorf(c.key(vp, "max_lb_retries"), "must not be negative, got %d", *vf.MaxLBRetries)
	}
	if vf.Post != "" && !strings.HasPrefix(vf.Post, "/") {
		if err := checkURL(vf.Post, "http://127.0.0.1:8080/orders"); err != nil {
			d.errorf(c.key(vp, "post"), "a path such as /orders, or %v", err)
		}
	}
}

func (d *deployValidator) pipeline(p *Pipeline, pp string) {
	c, cfg := d.c, d.cfg
	if err := checkName(p.Name); err != nil {
		d.errorf(pp, "%v", err)
	}
	ep := c.key(pp, "environment")
	env := cfg.Environments[p.Environment]
	if p.Environment == "" {
		d.errorf(ep, "required: the environment the pipeline deploys to (environments: %s)", listSome(cfg.EnvOrder))
	} else if env == nil {
		d.errorf(ep, "unknown environment %q (environments: %s)", p.Environment, listSome(cfg.EnvOrder))
	}
	ssp := c.key(pp, "stages")
	if len(p.Stages) == 0 {
		d.errorf(ssp, "at least one stage is required")
	}
	rawStages := rawKey(rawKey(rawKey(d.raw, "pipelines"), p.Name), "stages")
	stages := map[string]string{}
	for si := range p.Stages {
		st := &p.Stages[si]
		sp := c.item(ssp, si)
		np := c.key(sp, "name")
		if st.Name == "" {
			d.errorf(np, "required: a name such as update-web-1")
		} else if prev, dup := stages[st.Name]; dup {
			d.errorf(np, "duplicate stage name %s (also %s)", st.Name, prev)
		} else {
			stages[st.Name] = np
		}
		jsp := c.key(sp, "jobs")
		if len(st.Jobs) == 0 {
			d.errorf(jsp, "at least one job is required")
		}
		rawJobs := rawKey(rawItem(rawStages, si), "jobs")
		jobs := map[string]string{}
		for ji := range st.Jobs {
			j := &st.Jobs[ji]
			jp := c.item(jsp, ji)
			if j.Name != "" {
				jnp := c.key(jp, "name")
				if prev, dup := jobs[j.Name]; dup {
					d.errorf(jnp, "duplicate job name %s in this stage (also %s)", j.Name, prev)
				} else {
					jobs[j.Name] = jnp
				}
			}
			tsp := c.key(jp, "tasks")
			if len(j.Tasks) == 0 {
				d.errorf(tsp, "at least one task is required")
			}
			rawTasks := rawKey(rawItem(rawJobs, ji), "tasks")
			for ti := range j.Tasks {
				d.task(&j.Tasks[ti], rawItem(rawTasks, ti), c.item(tsp, ti), env, false)
			}
		}
	}
}

// TaskKinds are the keys that say what a task does, in the order error
// messages list them; a task has exactly one.
var TaskKinds = []string{"upload", "detach", "attach", "deploy", "wait-healthy", "wait-drained", "retire", "sleep", "exec", "smoke", "approve", "pause", "switch", "preview-load", "weights", "analyze"}

// slot checks a swap task's slot against its kind and its host.
func (d *deployValidator) slot(t *Task, kind, sp string, env *Environment) {
	want := map[string][]string{"deploy": {"idle"}, "attach": {"new"}, "wait-healthy": {"new"}, "detach": {"old"}, "wait-drained": {"old"}}[kind]
	if want == nil {
		d.errorf(sp, "a %s task has no slot: slots are for deploy (idle), attach and wait-healthy (new), detach and wait-drained (old)", kind)
		return
	}
	if !slices.Contains(want, t.Slot) {
		d.errorf(sp, "a %s task's slot is %s, not %q", kind, strings.Join(want, " or "), t.Slot)
		return
	}
	if env == nil {
		return
	}
	name := *t.hostOf(kind)
	for _, h := range env.Hosts {
		if h.Name == name && h.SwapTarget == "" {
			d.errorf(sp, "host %s has no swap_target, so it has one slot", name)
		}
	}
}

// canaryHosts checks a canary task's hosts: some, all of env.
func (d *deployValidator) canaryHosts(hosts []string, hp string, env *Environment) {
	if len(hosts) == 0 {
		d.errorf(hp, "want the canary hosts, such as [web-1]")
	}
	if env == nil {
		return
	}
	for i, h := range hosts {
		d.taskHost(h, d.c.item(hp, i), env)
	}
}

// switchTask checks a switch between the environment's blue-green pools.
func (d *deployValidator) switchTask(t *SwitchTask, kp string, env *Environment) {
	if t == nil {
		d.errorf(kp, "want {from: POOL, to: POOL}")
		return
	}
	if env == nil {
		return
	}
	bg := env.Strategy.BlueGreen
	if bg == nil || len(bg.Pools) != 2 {
		d.errorf(kp, "environment %s has no strategy.blue_green: a switch moves live traffic between its two pools", env.Name)
		return
	}
	for _, k := range []struct{ key, pool string }{{"from", t.From}, {"to", t.To}} {
		if !slices.Contains(bg.Pools, k.pool) {
			d.errorf(d.c.key(kp, k.key), "want one of strategy.blue_green.pools (%s, %s), not %q", bg.Pools[0], bg.Pools[1], k.pool)
		}
	}
	if t.From == t.To && t.From != "" {
		d.errorf(d.c.key(kp, "to"), "from and to are both %s", t.From)
	}
}

// loadTask checks a preview load.
func (d *deployValidator) loadTask(t *LoadTask, kp string) {
	if t == nil {
		d.errorf(kp, "want {url: URL, rate: N, duration: 3s}")
		return
	}
	if err := checkURL(t.URL, "http://127.0.0.1:8081/"); err != nil {
		d.errorf(d.c.key(kp, "url"), "%v", err)
	}
	if t.Rate <= 0 {
		d.errorf(d.c.key(kp, "rate"), "want requests a second, more than 0")
	}
	if t.Duration <= 0 {
		d.errorf(d.c.key(kp, "duration"), "want a duration such as 3s")
	}
}

// hostOf is the host a task of a host kind names.
func (t *Task) hostOf(kind string) *string {
	switch kind {
	case "detach":
		return &t.Detach
	case "attach":
		return &t.Attach
	case "deploy":
		return &t.Deploy
	case "wait-healthy":
		return &t.WaitHealthy
	case "wait-drained":
		return &t.WaitDrained
	case "retire":
		return &t.Retire
	case "upload":
		return &t.Upload
	}
	return nil
}

// kinds lists the task kinds set: written in the file (also as null) or
// with a value.
func (t *Task) kinds(raw any) []string {
	var out []string
	for _, k := range TaskKinds {
		set := rawHas(raw, k)
		switch k {
		case "sleep":
			set = set || t.Sleep != 0
		case "exec":
			set = set || t.Exec != nil
		case "smoke":
			set = set || t.Smoke != nil
		case "approve":
			set = set || t.Approve != nil
		case "pause":
			set = set || t.Pause != nil
		case "switch":
			set = set || t.Switch != nil
		case "preview-load":
			set = set || t.PreviewLoad != nil
		case "weights":
			set = set || t.Weights != nil
		case "analyze":
			set = set || t.Analyze != nil
		default:
			set = set || *t.hostOf(k) != ""
		}
		if set {
			out = append(out, k)
		}
	}
	return out
}

// task checks one task; env is the pipeline's environment, nil when it is
// missing (reported already). onCancel is true for the task of an
// on_cancel, which cannot have its own.
func (d *deployValidator) task(t *Task, raw any, tp string, env *Environment, onCancel bool) {
	c := d.c
	kinds := t.kinds(raw)
	switch len(kinds) {
	case 0:
		d.errorf(tp, "no task kind; want one of %s", strings.Join(TaskKinds, ", "))
	case 1:
	default:
		d.errorf(tp, "more than one task kind: %s; write a task for each", strings.Join(kinds, ", "))
	}
	for _, k := range kinds {
		kp := c.key(tp, k)
		switch k {
		case "sleep":
			if t.Sleep <= 0 {
				d.errorf(kp, "want a duration such as 30s")
			}
		case "exec":
			d.exec(t.Exec, kp)
		case "smoke":
			d.smoke(t.Smoke, kp)
		case "approve", "pause": // pause.for > 0 is the Duration's own check
		case "switch":
			d.switchTask(t.Switch, kp, env)
		case "preview-load":
			d.loadTask(t.PreviewLoad, kp)
		case "weights":
			if t.Weights == nil {
				d.errorf(kp, "want {canary: [HOST...], share: PERCENT, base: WEIGHT}")
			} else {
				d.canaryHosts(t.Weights.Canary, c.key(kp, "canary"), env)
				if t.Weights.Share < 0 || t.Weights.Share > 100 {
					d.errorf(c.key(kp, "share"), "a percentage from 0 (every host back on base) to 100, got %d", t.Weights.Share)
				}
				if t.Weights.Base < 1 || t.Weights.Base > 256 {
					d.errorf(c.key(kp, "base"), "every host's weight outside a canary, from 1 to 256, got %d", t.Weights.Base)
				}
			}
		case "analyze":
			if t.Analyze == nil {
				d.errorf(kp, "want {canary: [HOST...], for: 30s}")
			} else {
				d.canaryHosts(t.Analyze.Canary, c.key(kp, "canary"), env)
				if t.Analyze.For <= 0 {
					d.errorf(c.key(kp, "for"), "want a duration such as 30s")
				}
				if t.Analyze.MinRequests < 1 {
					d.errorf(c.key(kp, "min_requests"), "at least 1, got %d", t.Analyze.MinRequests)
				}
			}
		default:
			if h := t.hostOf(k); h != nil {
				d.taskHost(*h, kp, env)
			}
		}
	}
	if t.Slot != "" && len(kinds) == 1 {
		d.slot(t, kinds[0], c.key(tp, "slot"), env)
	}
	if t.RunIf != RunIfPassed && t.RunIf != RunIfFailed && t.RunIf != RunIfAny {
		d.errorf(c.key(tp, "run_if"), "unknown run_if %q (want %s, %s or %s)", t.RunIf, RunIfPassed, RunIfFailed, RunIfAny)
	}
	if t.OnCancel != nil {
		ocp := c.key(tp, "on_cancel")
		if onCancel {
			d.errorf(ocp, "an on_cancel task cannot have its own on_cancel")
		} else {
			d.task(t.OnCancel, rawKey(raw, "on_cancel"), ocp, env, true)
		}
	}
}

func (d *deployValidator) taskHost(name, kp string, env *Environment) {
	var hosts []string
	if env != nil {
		for _, h := range env.Hosts {
			if h.Name == name && name != "" {
				return
			}
			if !slices.Contains(hosts, h.Name) {
				hosts = append(hosts, h.Name)
			}
		}
	}
	switch {
	case name == "" && env != nil:
		d.errorf(kp, "want a host name (hosts of %s: %s)", env.Name, listSome(hosts))
	case name == "":
		d.errorf(kp, "want a host name")
	case env != nil:
		d.errorf(kp, "unknown host %q (hosts of %s: %s)", name, env.Name, listSome(hosts))
	}
}

func (d *deployValidator) exec(x *ExecTask, kp string) {
	c := d.c
	cp := c.key(kp, "command")
	switch {
	case x == nil || len(x.Command) == 0:
		d.errorf(cp, "required: the command line to run, such as [./smoke-test.sh, --quick]")
		return
	case strings.TrimSpace(x.Command[0]) == "":
		d.errorf(c.item(cp, 0), "the program is empty")
	}
	ep := c.key(kp, "env")
	for _, k := range slices.Sorted(maps.Keys(x.Env)) {
		if !validEnvName(k) {
			d.errorf(c.key(ep, k), "invalid variable name: use letters, digits and _, not starting with a digit")
		}
	}
}

func (d *deployValidator) smoke(s *SmokeTask, kp string) {
	c := d.c
	up := c.key(kp, "url")
	if s == nil || s.URL == "" {
		d.errorf(up, "required: the URL to check, such as http://127.0.0.1:8080/healthz")
		return
	}
	if err := checkURL(s.URL, "http://127.0.0.1:8080/healthz"); err != nil {
		d.errorf(up, "%v", err)
	}
	if s.Status < 100 || s.Status > 599 {
		d.errorf(c.key(kp, "status"), "must be from 100 to 599, got %d", s.Status)
	}
}

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

const deployTestToken = "lb-token-for-tests"

// beside is where a path written in the config file at file resolves to.
func beside(t *testing.T, file, rel string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, rel)
}

// withoutPositions drops what the loader keeps for CheckTokenFiles, which
// TestDeployPaths covers, so that a whole config compares to a literal.
func withoutPositions(cfg *Deploy) *Deploy {
	cfg.tokenFiles = nil
	return cfg
}

func dumpDeploy(cfg *Deploy) string {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func helloApp() App {
	return App{
		Name:   "hello",
		Run:    []string{"./hello", "--listen", "127.0.0.1:${PORT}"},
		Env:    map[string]string{"GREETING": "hello"},
		Health: AppHealth{Path: "/healthz", Interval: Duration(250 * time.Millisecond), Timeout: Duration(30 * time.Second)},
		Stop:   AppStop{Signal: "SIGTERM", Timeout: Duration(30 * time.Second)},
	}
}

// designStaging is the staging environment of DESIGN.md as loaded.
func designStaging() *Environment {
	return &Environment{
		Name: "staging",
		LB:   EnvLB{Driver: DriverBuiltin, Admin: "http://127.0.0.1:9100", Pool: "hello", Token: deployTestToken},
		Hosts: []Host{
			{Name: "staging-1", Agent: "http://127.0.0.1:7101", Target: "127.0.0.1:8101"},
			{Name: "staging-2", Agent: "http://127.0.0.1:7102", Target: "127.0.0.1:8102"},
		},
		Strategy: Strategy{Rolling: &Rolling{
			Batch:          BatchSpec{{N: 1}},
			MinHealthy:     Quantity{N: 1},
			DrainTimeout:   Duration(DefaultDrainTimeout),
			HealthTimeout:  Duration(DefaultRolloutHealthTimeout),
			UploadParallel: DefaultUploadParallel,
		}},
		Verify:   &Verify{URL: "http://127.0.0.1:8080/", Rate: 200, MaxFailed: ptr(0), MaxDropped: ptr(0)},
		Rollback: RollbackAuto,
	}
}

// stagingByHand is the hand-written pipeline of DESIGN.md as loaded.
func stagingByHand() *Pipeline {
	task := func(t Task) Task { t.RunIf = RunIfPassed; return t }
	return &Pipeline{
		Name:        "staging-by-hand",
		Environment: "staging",
		Stages: []Stage{
			{Name: "update-staging-1", Jobs: []Job{{Tasks: []Task{task(Task{Detach: "staging-1"}), task(Task{Deploy: "staging-1"})}}}},
			{Name: "attach-staging-1", Jobs: []Job{{Tasks: []Task{task(Task{Attach: "staging-1"})}}}},
			{Name: "update-staging-2", Jobs: []Job{{Tasks: []Task{
				task(Task{Detach: "staging-2"}), task(Task{Deploy: "staging-2"}), task(Task{Attach: "staging-2"}),
			}}}},
		},
	}
}

func TestParseDeployDesignExample(t *testing.T) {
	t.Setenv("ZERODOWN_LB_TOKEN", deployTestToken)
	path := filepath.Join("testdata", "deploy", "design.yaml")
	got, err := LoadDeploy(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Deploy{
		Path:          path,
		App:           helloApp(),
		Environments:  map[string]*Environment{"staging": designStaging()},
		Pipelines:     map[string]*Pipeline{"staging-by-hand": stagingByHand()},
		State:         beside(t, path, DefaultStatePath),
		EnvOrder:      []string{"staging"},
		PipelineOrder: []string{"staging-by-hand"},
	}
	if !reflect.DeepEqual(withoutPositions(got), want) {
		t.Errorf("got  %s\nwant %s", dumpDeploy(got), dumpDeploy(want))
	}
}

func TestLoadDeployExample(t *testing.T) {
	t.Setenv("ZERODOWN_LB_TOKEN", deployTestToken)
	path := filepath.Join("..", "..", "examples", "zerodown.yaml")
	got, err := LoadDeploy(path)
	if err != nil {
		t.Fatal(err)
	}
	const agentToken = "/etc/zerodown/agent.token"
	production := &Environment{
		Name:   "production",
		LB:     EnvLB{Driver: DriverBuiltin, Admin: "http://10.0.1.10:9100", Pool: "hello", TokenFile: "/etc/zerodown/lb-admin.token"},
		Agents: Agents{TokenFile: agentToken},
		Hosts: []Host{
			{Name: "prod-1", Agent: "http://10.0.1.11:7101", Target: "10.0.1.11:8080", TokenFile: agentToken},
			{Name: "prod-2", Agent: "http://10.0.1.12:7101", Target: "10.0.1.12:8080", TokenFile: agentToken},
		},
		Strategy: Strategy{Rolling: &Rolling{
			Batch:          BatchSpec{{N: 1}},
			MinHealthy:     Quantity{N: 1},
			DrainTimeout:   Duration(45 * time.Second),
			HealthTimeout:  Duration(60 * time.Second),
			Bake:           Duration(10 * time.Second),
			UploadParallel: DefaultUploadParallel,
		}},
		Verify: &Verify{URL: "http://10.0.1.10:8080/", Rate: 100, MaxFailed: ptr(0), MaxDropped: ptr(0),
			P99: Duration(500 * time.Millisecond)},
		Rollback: RollbackAuto,
	}
	want := &Deploy{
		Path:          path,
		App:           helloApp(),
		Environments:  map[string]*Environment{"staging": designStaging(), "production": production},
		Pipelines:     map[string]*Pipeline{"staging-by-hand": stagingByHand()},
		State:         beside(t, path, DefaultStatePath),
		EnvOrder:      []string{"staging", "production"},
		PipelineOrder: []string{"staging-by-hand"},
	}
	if !reflect.DeepEqual(withoutPositions(got), want) {
		t.Errorf("got  %s\nwant %s", dumpDeploy(got), dumpDeploy(want))
	}
}

func TestParseDeployFull(t *testing.T) {
	path := filepath.Join("testdata", "deploy", "full.yaml")
	got, err := LoadDeploy(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "/var/lib/zerodown/state.db" || got.App.Stop.Signal != "SIGINT" ||
		!slices.Equal(got.App.Run, []string{"./hello", "--listen", "127.0.0.1:${PORT}", "--version", "${VERSION}"}) {
		t.Errorf("top level: %s", dumpDeploy(got))
	}
	if !slices.Equal(got.EnvOrder, []string{"production", "canary"}) || !slices.Equal(got.PipelineOrder, []string{"release"}) {
		t.Errorf("order: %v %v", got.EnvOrder, got.PipelineOrder)
	}
	prod := got.Environments["production"]
	wantHosts := []Host{
		{Name: "web-1", Agent: "https://10.0.0.11:7101", Target: "10.0.0.11:8080", Token: "shared-agent-token-0123"},
		{Name: "web-2", Agent: "https://10.0.0.12:7101", Target: "[2001:db8::12]:8080", TokenFile: "/etc/web-2.token"},
		{Name: "web-3", Agent: "https://10.0.0.13:7101", Target: "web-3.internal:8080", Token: "own-token-web-3-0123"},
		{Name: "web-4", Agent: "https://10.0.0.14:7101", Target: "10.0.0.14:8080", Token: "shared-agent-token-0123"},
	}
	if !reflect.DeepEqual(prod.Hosts, wantHosts) {
		t.Errorf("hosts: got %+v\nwant %+v", prod.Hosts, wantHosts)
	}
	wantRolling := &Rolling{
		Batch:          BatchSpec{{N: 1}, {N: 25, Percent: true}, {N: 50, Percent: true}},
		MinHealthy:     Quantity{N: 50, Percent: true},
		DrainTimeout:   Duration(45 * time.Second),
		HealthTimeout:  Duration(2 * time.Minute),
		Bake:           Duration(30 * time.Second),
		UploadParallel: 2,
	}
	if !reflect.DeepEqual(prod.Strategy.Rolling, wantRolling) {
		t.Errorf("rolling: got %+v", prod.Strategy.Rolling)
	}
	wantVerify := &Verify{URL: "https://www.example.com/", Rate: 50, MaxFailed: ptr(3), MaxDropped: ptr(1), P99: Duration(250 * time.Millisecond)}
	if !reflect.DeepEqual(prod.Verify, wantVerify) || prod.Rollback != RollbackManual ||
		!reflect.DeepEqual(prod.LB, EnvLB{Driver: DriverBuiltin, Admin: "https://lb.internal:9100/", Pool: "web.v2", TokenFile: "/etc/zerodown/lb.token"}) {
		t.Errorf("production: %s", dumpDeploy(got))
	}
	canary := got.Environments["canary"]
	if canary.Strategy.Rolling.MinHealthy != (Quantity{}) || canary.Verify != nil || canary.LB.Driver != DriverBuiltin {
		t.Errorf("canary: %+v", canary)
	}

	stages := got.Pipelines["release"].Stages
	wantStages := []Stage{
		{Name: "check", Jobs: []Job{{Name: "smoke", Tasks: []Task{
			{Smoke: &SmokeTask{URL: "https://www.example.com/version", Status: 204, Body: "v2"}, RunIf: RunIfPassed, Timeout: Duration(5 * time.Second)},
			{Exec: &ExecTask{Command: []string{"./notify.sh", "failed"}, Env: map[string]string{"CHANNEL": "ops"}, Dir: beside(t, path, "scripts")}, RunIf: RunIfFailed},
		}}}},
		{Name: "approve", Jobs: []Job{{Tasks: []Task{{Approve: &ApproveTask{Message: "ship it?"}, RunIf: RunIfPassed}}}}},
		{Name: "web-1", Jobs: []Job{{Tasks: []Task{
			{Detach: "web-1", RunIf: RunIfPassed, OnCancel: &Task{Attach: "web-1", RunIf: RunIfPassed}},
			{WaitDrained: "web-1", RunIf: RunIfPassed},
			{Deploy: "web-1", RunIf: RunIfPassed},
			{Attach: "web-1", RunIf: RunIfPassed},
			{WaitHealthy: "web-1", RunIf: RunIfPassed},
			{Sleep: Duration(time.Minute), RunIf: RunIfPassed},
			{Approve: &ApproveTask{}, RunIf: RunIfAny},
		}}}},
	}
	if !reflect.DeepEqual(stages, wantStages) {
		got, _ := json.MarshalIndent(stages, "", "  ")
		want, _ := json.MarshalIndent(wantStages, "", "  ")
		t.Errorf("stages: got %s\nwant %s", got, want)
	}
}

// minimalEnv is one environment with n hosts.
func minimalEnv(n int, strategy string) string {
	var b strings.Builder
	b.WriteString("app: {run: [./hello]}\nenvironments:\n  web:\n    lb: {admin: 'http://127.0.0.1:9100', pool: hello}\n    hosts:\n")
	for i := 1; i <= n; i++ {
		b.WriteString("      - {name: web-" + string(rune('0'+i)) + ", agent: 'http://127.0.0.1:710" + string(rune('0'+i)) +
			"', target: '127.0.0.1:810" + string(rune('0'+i)) + "'}\n")
	}
	b.WriteString(strategy)
	return b.String()
}

func TestParseDeployDefaults(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want Rolling
	}{
		{"one host, no strategy", minimalEnv(1, ""), Rolling{Batch: BatchSpec{{N: 1}}}},
		{"two hosts keep one healthy", minimalEnv(2, "    strategy: {}\n"), Rolling{Batch: BatchSpec{{N: 1}}, MinHealthy: Quantity{N: 1}}},
		{"rolling without keys", minimalEnv(3, "    strategy: {rolling: }\n"), Rolling{Batch: BatchSpec{{N: 1}}, MinHealthy: Quantity{N: 1}}},
		{"min_healthy 0 written stays 0", minimalEnv(2, "    strategy: {rolling: {batch: '100%', min_healthy: 0}}\n"),
			Rolling{Batch: BatchSpec{{N: 100, Percent: true}}, MinHealthy: Quantity{}}},
		{"batch scalar", minimalEnv(3, "    strategy: {rolling: {batch: 2, min_healthy: '25%'}}\n"),
			Rolling{Batch: BatchSpec{{N: 2}}, MinHealthy: Quantity{N: 25, Percent: true}}},
		{"batch list", minimalEnv(4, "    strategy: {rolling: {batch: [1, '50%', '100%']}}\n"),
			Rolling{Batch: BatchSpec{{N: 1}, {N: 50, Percent: true}, {N: 100, Percent: true}}, MinHealthy: Quantity{N: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseDeploy("zerodown.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.DrainTimeout = Duration(DefaultDrainTimeout)
			want.HealthTimeout = Duration(DefaultRolloutHealthTimeout)
			want.UploadParallel = DefaultUploadParallel
			e := cfg.Environments["web"]
			if !reflect.DeepEqual(e.Strategy.Rolling, &want) {
				t.Errorf("rolling: got %+v, want %+v", e.Strategy.Rolling, want)
			}
			if e.Name != "web" || e.Rollback != RollbackAuto || e.LB.Driver != DriverBuiltin || cfg.State != beside(t, "zerodown.yaml", DefaultStatePath) ||
				cfg.App.Health.Path != DefaultAppHealthPath || cfg.App.Stop.Signal != DefaultAppStopSignal || e.Verify != nil {
				t.Errorf("defaults: %s", dumpDeploy(cfg))
			}
		})
	}
}

func TestParseDeployTaskDefaults(t *testing.T) {
	doc := minimalEnv(1, `pipelines:
  by-hand:
    environment: web
    stages:
      - name: one
        jobs: [{tasks: [{smoke: {url: 'http://127.0.0.1:8080/'}}, {approve: , on_cancel: {approve: }}]}]
`)
	cfg, err := ParseDeploy("zerodown.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tasks := cfg.Pipelines["by-hand"].Stages[0].Jobs[0].Tasks
	want := []Task{
		{Smoke: &SmokeTask{URL: "http://127.0.0.1:8080/", Status: 200}, RunIf: RunIfPassed},
		{Approve: &ApproveTask{}, RunIf: RunIfPassed, OnCancel: &Task{Approve: &ApproveTask{}, RunIf: RunIfPassed}},
	}
	if !reflect.DeepEqual(tasks, want) {
		t.Errorf("got %+v\nwant %+v", tasks, want)
	}
}

// An alias shares the anchor's value in the decoder; every environment and
// pipeline must still get its own structs and name.
func TestParseDeployAliases(t *testing.T) {
	doc := `app: {run: [./hello]}
environments:
  blue: &env
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: a, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:08101'}, {name: b, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}]
    strategy: {rolling: &r {batch: 1, min_healthy: 0}}
    verify: {url: 'http://127.0.0.1:8080/', rate: 10}
  green: *env
  aqua: {<<: *env, strategy: {rolling: {<<: *r, min_healthy: 1}}}
pipelines:
  one: &p
    environment: blue
    stages: [{name: s, jobs: [{tasks: [{deploy: a}]}]}]
  two: *p
`
	cfg, err := ParseDeploy("zerodown.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.EnvOrder, []string{"blue", "green", "aqua"}) || !slices.Equal(cfg.PipelineOrder, []string{"one", "two"}) {
		t.Fatalf("order: %v %v", cfg.EnvOrder, cfg.PipelineOrder)
	}
	blue, green, aqua := cfg.Environments["blue"], cfg.Environments["green"], cfg.Environments["aqua"]
	if blue == green || blue.Strategy.Rolling == green.Strategy.Rolling || blue.Verify == green.Verify ||
		blue.Verify.MaxFailed == green.Verify.MaxFailed || &blue.Hosts[0] == &green.Hosts[0] {
		t.Fatal("environments share structs")
	}
	if blue.Name != "blue" || green.Name != "green" || aqua.Name != "aqua" {
		t.Errorf("names: %q %q %q", blue.Name, green.Name, aqua.Name)
	}
	if blue.Hosts[0].Target != "127.0.0.1:8101" || green.Hosts[0].Target != "127.0.0.1:8101" {
		t.Errorf("targets not normalized: %v %v", blue.Hosts, green.Hosts)
	}
	if blue.Strategy.Rolling.MinHealthy.N != 0 || aqua.Strategy.Rolling.MinHealthy.N != 1 {
		t.Errorf("min_healthy: blue %v aqua %v", blue.Strategy.Rolling.MinHealthy, aqua.Strategy.Rolling.MinHealthy)
	}
	one, two := cfg.Pipelines["one"], cfg.Pipelines["two"]
	if one == two || &one.Stages[0] == &two.Stages[0] || one.Name != "one" || two.Name != "two" {
		t.Errorf("pipelines share structs or names: %+v %+v", one, two)
	}
}

func TestParseDeployEnv(t *testing.T) {
	t.Setenv("ZD_TEST_ADMIN", "http://127.0.0.1:9100")
	t.Setenv("ZD_TEST_MIN_HEALTHY", "50%")
	t.Setenv("ZD_TEST_BATCH", "2")
	t.Setenv("PORT", "9999") // left for the agent all the same
	doc := `app: {run: [./hello, --listen, "127.0.0.1:${PORT}", --price, "$$5"]}
environments:
  web:
    lb: {admin: "${ZD_TEST_ADMIN}", pool: hello, token: "a$$b"}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'} # ${NOT_SET_IN_A_COMMENT}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}
      - {name: web-4, agent: 'http://127.0.0.1:7104', target: '127.0.0.1:8104'}
    strategy: {rolling: {batch: ${ZD_TEST_BATCH}, min_healthy: ${ZD_TEST_MIN_HEALTHY}}}
`
	cfg, err := ParseDeploy("zerodown.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Environments["web"]
	if e.LB.Admin != "http://127.0.0.1:9100" || e.LB.Token != "a$b" ||
		!slices.Equal(cfg.App.Run, []string{"./hello", "--listen", "127.0.0.1:${PORT}", "--price", "$5"}) ||
		!reflect.DeepEqual(e.Strategy.Rolling.Batch, BatchSpec{{N: 2}}) || e.Strategy.Rolling.MinHealthy != (Quantity{N: 50, Percent: true}) {
		t.Errorf("got %s", dumpDeploy(cfg))
	}

	_, err = ParseDeploy("zerodown.yaml", []byte(`app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token: "${ZD_TEST_UNSET_TOKEN}"}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:${ZD_TEST_UNSET_PORT}'}]
`))
	want := `zerodown.yaml:4:63: environments.web.lb.token: environment variable ZD_TEST_UNSET_TOKEN is not set
zerodown.yaml:5:78: environments.web.hosts[0].target: environment variable ZD_TEST_UNSET_PORT is not set`
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestQuantity(t *testing.T) {
	of := []struct {
		q     Quantity
		total int
		want  int
	}{
		{Quantity{N: 2}, 10, 2},
		{Quantity{N: 0}, 10, 0},
		{Quantity{N: 25, Percent: true}, 3, 1}, // rounds up, never 0
		{Quantity{N: 25, Percent: true}, 4, 1},
		{Quantity{N: 25, Percent: true}, 5, 2},
		{Quantity{N: 50, Percent: true}, 3, 2},
		{Quantity{N: 100, Percent: true}, 7, 7},
		{Quantity{N: 1, Percent: true}, 1000, 10},
		{Quantity{N: 1, Percent: true}, 1, 1},
		{Quantity{N: 50, Percent: true}, 0, 0},
	}
	for _, tt := range of {
		if got := tt.q.Of(tt.total); got != tt.want {
			t.Errorf("%v of %d = %d, want %d", tt.q, tt.total, got, tt.want)
		}
	}
	if s := (Quantity{N: 25, Percent: true}).String() + " " + (Quantity{N: 3}).String(); s != "25% 3" {
		t.Errorf("String: %q", s)
	}

	type doc struct {
		Q Quantity  `yaml:"q"`
		B BatchSpec `yaml:"b"`
	}
	good := []struct {
		yaml string
		want doc
	}{
		{"q: 3\nb: 1", doc{Quantity{N: 3}, BatchSpec{{N: 1}}}},
		{"q: '25%'\nb: 25%", doc{Quantity{N: 25, Percent: true}, BatchSpec{{N: 25, Percent: true}}}},
		{"q: 0\nb: [1, '50%', 100%]", doc{Quantity{}, BatchSpec{{N: 1}, {N: 50, Percent: true}, {N: 100, Percent: true}}}},
		{"q: '1%'\nb: []", doc{Quantity{N: 1, Percent: true}, BatchSpec{}}},
		{"q:\nb:", doc{}},
	}
	for _, tt := range good {
		var got doc
		if err := yaml.Unmarshal([]byte(tt.yaml), &got); err != nil {
			t.Errorf("%q: %v", tt.yaml, err)
		} else if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: got %+v, want %+v", tt.yaml, got, tt.want)
		}
	}
	bad := []struct{ yaml, want string }{
		{"q: '0%'", `invalid percentage "0%": want 1% to 100%`},
		{"q: '150%'", `invalid percentage "150%": want 1% to 100%`},
		{"q: abc", `invalid quantity "abc": want a count such as 2 or a percentage such as "25%"`},
		{"q: '12.5%'", `invalid quantity "12.5%": want a count such as 2 or a percentage such as "25%"`},
		{"q: ' 5%'", `invalid quantity " 5%": want a count such as 2 or a percentage such as "25%"`},
		{"q: '-5%'", `invalid quantity "-5%": want a count such as 2 or a percentage such as "25%"`},
		{"q: '3'", `invalid quantity "3": write a count without quotes, as 3`},
		{"q: -1", `must not be negative, got -1`},
		{"q: 1.5", `invalid quantity 1.5: a count is a whole number of hosts`},
		{"q: true", `want a count such as 2 or a percentage such as "25%", got the boolean true`},
		{"q: 99999999999999999999", `99999999999999999999 is too large`},
		{"b: [1, abc]", `batch[1]: invalid quantity "abc": want a count such as 2 or a percentage such as "25%"`},
		{"b: [1, null]", `batch[1]: an empty entry; want a batch size`},
		{"b: {a: 1}", `want a count such as 2 or a percentage such as "25%", got a mapping`},
	}
	for _, tt := range bad {
		var got doc
		err := yaml.Unmarshal([]byte(tt.yaml), &got)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// deployErrorCases are bad configs with the exact error each gets.
var deployErrorCases = []struct {
	name, yaml, want string
}{
	{"empty file", "", `zerodown.yaml:1:1: app.run: required: the command line that starts the app, such as [./hello, --listen, "127.0.0.1:${PORT}"]
zerodown.yaml:1:1: environments: at least one environment is required`},

	{"unknown keys", `app: {run: [./hello]}
environment: {}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, drvier: builtin}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    strategy: {rolling: {batch: 1, min_healty: 1}}
`, `zerodown.yaml:2:1: environment: unknown key (did you mean environments?)
zerodown.yaml:5:55: environments.web.lb.drvier: unknown key (did you mean driver?)
zerodown.yaml:7:36: environments.web.strategy.rolling.min_healty: unknown key (did you mean min_healthy?)`},

	{"wrong types", `app: {run: ./hello}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: {name: web-1}
    strategy: {rolling: {drain_timeout: 30, upload_parallel: 0}}
`, `zerodown.yaml:1:7: app.run: want a list, got the string "./hello"
zerodown.yaml:5:5: environments.web.hosts: want a list, got a mapping
zerodown.yaml:6:26: environments.web.strategy.rolling.drain_timeout: invalid duration 30: a unit is required, such as 30s or 30ms
zerodown.yaml:6:45: environments.web.strategy.rolling.upload_parallel: must be greater than 0 (leave the key out for the default)`},

	{"environment and host names", `app: {run: [./hello]}
environments:
  Web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web_1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: -web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
      - {agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}
      - {name: web_1, agent: 'http://127.0.0.1:7104', target: '127.0.0.1:8104'}
`, `zerodown.yaml:3:3: environments.Web: invalid name "Web": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit
zerodown.yaml:7:10: environments.Web.hosts[1].name: invalid name "-web-2": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit
zerodown.yaml:8:9: environments.Web.hosts[2].name: required: a name such as Web-3
zerodown.yaml:9:10: environments.Web.hosts[3].name: duplicate host name web_1 (also environments.Web.hosts[0].name)`},

	{"duplicate targets and agents", `app: {run: [./hello]}
environments:
  staging:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: staging-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: staging-2, agent: 'http://127.0.0.1:7101/', target: '127.0.0.1:08101'}
`, `zerodown.yaml:7:27: environments.staging.hosts[1].agent: duplicate agent http://127.0.0.1:7101/ (also environments.staging.hosts[0].agent)
zerodown.yaml:7:60: environments.staging.hosts[1].target: duplicate target 127.0.0.1:08101 (also environments.staging.hosts[0].target)`},

	{"bad agent and target", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: '127.0.0.1:7101', target: 'http://127.0.0.1:8101'}
      - {name: web-2, agent: 'ssh://10.0.0.2', target: '10.0.0.256:80'}
      - {name: web-3}
`, `zerodown.yaml:6:23: environments.web.hosts[0].agent: invalid URL "127.0.0.1:7101": want http:// or https:// and a host, such as http://10.0.0.11:7101
zerodown.yaml:6:48: environments.web.hosts[0].target: invalid address "http://127.0.0.1:8101": want host:port, not a URL
zerodown.yaml:7:23: environments.web.hosts[1].agent: invalid URL "ssh://10.0.0.2": want http:// or https:// and a host, such as http://10.0.0.11:7101
zerodown.yaml:7:48: environments.web.hosts[1].target: invalid address "10.0.0.256:80": the host is not a valid IP address
zerodown.yaml:8:9: environments.web.hosts[2].agent: required: the URL of the host's zerodown agent, such as http://10.0.0.11:7101 (or ssh: to reach it over SSH, or exec: to deploy with your scripts)
zerodown.yaml:8:9: environments.web.hosts[2].target: required: the address the load balancer sends this host's traffic to, such as 10.0.0.11:8080`},

	{"no hosts", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: []
`, `zerodown.yaml:5:5: environments.web.hosts: at least one host is required`},

	{"nginx needs its file and upstream", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: nginx, upstream: 'app servers', reload: []}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101', server: web1}]
`, `zerodown.yaml:4:5: environments.web.lb.upstream_file: required by the nginx driver: the include file zerodown owns, holding the upstream block, such as /etc/nginx/conf.d/app-upstream.conf
zerodown.yaml:4:25: environments.web.lb.upstream: "app servers" is not an nginx upstream name (letters, digits, '_', '-', '.')
zerodown.yaml:5:85: environments.web.hosts[0].server: server names an HAProxy server; the nginx driver does not use it`},

	{"aws-elb needs a name and instances", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: aws-elb, endpoint: 'localhost:4566', poll_interval: 10ms}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102', instance: i-12}
`, `zerodown.yaml:4:5: environments.web.lb.name: required by the aws-elb driver: the classic load balancer's name, such as my-classic-elb
zerodown.yaml:4:27: environments.web.lb.endpoint: invalid URL "localhost:4566": want http:// or https:// and a host, such as http://127.0.0.1:4566
zerodown.yaml:4:55: environments.web.lb.poll_interval: 10ms is too short: AWS throttles describe calls; use 1s to 5s
zerodown.yaml:6:9: environments.web.hosts[0].instance: required by the aws-elb driver: the host's EC2 instance ID, such as i-0abc123def4567890
zerodown.yaml:7:81: environments.web.hosts[1].instance: "i-12" is not an EC2 instance ID (i- and 8 or 17 hex digits)`},

	{"two hosts on one HAProxy server or EC2 instance", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: haproxy, socket: '127.0.0.1:9999', backend: app}
    hosts:
      - {name: web1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102', server: web1}
  aws:
    lb: {driver: aws-elb, name: web}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7201', target: '127.0.0.1:8201', instance: i-0123456789abcdef0}
      - {name: web-2, agent: 'http://127.0.0.1:7202', target: '127.0.0.1:8202', instance: i-0123456789abcdef0}
`, `zerodown.yaml:7:81: environments.web.hosts[1].server: duplicate server web1 (also environments.web.hosts[0].name): each host needs its own
zerodown.yaml:12:81: environments.aws.hosts[1].instance: duplicate instance i-0123456789abcdef0 (also environments.aws.hosts[0].instance): each host needs its own`},

	{"webhooks", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
notify:
  webhooks:
    - {url: 'hooks.example.com', events: [succeeded, deployed]}
    - {events: [failed]}
    - {url: 'https://hooks.example.com/z', secret: s, secret_file: s.txt}
`, `zerodown.yaml:8:8: notify.webhooks[0].url: invalid URL "hooks.example.com": want http:// or https:// and a host, such as https://hooks.example.com/zerodown
zerodown.yaml:8:54: notify.webhooks[0].events[1]: unknown event "deployed" (want one of: run_started, waiting_for_approval, succeeded, failed, rolled_back, needs_attention)
zerodown.yaml:9:7: notify.webhooks[1]: a webhook needs a url, such as https://hooks.example.com/zerodown
zerodown.yaml:10:55: notify.webhooks[2].secret_file: secret and secret_file are both set; use one`},

	{"pause for nothing", minimalEnv(1, "") + `pipelines:
  p:
    environment: web
    stages: [{name: s, jobs: [{tasks: [{pause: {for: 0s}}]}]}]
`, `zerodown.yaml:10:49: pipelines.p.stages[0].jobs[0].tasks[0].pause.for: must be greater than 0 (leave the key out for the default)`},

	{"a key of another driver", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: haproxy, socket: '127.0.0.1:9999', backend: app, pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:67: environments.web.lb.pool: pool is a key of the builtin driver; the haproxy driver does not use it`},

	{"nginx keys elsewhere, and a test command without -t", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: nginx, upstream_file: up.conf, upstream: app, test: [nginx, -q], poll_interval: 1s}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
  alb:
    lb: {driver: aws-alb, region: eu-west-1, pid_file: /run/nginx.pid, target_group: 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app/0123456789abcdef'}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7201', target: '127.0.0.1:8201'}]
`, `zerodown.yaml:4:64: environments.web.lb.test: the test command has no -t argument: zerodown runs it with -T in its place to read worker_shutdown_timeout, such as [nginx, -c, /etc/nginx/nginx.conf, -t]
zerodown.yaml:4:83: environments.web.lb.poll_interval: poll_interval is a key of the aws-elb and aws-alb drivers; the nginx driver does not use it
zerodown.yaml:7:27: environments.alb.lb.region: region eu-west-1 is not the target group's: target_group's ARN says us-east-1
zerodown.yaml:7:46: environments.alb.lb.pid_file: pid_file is a key of the nginx driver; the aws-alb driver does not use it`},

	{"aws-alb needs a target group ARN", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: aws-alb, target_group: my-tg}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:27: environments.web.lb.target_group: "my-tg" is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},

	{"haproxy without socket and backend", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: haproxy}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:5: environments.web.lb.socket: required by the haproxy driver: HAProxy's stats socket at level admin, a path such as /run/haproxy/admin.sock or host:port such as 127.0.0.1:9999
zerodown.yaml:4:5: environments.web.lb.backend: required by the haproxy driver: the backend whose servers are the hosts' targets`},

	{"haproxy socket neither path nor address", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: haproxy, socket: admin.sock, backend: app}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:27: environments.web.lb.socket: "admin.sock" is neither a unix socket path nor host:port`},

	{"unknown driver", `app: {run: [./hello]}
environments:
  web:
    lb: {driver: f5}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:10: environments.web.lb.driver: unknown driver "f5" (want one of: builtin, haproxy, nginx, aws-elb, aws-alb)`},

	{"builtin needs admin and pool", `app: {run: [./hello]}
environments:
  web:
    lb: {token: abc, token_file: /etc/lb.token}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
  web2:
    lb: {admin: '127.0.0.1:9100', pool: 'my pool'}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:5: environments.web.lb.admin: required by the builtin driver: the URL of the admin API of zerodown lb, such as http://127.0.0.1:9100
zerodown.yaml:4:5: environments.web.lb.pool: required by the builtin driver: the pool of zerodown lb that serves this environment
zerodown.yaml:4:22: environments.web.lb.token_file: token and token_file are both set; use one
zerodown.yaml:7:10: environments.web2.lb.admin: invalid URL "127.0.0.1:9100": want http:// or https:// and a host, such as http://127.0.0.1:9100
zerodown.yaml:7:35: environments.web2.lb.pool: invalid pool name: use letters, digits, '.', '_' and '-', starting with a letter or digit`},

	{"tokens of agents and hosts", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    agents: {token: abc, token_file: /t}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101', token: x, token_file: /y}]
`, `zerodown.yaml:5:26: environments.web.agents.token_file: token and token_file are both set; use one
zerodown.yaml:6:95: environments.web.hosts[0].token_file: token and token_file are both set; use one`},

	{"bad quantities", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    strategy:
      rolling:
        batch: [0, "0%", "150%", abc, 2.5, {n: 1}, ~]
        min_healthy: -1
`, `zerodown.yaml:8:17: environments.web.strategy.rolling.batch[0]: a batch needs at least 1 host, got 0
zerodown.yaml:8:20: environments.web.strategy.rolling.batch[1]: invalid percentage "0%": want 1% to 100%
zerodown.yaml:8:26: environments.web.strategy.rolling.batch[2]: invalid percentage "150%": want 1% to 100%
zerodown.yaml:8:34: environments.web.strategy.rolling.batch[3]: invalid quantity "abc": want a count such as 2 or a percentage such as "25%"
zerodown.yaml:8:39: environments.web.strategy.rolling.batch[4]: invalid quantity 2.5: a count is a whole number of hosts
zerodown.yaml:8:44: environments.web.strategy.rolling.batch[5]: want a count such as 2 or a percentage such as "25%", got a mapping
zerodown.yaml:8:52: environments.web.strategy.rolling.batch[6]: an empty entry; want a batch size
zerodown.yaml:9:9: environments.web.strategy.rolling.min_healthy: must not be negative, got -1`},

	{"batch scalar and empty list", `app: {run: [./hello]}
environments:
  a:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    strategy: {rolling: {batch: '0%', min_healthy: [1]}}
  b:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    strategy: {rolling: {batch: []}}
`, `zerodown.yaml:6:26: environments.a.strategy.rolling.batch: invalid percentage "0%": want 1% to 100%
zerodown.yaml:6:39: environments.a.strategy.rolling.min_healthy: want a count such as 2 or a percentage such as "25%", got a list
zerodown.yaml:10:26: environments.b.strategy.rolling.batch: want a batch size or a list of them, got an empty list`},

	{"min_healthy not less than hosts", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
    strategy: {rolling: {min_healthy: 2}}
  one:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: one-1, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}]
    strategy: {rolling: {min_healthy: 100%}}
`, `zerodown.yaml:8:26: environments.web.strategy.rolling.min_healthy: 2 must be less than the number of hosts (2), or no host can be updated
zerodown.yaml:12:26: environments.one.strategy.rolling.min_healthy: 100% (1 hosts) must be less than the number of hosts (1), or no host can be updated`},

	{"batch breaks min_healthy", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}
    strategy: {rolling: {batch: 2, min_healthy: 2}}
  later:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}
      - {name: web-4, agent: 'http://127.0.0.1:7104', target: '127.0.0.1:8104'}
    strategy: {rolling: {batch: [1, "75%"], min_healthy: "50%"}}
`, `zerodown.yaml:9:36: environments.web.strategy.rolling.min_healthy: min_healthy 2 needs 2 of 3 hosts in service, but batch 1 takes 2 out, leaving 1
zerodown.yaml:17:45: environments.later.strategy.rolling.min_healthy: min_healthy 50% needs 2 of 4 hosts in service, but batch 2 takes 3 out, leaving 1`},

	{"batch breaks the default min_healthy", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103'}
    strategy: {rolling: {batch: ["100%", 1]}}
`, `zerodown.yaml:9:34: environments.web.strategy.rolling.batch[0]: batch 1 takes 3 of 3 hosts out, leaving 0, but the default min_healthy is 1; set min_healthy: 0 to allow it`},

	{"verify and rollback", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    verify: {url: '127.0.0.1:8080', max_failed: -1, max_dropped: -2}
    rollback: never
`, `zerodown.yaml:6:5: environments.web.verify.rate: required: requests per second, such as 200
zerodown.yaml:6:14: environments.web.verify.url: invalid URL "127.0.0.1:8080": want http:// or https:// and a host, such as http://127.0.0.1:8080/
zerodown.yaml:6:37: environments.web.verify.max_failed: must not be negative, got -1
zerodown.yaml:6:53: environments.web.verify.max_dropped: must not be negative, got -2
zerodown.yaml:7:5: environments.web.rollback: unknown rollback policy "never" (want auto or manual)`},

	{"a zero the check refuses hides the rest", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
    verify: {url: x, rate: 0}
`, `zerodown.yaml:6:22: environments.web.verify.rate: must be greater than 0 (leave the key out for the default)`},

	{"pipeline environment", `app: {run: [./hello]}
environments:
  staging:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: staging-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
pipelines:
  by-hand:
    environment: prod
    stages: [{name: one, jobs: [{tasks: [{detach: nowhere}]}]}]
  Other:
    stages: []
`, `zerodown.yaml:8:5: pipelines.by-hand.environment: unknown environment "prod" (environments: staging)
zerodown.yaml:10:3: pipelines.Other: invalid name "Other": use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit
zerodown.yaml:10:3: pipelines.Other.environment: required: the environment the pipeline deploys to (environments: staging)
zerodown.yaml:11:5: pipelines.Other.stages: at least one stage is required`},

	{"stages and jobs", `app: {run: [./hello]}
environments:
  staging:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: staging-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
pipelines:
  by-hand:
    environment: staging
    stages:
      - jobs: []
      - name: two
        jobs: [{name: j, tasks: [{attach: staging-1}]}, {name: j}]
      - name: two
        jobs: [{tasks: [{attach: staging-1}]}]
`, `zerodown.yaml:10:9: pipelines.by-hand.stages[0].name: required: a name such as update-web-1
zerodown.yaml:10:9: pipelines.by-hand.stages[0].jobs: at least one job is required
zerodown.yaml:12:57: pipelines.by-hand.stages[1].jobs[1].tasks: at least one task is required
zerodown.yaml:12:58: pipelines.by-hand.stages[1].jobs[1].name: duplicate job name j in this stage (also pipelines.by-hand.stages[1].jobs[0].name)
zerodown.yaml:13:9: pipelines.by-hand.stages[2].name: duplicate stage name two (also pipelines.by-hand.stages[1].name)`},

	{"task kinds", `app: {run: [./hello]}
environments:
  staging:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: staging-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}, {name: staging-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}]
pipelines:
  by-hand:
    environment: staging
    stages:
      - name: one
        jobs:
          - tasks:
              - {run_if: any}
              - {detach: staging-1, deploy: staging-1, sleep: 5s}
              - {attach: staging-3}
              - {wait-healthy: }
              - {sleep: }
`, `zerodown.yaml:13:17: pipelines.by-hand.stages[0].jobs[0].tasks[0]: no task kind; want one of upload, detach, attach, deploy, wait-healthy, wait-drained, retire, sleep, exec, smoke, approve, pause, switch, preview-load, weights, analyze
zerodown.yaml:14:17: pipelines.by-hand.stages[0].jobs[0].tasks[1]: more than one task kind: detach, deploy, sleep; write a task for each
zerodown.yaml:15:18: pipelines.by-hand.stages[0].jobs[0].tasks[2].attach: unknown host "staging-3" (hosts of staging: staging-1, staging-2)
zerodown.yaml:16:18: pipelines.by-hand.stages[0].jobs[0].tasks[3].wait-healthy: want a host name (hosts of staging: staging-1, staging-2)
zerodown.yaml:17:18: pipelines.by-hand.stages[0].jobs[0].tasks[4].sleep: want a duration such as 30s`},

	{"exec, smoke, run_if and on_cancel", `app: {run: [./hello]}
environments:
  staging:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: staging-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
pipelines:
  by-hand:
    environment: staging
    stages:
      - name: one
        jobs:
          - tasks:
              - exec: {command: []}
              - exec: {command: [' '], env: {BAD-NAME: x}}
              - smoke: {url: 'ftp://example.com/', status: 700}
              - smoke: {body_contains: ok}
              - approve: {message: go?}
                run_if: always
              - detach: staging-1
                on_cancel: {attach: staging-1, on_cancel: {attach: staging-1}}
              - detach: staging-1
                on_cancel: {}
`, `zerodown.yaml:13:24: pipelines.by-hand.stages[0].jobs[0].tasks[0].exec.command: required: the command line to run, such as [./smoke-test.sh, --quick]
zerodown.yaml:14:34: pipelines.by-hand.stages[0].jobs[0].tasks[1].exec.command[0]: the program is empty
zerodown.yaml:14:46: pipelines.by-hand.stages[0].jobs[0].tasks[1].exec.env.BAD-NAME: invalid variable name: use letters, digits and _, not starting with a digit
zerodown.yaml:15:25: pipelines.by-hand.stages[0].jobs[0].tasks[2].smoke.url: invalid URL "ftp://example.com/": want http:// or https:// and a host, such as http://127.0.0.1:8080/healthz
zerodown.yaml:15:52: pipelines.by-hand.stages[0].jobs[0].tasks[2].smoke.status: must be from 100 to 599, got 700
zerodown.yaml:16:17: pipelines.by-hand.stages[0].jobs[0].tasks[3].smoke.url: required: the URL to check, such as http://127.0.0.1:8080/healthz
zerodown.yaml:18:17: pipelines.by-hand.stages[0].jobs[0].tasks[4].run_if: unknown run_if "always" (want passed, failed or any)
zerodown.yaml:20:48: pipelines.by-hand.stages[0].jobs[0].tasks[5].on_cancel.on_cancel: an on_cancel task cannot have its own on_cancel
zerodown.yaml:22:17: pipelines.by-hand.stages[0].jobs[0].tasks[6].on_cancel: no task kind; want one of upload, detach, attach, deploy, wait-healthy, wait-drained, retire, sleep, exec, smoke, approve, pause, switch, preview-load, weights, analyze`},

	{"app block", `app:
  run: [' ']
  env: {PORT: '1'}
  health: {path: healthz, interval: 1s, timeout: 500ms}
  stop: {signal: SIGFOO}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:2:9: app.run[0]: the program is empty
zerodown.yaml:3:9: app.env.PORT: PORT is set by the agent
zerodown.yaml:4:12: app.health.path: must start with /
zerodown.yaml:4:41: app.health.timeout: 500ms is the time the app has to become healthy; it must be at least interval 1s
zerodown.yaml:5:10: app.stop.signal: unknown signal "SIGFOO" (want one of: SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL)`},

	{"unset variable", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: '${ZD_TEST_NOT_SET}', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}]
`, `zerodown.yaml:4:18: environments.web.lb.admin: environment variable ZD_TEST_NOT_SET is not set`},

	{"two documents", "app: {run: [./hello]}\n---\nenvironments: {}\n", `zerodown.yaml:2:1: a second YAML document; the config is one document`},

	{"not a mapping", "- app\n", `zerodown.yaml:1:1: want a mapping, got a list`},
}

func TestParseDeployErrors(t *testing.T) {
	for _, tt := range deployErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseDeploy("zerodown.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; got %s", dumpDeploy(cfg))
			}
			if cfg != nil {
				t.Error("config and error both returned")
			}
			if err.Error() != tt.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// deployValidCases are files that look wrong but are not.
var deployValidCases = []struct{ name, yaml string }{
	// In a flow mapping YAML reads a plain 127.0.0.1:8101 whole: a colon
	// not followed by a space does not end it.
	{"unquoted address in a flow mapping", `app: {run: [./hello]}
environments:
  web:
    lb: {admin: http://127.0.0.1:9100, pool: hello}
    hosts: [{name: web-1, agent: http://127.0.0.1:7101, target: 127.0.0.1:8101}]
`},
	{"names with dots and underscores", `app: {run: [./hello]}
environments:
  eu-west.prod_2:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: 0.web_1, agent: 'http://127.0.0.1:7101', target: 'localhost:8101'}]
pipelines:
  by.hand_2:
    environment: eu-west.prod_2
    stages: [{name: Any Name, jobs: [{tasks: [{deploy: 0.web_1}]}]}]
`},
	{"empty pipelines and state", "app: {run: [./hello]}\nstate:\npipelines:\nenvironments: {web: {lb: {admin: 'http://x', pool: p}, hosts: [{name: w, agent: 'http://w', target: 'w:1'}]}}\n"},
}

func TestParseDeployValidCases(t *testing.T) {
	for _, tt := range deployValidCases {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseDeploy("zerodown.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			checkDeployInvariants(t, cfg)
		})
	}
}

func TestLoadDeployMissingFile(t *testing.T) {
	_, err := LoadDeploy(filepath.Join(t.TempDir(), "zerodown.yaml"))
	if err == nil || !strings.HasPrefix(err.Error(), "read deploy config: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v", err)
	}
}

func deploySeeds(f *testing.F) []string {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "deploy", "*.yaml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/deploy: %v", err)
	}
	files = append(files, filepath.Join("..", "..", "examples", "zerodown.yaml"))
	var out []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, string(b))
	}
	for _, tt := range deployErrorCases {
		out = append(out, tt.yaml)
	}
	for _, tt := range deployValidCases {
		out = append(out, tt.yaml)
	}
	return out
}

func FuzzParseDeploy(f *testing.F) {
	f.Setenv("ZERODOWN_LB_TOKEN", deployTestToken)
	for _, s := range deploySeeds(f) {
		f.Add(s)
	}
	f.Add(minimalEnv(3, "    strategy: {rolling: {batch: [1, '50%'], min_healthy: '34%'}}\n    verify: {url: 'http://x/', rate: 1}\n"))
	f.Add("app: {run: [./x]}\nenvironments: {a: &e {lb: {admin: 'http://x', pool: p}, hosts: [{name: h, agent: 'http://h', target: 'h:1'}]}, b: *e, c: {<<: *e, rollback: manual}}\n")
	// Every task kind, each once, in a pipeline.
	f.Add(minimalEnv(1, "") + "pipelines:\n  p:\n    environment: web\n    stages: [{name: s, jobs: [{tasks: [{pause: {}}, {pause: {for: 1m}}, {approve: {message: m}}, {sleep: 1s}, {detach: web-1}, {wait-drained: web-1}, {deploy: web-1}, {attach: web-1}, {wait-healthy: web-1}, {retire: web-1}, {upload: web-1}, {smoke: {url: 'http://x/'}}, {exec: {command: [true]}}]}]}]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		hung := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("ParseDeploy ran for 10s on %q", doc)) })
		defer hung.Stop()
		cfg, err := ParseDeploy("f.yaml", []byte(doc))
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error both returned")
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			for _, e := range es {
				if e.File != "f.yaml" || e.Line < 1 || e.Column < 1 || e.Msg == "" {
					t.Fatalf("error without a position: %#v", e)
				}
			}
			if _, err2 := ParseDeploy("f.yaml", []byte(doc)); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("errors differ between runs:\n%v\n---\n%v", err, err2)
			}
			return
		}
		checkDeployInvariants(t, cfg)
	})
}

// checkDeployInvariants holds for every config ParseDeploy accepts.
func checkDeployInvariants(t *testing.T, cfg *Deploy) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n%s", append(args, dumpDeploy(cfg))...)
	}
	if len(cfg.Environments) == 0 || len(cfg.EnvOrder) != len(cfg.Environments) || len(cfg.PipelineOrder) != len(cfg.Pipelines) {
		fail("environments or order missing")
	}
	if len(cfg.App.Run) == 0 || !filepath.IsAbs(cfg.State) {
		fail("app missing or state not absolute")
	}
	for _, ref := range cfg.tokenFiles {
		if !filepath.IsAbs(ref.path) || ref.at.Line < 1 || cfg.Environments[ref.env] == nil {
			fail("token file %+v: not absolute, without a position or of no environment", ref)
		}
	}
	envs := map[*Environment]bool{}
	for _, name := range cfg.EnvOrder {
		e := cfg.Environments[name]
		if e == nil || e.Name != name || envs[e] || checkName(name) != nil {
			fail("environment %q: missing, misnamed, shared or badly named", name)
		}
		envs[e] = true
		if e.LB.Driver != DriverBuiltin || e.LB.Admin == "" || e.LB.Pool == "" || (e.Rollback != RollbackAuto && e.Rollback != RollbackManual) {
			fail("environment %s: lb or rollback", name)
		}
		if len(e.Hosts) == 0 {
			fail("environment %s without hosts", name)
		}
		names, targets := map[string]bool{}, map[string]bool{}
		for _, h := range e.Hosts {
			if norm, err := NormalizeTarget(h.Target); err != nil || norm != h.Target {
				fail("environment %s: target %q not normalized (%v)", name, h.Target, err)
			}
			if names[h.Name] || targets[h.Target] || checkName(h.Name) != nil || checkURL(h.Agent, "") != nil {
				fail("environment %s: host %+v is a duplicate or invalid", name, h)
			}
			names[h.Name], targets[h.Target] = true, true
		}
		r := e.Strategy.Rolling
		if r == nil || len(r.Batch) == 0 || r.DrainTimeout <= 0 || r.HealthTimeout <= 0 || r.Bake < 0 || r.UploadParallel <= 0 {
			fail("environment %s: rolling", name)
		}
		n := len(e.Hosts)
		mh := r.MinHealthy.Of(n)
		if mh < 0 || mh >= n {
			fail("environment %s: min_healthy %d of %d hosts", name, mh, n)
		}
		for _, q := range r.Batch {
			if q.N < 1 || q.Percent && q.N > 100 {
				fail("environment %s: batch %v", name, q)
			}
		}
		if v := e.Verify; v != nil && (v.Rate <= 0 || v.MaxFailed == nil || *v.MaxFailed < 0 || v.MaxDropped == nil || *v.MaxDropped < 0 || checkURL(v.URL, "") != nil) {
			fail("environment %s: verify", name)
		}
	}
	for _, name := range cfg.PipelineOrder {
		p := cfg.Pipelines[name]
		if p == nil || p.Name != name {
			fail("pipeline %q missing or misnamed", name)
		}
		env := cfg.Environments[p.Environment]
		if env == nil || len(p.Stages) == 0 {
			fail("pipeline %s: environment %q or stages", name, p.Environment)
		}
		for _, st := range p.Stages {
			if st.Name == "" || len(st.Jobs) == 0 {
				fail("pipeline %s: stage %+v", name, st)
			}
			for _, j := range st.Jobs {
				if len(j.Tasks) == 0 {
					fail("pipeline %s: job without tasks", name)
				}
				for i := range j.Tasks {
					checkTaskInvariants(t, fail, &j.Tasks[i], env, false)
				}
			}
		}
	}
}

func checkTaskInvariants(t *testing.T, fail func(string, ...any), task *Task, env *Environment, onCancel bool) {
	t.Helper()
	kinds := task.kinds(nil)
	if len(kinds) != 1 {
		fail("task %+v has kinds %v", task, kinds)
	}
	if host := task.hostOf(kinds[0]); host != nil && !slices.ContainsFunc(env.Hosts, func(h Host) bool { return h.Name == *host }) {
		fail("task %+v names no host of %s", task, env.Name)
	}
	if task.RunIf != RunIfPassed && task.RunIf != RunIfFailed && task.RunIf != RunIfAny {
		fail("task %+v: run_if", task)
	}
	if task.Smoke != nil && (task.Smoke.Status < 100 || task.Smoke.Status > 599) {
		fail("task %+v: smoke status", task)
	}
	if task.Exec != nil && (len(task.Exec.Command) == 0 || !filepath.IsAbs(task.Exec.Dir)) {
		fail("task %+v: exec without command or with a relative dir", task)
	}
	if task.OnCancel != nil {
		if onCancel {
			fail("on_cancel with its own on_cancel")
		}
		checkTaskInvariants(t, fail, task.OnCancel, env, true)
	}
}

// Every task kind parses in a pipeline, pause with and without a time.
func TestEveryTaskKind(t *testing.T) {
	doc := blueGreenEnv("") + "pipelines:\n  p:\n    environment: web\n    stages: [{name: s, jobs: [{tasks: [{pause: {}}, {pause: {for: 1m, message: look}}, {approve: {message: m}}, {sleep: 1s}, {detach: web-1}, {wait-drained: web-1}, {deploy: web-1}, {attach: web-1}, {wait-healthy: web-1}, {retire: web-1}, {upload: web-1}, {smoke: {url: 'http://x/'}}, {exec: {command: [true]}}, {switch: {from: blue, to: green}}, {preview-load: {url: 'http://x/', rate: 5, duration: 1s}}, {weights: {canary: [web-1], share: 10, base: 1}}, {analyze: {canary: [web-1], for: 10s, min_requests: 5}}]}]}]\n"
	cfg, err := ParseDeploy("zerodown.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tasks := cfg.Pipelines["p"].Stages[0].Jobs[0].Tasks
	if len(tasks) != len(TaskKinds)+1 || tasks[0].Pause == nil || tasks[0].Pause.For != 0 ||
		tasks[1].Pause == nil || tasks[1].Pause.For != Duration(time.Minute) || tasks[1].Pause.Message != "look" {
		t.Fatalf("tasks: %+v", tasks)
	}
}

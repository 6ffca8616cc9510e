package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// App is the app spec: how an app runs on a host. It is the app: block of
// zerodown.yaml; the deploy engine sends it to the agent with every release
// and the agent stores it beside the release, so activating an old release
// (a rollback) also restores its start command. See docs/agent.md.
type App struct {
	Name string `yaml:"name" json:"name,omitempty"`
	// Run is the command line: run[0] is a path relative to the release
	// directory when it contains a slash ("./hello"), else it is looked up
	// in PATH. The agent expands ${VAR} in it from the app's environment
	// (PORT, VERSION, Env and its own) when it starts the app.
	Run []string `yaml:"run" json:"run"`
	// Env is added to the environment the agent passes on; PORT and VERSION
	// are set by the agent.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// User and Group run the app (and its hooks) as that user and group,
	// in place of agent.yaml's user and group: a name or a numeric ID.
	User   string    `yaml:"user" json:"user,omitempty"`
	Group  string    `yaml:"group" json:"group,omitempty"`
	Health AppHealth `yaml:"health" json:"health"`
	Stop   AppStop   `yaml:"stop" json:"stop"`
	Hooks  AppHooks  `yaml:"hooks" json:"hooks"`
}

// AppHealth is the health gate of an activation: GET http://127.0.0.1:PORT
// + Path every Interval until it answers 2xx or 3xx, for at most Timeout.
type AppHealth struct {
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// AppStop is how the app is stopped: Signal to its process group, then
// SIGKILL after Timeout.
type AppStop struct {
	Signal  string   `yaml:"signal"`
	Timeout Duration `yaml:"timeout"`
}

// AppHooks are commands the agent runs in the release directory, with the
// app's environment.
type AppHooks struct {
	// BeforeStart runs, in order, before the release is first started by an
	// activation; a hook that fails stops the activation before anything
	// running is touched.
	BeforeStart [][]string `yaml:"before_start" json:"before_start,omitempty"`
}

// Defaults of the app spec.
const (
	DefaultAppHealthPath     = "/"
	DefaultAppHealthInterval = 250 * time.Millisecond
	DefaultAppHealthTimeout  = 30 * time.Second
	DefaultAppStopSignal     = "SIGTERM"
	DefaultAppStopTimeout    = 30 * time.Second
)

// AppStopSignals are the signal names a spec may use. On Windows, where the
// app has no signals, every one of them means "send CTRL_BREAK to the app's
// process group", except SIGKILL, which terminates it at once.
var AppStopSignals = []string{"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"}

// appReserved are the variables the agent sets itself.
var appReserved = []string{"PORT", "VERSION"}

// LoadApp reads an app spec file; see ParseApp.
func LoadApp(path string) (*App, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read app spec: %w", err)
	}
	return ParseApp(path, data)
}

// ParseApp parses an app spec: a YAML file with the keys of the app: block
// of zerodown.yaml (name, run, env, health, stop, hooks) at the top. ${VAR}
// is expanded from the environment as in every config, except ${PORT} and
// ${VERSION}, which stay for the agent to fill in when it starts the app.
// Defaults are filled in and the result is validated; problems come back
// as Errors with file:line:col.
func ParseApp(path string, data []byte) (*App, error) {
	lookup := func(name string) (string, bool) {
		for _, r := range appReserved {
			if name == r {
				return "${" + name + "}", true
			}
		}
		return os.LookupEnv(name)
	}
	app, c, err := parseConfig[App](path, data, lookup)
	if err != nil {
		return nil, err
	}
	app.ApplyDefaults()
	v := &validator{c: c}
	validateApp(app, "", c, v.errorf)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return app, nil
}

// ApplyDefaults fills what the spec left out.
func (a *App) ApplyDefaults() {
	orDefault(&a.Health.Path, DefaultAppHealthPath)
	orDefault(&a.Health.Interval, Duration(DefaultAppHealthInterval))
	orDefault(&a.Health.Timeout, Duration(DefaultAppHealthTimeout))
	orDefault(&a.Stop.Signal, DefaultAppStopSignal)
	orDefault(&a.Stop.Timeout, Duration(DefaultAppStopTimeout))
	a.Stop.Signal = NormalizeSignal(a.Stop.Signal)
}

// Validate checks a spec that did not come from a file (the agent gets it
// as JSON with an upload). Call ApplyDefaults first.
func (a *App) Validate() error {
	var problems []string
	validateApp(a, "", plainPaths{}, func(path, format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	})
	if len(problems) > 0 {
		return errors.New("invalid app spec: " + strings.Join(problems, "; "))
	}
	return nil
}

// NormalizeSignal writes a signal name the way AppStopSignals does:
// "term" and "TERM" become "SIGTERM".
func NormalizeSignal(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s != "" && !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	return s
}

// keyPaths builds key paths: the checker's, which remember where each one
// is written, or plain strings for a spec without a file.
type keyPaths interface {
	key(parent, k string) string
	item(parent string, i int) string
}

type plainPaths struct{}

func (plainPaths) key(parent, k string) string {
	if !plainKey(k) {
		k = fmt.Sprintf("%q", k)
	}
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func (plainPaths) item(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// validateApp checks a defaulted spec; prefix is its key path ("" at the
// top, "app" in zerodown.yaml).
func validateApp(a *App, prefix string, p keyPaths, errorf func(path, format string, args ...any)) {
	run := p.key(prefix, "run")
	switch {
	case len(a.Run) == 0:
		errorf(run, "required: the command line that starts the app, such as [./hello, --listen, \"127.0.0.1:${PORT}\"]")
	case strings.TrimSpace(a.Run[0]) == "":
		errorf(p.item(run, 0), "the program is empty")
	}
	env := p.key(prefix, "env")
	for k := range a.Env {
		kp := p.key(env, k)
		if !validEnvName(k) {
			errorf(kp, "invalid variable name: use letters, digits and _, not starting with a digit")
		}
		for _, r := range appReserved {
			if k == r {
				errorf(kp, "%s is set by the agent", k)
			}
		}
	}
	for _, k := range []struct{ key, v string }{{"user", a.User}, {"group", a.Group}} {
		if k.v != "" && !ValidAccountName(k.v) {
			errorf(p.key(prefix, k.key), "%q is not a user or group name (letters, digits, _, - and ., not starting with -) or a numeric ID", k.v)
		}
	}
	h := p.key(prefix, "health")
	if !strings.HasPrefix(a.Health.Path, "/") {
		errorf(p.key(h, "path"), "must start with /")
	}
	if a.Health.Interval <= 0 {
		errorf(p.key(h, "interval"), "must be greater than 0")
	}
	if a.Health.Timeout <= 0 {
		errorf(p.key(h, "timeout"), "must be greater than 0")
	} else if a.Health.Timeout < a.Health.Interval {
		errorf(p.key(h, "timeout"), "%s is the time the app has to become healthy; it must be at least interval %s", a.Health.Timeout, a.Health.Interval)
	}
	s := p.key(prefix, "stop")
	known := false
	for _, name := range AppStopSignals {
		known = known || a.Stop.Signal == name
	}
	if !known {
		errorf(p.key(s, "signal"), "unknown signal %q (want one of: %s)", a.Stop.Signal, strings.Join(AppStopSignals, ", "))
	}
	if a.Stop.Timeout <= 0 {
		errorf(p.key(s, "timeout"), "must be greater than 0")
	}
	hooks := p.key(p.key(prefix, "hooks"), "before_start")
	for i, argv := range a.Hooks.BeforeStart {
		if len(argv) == 0 || strings.TrimSpace(argv[0]) == "" {
			errorf(p.item(hooks, i), "a hook is a command line with a program first, such as [./migrate, --up]")
		}
	}
}

// appDuration is how durations look in JSON: "250ms", not nanoseconds.
type appDuration Duration

func (d appDuration) MarshalJSON() ([]byte, error) { return json.Marshal(Duration(d).String()) }

func (d *appDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"2s\": %w", err)
	}
	if s == "" {
		*d = 0
		return nil
	}
	got, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit, such as 250ms or 2s", s)
	}
	*d = appDuration(got)
	return nil
}

type appHealthJSON struct {
	Path     string      `json:"path"`
	Interval appDuration `json:"interval"`
	Timeout  appDuration `json:"timeout"`
}

// MarshalJSON writes durations as strings.
func (h AppHealth) MarshalJSON() ([]byte, error) {
	return json.Marshal(appHealthJSON{h.Path, appDuration(h.Interval), appDuration(h.Timeout)})
}

// UnmarshalJSON reads durations as strings.
func (h *AppHealth) UnmarshalJSON(b []byte) error {
	var j appHealthJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = AppHealth{j.Path, Duration(j.Interval), Duration(j.Timeout)}
	return nil
}

type appStopJSON struct {
	Signal  string      `json:"signal"`
	Timeout appDuration `json:"timeout"`
}

// MarshalJSON writes the timeout as a string.
func (s AppStop) MarshalJSON() ([]byte, error) {
	return json.Marshal(appStopJSON{s.Signal, appDuration(s.Timeout)})
}

// UnmarshalJSON reads the timeout as a string.
func (s *AppStop) UnmarshalJSON(b []byte) error {
	var j appStopJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = AppStop{j.Signal, Duration(j.Timeout)}
	return nil
}

// ValidAccountName reports whether s can name a user or group: what
// useradd accepts (a trailing $ for machine accounts), or a numeric ID.
func ValidAccountName(s string) bool {
	if s == "" || len(s) > 32 || s[0] == '-' {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		case r == '$' && i == len(s)-1:
		default:
			return false
		}
	}
	return true
}

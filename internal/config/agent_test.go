package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseAgentDefaults(t *testing.T) {
	got, err := ParseAgent("agent.yaml", []byte("root: /var/lib/zerodown/hello\nport: 8101\n"))
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	want := &Agent{
		Path:             "agent.yaml",
		Listen:           DefaultAgentListen,
		TokenFile:        filepath.Join("/var/lib/zerodown/hello", DefaultAgentTokenFile),
		Root:             "/var/lib/zerodown/hello",
		Port:             8101,
		KeepReleases:     DefaultKeepReleases,
		MaxArtifactBytes: DefaultMaxArtifactBytes,
		MaxUnpackedBytes: DefaultMaxUnpackedBytes,
		LogMaxBytes:      DefaultAgentLogMaxBytes,
		Preflight:        &yes,
		Restart:          AgentRestart{Backoff: Duration(DefaultRestartBackoff), MaxBackoff: Duration(DefaultRestartMaxBackoff)},
		ShutdownTimeout:  Duration(DefaultAgentShutdownTimeout),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseAgentValues(t *testing.T) {
	t.Setenv("AGENT_TOKEN", "0123456789abcdef0123")
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, a *Agent)
	}{
		{"design example", `# agent.yaml
listen: 127.0.0.1:7101
token_file: /etc/zerodown/agent.token
root: /var/lib/zerodown/hello         # releases/<version>/, current -> releases/<version>
port: 8101                            # exported to the app as PORT
keep_releases: 5
`, func(t *testing.T, a *Agent) {
			if a.TokenFile != "/etc/zerodown/agent.token" || a.Port != 8101 || a.KeepReleases != 5 {
				t.Errorf("got %+v", a)
			}
		}},
		{"everything", `listen: 0.0.0.0:7443
token: ${AGENT_TOKEN}
tls: {cert: /etc/agent.crt, key: /etc/agent.key}
root: ./data
port: 9000
keep_releases: 2
max_artifact_bytes: 64MiB
max_unpacked_bytes: 1GB
log_max_bytes: 512KiB
preflight: false
restart: {backoff: 50ms, max_backoff: 2s}
shutdown_timeout: 5s
`, func(t *testing.T, a *Agent) {
			if a.Token != "0123456789abcdef0123" || a.TokenFile != "" || a.TLS == nil || a.TLS.Key != "/etc/agent.key" ||
				a.MaxArtifactBytes != 64<<20 || a.MaxUnpackedBytes != 1e9 || a.LogMaxBytes != 512<<10 ||
				*a.Preflight || a.Restart.Backoff != Duration(50*time.Millisecond) || a.Restart.MaxBackoff != Duration(2*time.Second) ||
				a.ShutdownTimeout != Duration(5*time.Second) || a.KeepReleases != 2 {
				t.Errorf("got %+v", a)
			}
		}},
		{"plaintext beyond loopback when allowed", "listen: 10.0.0.5:7101\nallow_plaintext: true\nroot: /r\nport: 8101\n", func(t *testing.T, a *Agent) {
			if !a.AllowPlaintext || a.Listen != "10.0.0.5:7101" {
				t.Errorf("got %+v", a)
			}
		}},
		{"user, group, allow_root", "root: /r\nport: 8101\nuser: zerodown-app\ngroup: '1001'\nallow_root: true\nallow_users: [worker]\nallow_groups: [www-data]\n", func(t *testing.T, a *Agent) {
			if a.User != "zerodown-app" || a.Group != "1001" || !a.AllowRoot || len(a.AllowUsers) != 1 || a.AllowGroups[0] != "www-data" {
				t.Errorf("got %+v", a)
			}
		}},
		{"localhost and ipv6 loopback", "listen: '[::1]:7101'\nroot: /r\nport: 8101\n", func(t *testing.T, a *Agent) {
			if a.Listen != "[::1]:7101" {
				t.Errorf("got %+v", a)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ParseAgent("agent.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, a)
		})
	}
}

func TestParseAgentErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each is one line of the error, in order
	}{
		{"empty file", "", []string{
			"agent.yaml:1:1: root: required",
			"agent.yaml:1:1: port: required",
		}},
		{"unknown key and wrong types", "root: /r\nport: '8101'\nkeep_releases: 0\nlisen: x\n", []string{
			"agent.yaml:2:1: port: want an integer",
			"agent.yaml:3:1: keep_releases: must be greater than 0",
			"agent.yaml:4:1: lisen: unknown key (did you mean listen?)",
		}},
		{"beyond loopback without tls", "listen: ':7101'\nroot: /r\nport: 8101\n", []string{
			"agent.yaml:1:1: listen: :7101 is reachable beyond this machine: set tls",
		}},
		{"bad listen", "listen: http://x:1\nroot: /r\nport: 8101\n", []string{
			"agent.yaml:1:1: listen: invalid address",
		}},
		{"token problems", "token: short\ntoken_file: /t\nroot: /r\nport: 8101\n", []string{
			"agent.yaml:2:1: token_file: token and token_file are both set",
		}},
		{"short token is not quoted", "token: s3cr3t\nroot: /r\nport: 8101\n", []string{
			"agent.yaml:1:1: token: too short: use at least 16 characters",
		}},
		{"tls without key", "tls: {cert: /c}\nroot: /r\nport: 8101\n", []string{
			"agent.yaml:1:1: tls.key: required when tls is set",
		}},
		{"port out of range and clash", "root: /r\nport: 70000\n", []string{
			"agent.yaml:2:1: port: must be from 1 to 65535",
		}},
		{"port is the agent's", "root: /r\nport: 7101\n", []string{
			"agent.yaml:2:1: port: 7101 is the agent's own port",
		}},
		{"user and group names", "root: /r\nport: 8101\nuser: 'app user'\ngroup: -wheel\nallow_users: [ok, 'b:ad']\n", []string{
			`agent.yaml:3:1: user: "app user" is not a user or group name`,
			`agent.yaml:4:1: group: "-wheel" is not a user or group name`,
			`agent.yaml:5:19: allow_users[1]: "b:ad" is not a user or group name`,
		}},
		{"backoff", "root: /r\nport: 8101\nrestart: {backoff: 2s, max_backoff: 1s}\n", []string{
			"agent.yaml:3:24: restart.max_backoff: 1s is less than backoff 2s",
		}},
		{"sizes and durations", "root: /r\nport: 8101\nlog_max_bytes: 1.5MiB\nshutdown_timeout: 5\n", []string{
			"agent.yaml:3:1: log_max_bytes: invalid size",
			"agent.yaml:4:1: shutdown_timeout: invalid duration 5: a unit is required",
		}},
		{"unset variable", "root: ${NO_SUCH_AGENT_ROOT}\nport: 8101\n", []string{
			"agent.yaml:1:7: root: environment variable NO_SUCH_AGENT_ROOT is not set",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAgent("agent.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the token: %v", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d:\n got %s\nwant %s...", i, lines[i], w)
				}
			}
		})
	}
}

// agentDocBlocks are the yaml blocks of docs/agent.md: agent.yaml, then
// an app spec.
func agentDocBlocks(t *testing.T) []string {
	t.Helper()
	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "agent.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	rest := string(md)
	for {
		_, after, ok := strings.Cut(rest, "```yaml\n")
		if !ok {
			break
		}
		block, tail, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatal("docs/agent.md: unterminated ```yaml block")
		}
		blocks = append(blocks, block)
		rest = tail
	}
	if len(blocks) < 2 {
		t.Fatalf("docs/agent.md has %d yaml blocks, want agent.yaml and an app spec", len(blocks))
	}
	return blocks
}

func TestAgentDocsExamples(t *testing.T) {
	blocks := agentDocBlocks(t)
	a, err := ParseAgent("agent.yaml", []byte(blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	// The example spells out the defaults; keep them in step.
	def, err := ParseAgent("agent.yaml", []byte("root: /var/lib/zerodown/hello\nport: 8101\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, def) {
		t.Errorf("the documented values differ from the defaults:\n doc %+v\n def %+v", a, def)
	}
	app, err := ParseApp("app.yaml", []byte(blocks[1]))
	if err != nil {
		t.Fatal(err)
	}
	if app.Run[2] != "127.0.0.1:${PORT}" || app.Hooks.BeforeStart[0][2] != "${VERSION}" || app.Health.Path != "/healthz" {
		t.Errorf("app spec %+v", app)
	}
}

func TestLoadAgent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("root: /r\nport: 8101\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAgent(path)
	if err != nil || a.Path != path {
		t.Fatalf("LoadAgent = %+v, %v", a, err)
	}
	if _, err := LoadAgent(path + ".missing"); err == nil || !strings.Contains(err.Error(), "read agent config") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseApp(t *testing.T) {
	t.Setenv("GREETING_FROM_ENV", "hi")
	tests := []struct {
		name string
		yaml string
		want App
	}{
		{"design example", `name: hello
run: ["./hello", "--listen", "127.0.0.1:${PORT}"]
env: { GREETING: "${GREETING_FROM_ENV}", N: 3 }
health: { path: /healthz, interval: 250ms, timeout: 30s }
stop: { signal: SIGTERM, timeout: 30s }
hooks:
  before_start:
    - [./migrate, --version, "${VERSION}"]
`, App{
			Name:   "hello",
			Run:    []string{"./hello", "--listen", "127.0.0.1:${PORT}"},
			Env:    map[string]string{"GREETING": "hi", "N": "3"},
			Health: AppHealth{Path: "/healthz", Interval: Duration(250 * time.Millisecond), Timeout: Duration(30 * time.Second)},
			Stop:   AppStop{Signal: "SIGTERM", Timeout: Duration(30 * time.Second)},
			Hooks:  AppHooks{BeforeStart: [][]string{{"./migrate", "--version", "${VERSION}"}}},
		}},
		{"defaults and a short signal name", "run: [./app]\nstop: {signal: int}\n", App{
			Run:    []string{"./app"},
			Health: AppHealth{Path: DefaultAppHealthPath, Interval: Duration(DefaultAppHealthInterval), Timeout: Duration(DefaultAppHealthTimeout)},
			Stop:   AppStop{Signal: "SIGINT", Timeout: Duration(DefaultAppStopTimeout)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseApp("app.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
			// The spec travels as JSON and must come back the same.
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			var back App
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.want) {
				t.Errorf("after JSON %s:\n got  %+v\nwant %+v", b, back, tt.want)
			}
			if err := back.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestParseAppErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"no run", "name: x\n", []string{"app.yaml:1:1: run: required"}},
		{"everything wrong", `run: ["", x]
env: {PORT: "1", 1A: b}
health: {path: healthz, interval: 1s, timeout: 500ms}
stop: {signal: SIGSTOP}
hooks: {before_start: [[]]}
`, []string{
			"app.yaml:1:7: run[0]: the program is empty",
			"app.yaml:2:7: env.PORT: PORT is set by the agent",
			"app.yaml:2:18: env.1A: invalid variable name",
			"app.yaml:3:10: health.path: must start with /",
			"app.yaml:3:39: health.timeout: 500ms is the time the app has to become healthy; it must be at least interval 1s",
			"app.yaml:4:8: stop.signal: unknown signal \"SIGSTOP\"",
			"app.yaml:5:24: hooks.before_start[0]: a hook is a command line",
		}},
		{"unknown key", "run: [x]\nhealth: {url: /}\n", []string{"app.yaml:2:10: health.url: unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseApp("app.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("problem %d:\n got %s\nwant %s...", i, lines[i], w)
				}
			}
		})
	}
}

func TestAppValidateJSON(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"ok", `{"run":["./hello"],"health":{"path":"/healthz","interval":"50ms","timeout":"5s"}}`, ""},
		{"no run", `{"health":{"path":"/"}}`, "run: required"},
		{"bad signal", `{"run":["x"],"stop":{"signal":"NOPE","timeout":"1s"}}`, `stop.signal: unknown signal "SIGNOPE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a App
			if err := json.Unmarshal([]byte(tt.json), &a); err != nil {
				t.Fatal(err)
			}
			a.ApplyDefaults()
			err := a.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	var a App
	if err := json.Unmarshal([]byte(`{"health":{"interval":"soon"}}`), &a); err == nil {
		t.Error("a bad duration in JSON was accepted")
	}
}

func FuzzParseAgent(f *testing.F) {
	f.Add([]byte("root: /r\nport: 8101\n"))
	f.Add([]byte("listen: 0.0.0.0:1\ntls: {cert: a, key: b}\nroot: r\nport: 2\nrestart: {backoff: 1s}\n"))
	f.Add([]byte("a: &x {b: 1}\nc: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseAgent("agent.yaml", data)
		if err == nil && (cfg.Root == "" || cfg.Port < 1 || cfg.Preflight == nil || cfg.KeepReleases < 1) {
			t.Fatalf("accepted an incomplete config: %+v", cfg)
		}
	})
}

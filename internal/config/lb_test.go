package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

// docsExample is the config block of docs/lb.md, the contract this loader
// implements.
func docsExample(t testing.TB) string {
	t.Helper()
	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "lb.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/lb.md: no ```yaml block")
	}
	return block
}

// The docs example's "api" pool, added when an older copy of the example
// lacks it.
const apiPool = `  api:
    targets: ["[::1]:8201", {address: backend.internal:8202, weight: 0}]
`

func TestParseLBDocsExample(t *testing.T) {
	// The example has "# token: ${ZERODOWN_LB_TOKEN}" in a comment, which
	// must not need the variable.
	t.Setenv("ZERODOWN_LB_TOKEN", "")
	os.Unsetenv("ZERODOWN_LB_TOKEN")

	doc := docsExample(t)
	if !strings.Contains(doc, "\n  api:\n") {
		doc += apiPool
	}
	got, err := ParseLB("lb.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	hello := &Pool{
		Name:    "hello",
		Balance: BalanceLeastOutstanding,
		Targets: []TargetSpec{
			{Address: "127.0.0.1:8101", Weight: ptr(1)},
			{Address: "127.0.0.1:8102", Weight: ptr(1)},
		},
		Health: HealthCheck{
			Path: "/healthz", Interval: Duration(5 * time.Second), Timeout: Duration(2 * time.Second),
			HealthyThreshold: 2, UnhealthyThreshold: 2, Status: "200-399", PassiveFailures: ptr(3),
			StatusMin: 200, StatusMax: 399,
		},
		FailOpen:            ptr(true),
		DeregistrationDelay: Duration(30 * time.Second),
		WebSocketGrace:      Duration(10 * time.Second),
		Retries:             ptr(2),
		MaxReplayBytes:      64 << 10,
		Upstream: Upstream{
			ConnectTimeout: Duration(2 * time.Second), ResponseTimeout: Duration(60 * time.Second),
			IdleTimeout: Duration(4 * time.Second), MaxIdlePerTarget: 256,
		},
	}
	want := &LB{
		Path: "lb.yaml",
		Listeners: []Listener{{
			Name:    "web",
			Address: "127.0.0.1:8080",
			Routes: []Route{
				{Host: "api.example.com", PathPrefix: "/v1/", Pool: "api"},
				{Pool: "hello"},
			},
		}},
		Admin:     Admin{Address: "127.0.0.1:9100"},
		StateFile: "lb-state.json",
		Client: Client{
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(60 * time.Second),
			MaxBodyBytes:      10 << 20,
			MaxHeaderBytes:    64 << 10,
			MaxHeaders:        100,
			MaxConns:          10000,
		},
		Pools:           map[string]*Pool{"hello": hello, "api": defaultPool("api")},
		PoolOrder:       []string{"hello", "api"},
		ShutdownTimeout: Duration(30 * time.Second),
	}
	want.Pools["api"].Targets = []TargetSpec{
		{Address: "[::1]:8201", Weight: ptr(1)},
		{Address: "backend.internal:8202", Weight: ptr(0)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(got), dump(want))
	}
}

// defaultPool is a pool with nothing set in the file.
func defaultPool(name string) *Pool {
	return &Pool{
		Name:    name,
		Balance: DefaultBalance,
		Health: HealthCheck{
			Path: DefaultHealthPath, Interval: Duration(DefaultHealthInterval), Timeout: Duration(DefaultHealthTimeout),
			HealthyThreshold: DefaultHealthyThreshold, UnhealthyThreshold: DefaultUnhealthyThreshold,
			Status: DefaultHealthStatus, PassiveFailures: ptr(DefaultPassiveFailures),
			StatusMin: 200, StatusMax: 399,
		},
		FailOpen:            ptr(DefaultFailOpen),
		DeregistrationDelay: Duration(DefaultDeregistrationDelay),
		WebSocketGrace:      Duration(DefaultWebSocketGrace),
		Retries:             ptr(DefaultRetries),
		MaxReplayBytes:      DefaultMaxReplayBytes,
		Upstream: Upstream{
			ConnectTimeout: Duration(DefaultConnectTimeout), ResponseTimeout: Duration(DefaultResponseTimeout),
			IdleTimeout: Duration(DefaultUpstreamIdleTimeout), MaxIdlePerTarget: DefaultMaxIdlePerTarget,
		},
	}
}

// dump shows a config with its pointers followed, for failure messages.
func dump(cfg *LB) string {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func TestParseLBMinimalGetsDefaults(t *testing.T) {
	got, err := ParseLB("lb.yaml", []byte("listeners: [{address: ':8080', routes: [{pool: p}]}]\npools: {p: }\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &LB{
		Path:      "lb.yaml",
		Listeners: []Listener{{Address: ":8080", Routes: []Route{{Pool: "p"}}}},
		Admin:     Admin{Address: DefaultAdminAddress},
		Client: Client{
			ReadHeaderTimeout: Duration(DefaultReadHeaderTimeout),
			IdleTimeout:       Duration(DefaultClientIdleTimeout),
			MaxBodyBytes:      DefaultMaxBodyBytes,
			MaxHeaderBytes:    DefaultMaxHeaderBytes,
			MaxHeaders:        DefaultMaxHeaders,
			MaxConns:          DefaultMaxConns,
		},
		Pools:           map[string]*Pool{"p": defaultPool("p")},
		PoolOrder:       []string{"p"},
		ShutdownTimeout: Duration(DefaultShutdownTimeout),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(got), dump(want))
	}
}

// The config bench/proxy.sh writes, with its shell variables filled in.
const benchConfig = `# generated by bench/proxy.sh
listeners:
  - name: bench
    address: 127.0.0.1:18080
    routes:
      - { pool: bench }
admin:
  address: 127.0.0.1:19100
  token_file: /tmp/x/lb.token
state_file: /tmp/x/lb-state.json
shutdown_timeout: 5s
pools:
  bench:
    targets:
      - 127.0.0.1:18101
    health:
      path: /healthz
      interval: 200ms
      timeout: 150ms
      healthy_threshold: 1
    upstream:
      max_idle_per_target: 64
`

func TestParseLBValues(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, cfg *LB)
	}{
		{"bench", benchConfig, func(t *testing.T, cfg *LB) {
			p := cfg.Pools["bench"]
			if p.Health.Interval != Duration(200*time.Millisecond) || p.Health.Timeout != Duration(150*time.Millisecond) ||
				p.Health.HealthyThreshold != 1 || p.Upstream.MaxIdlePerTarget != 64 ||
				cfg.ShutdownTimeout != Duration(5*time.Second) || cfg.Admin.TokenFile != "/tmp/x/lb.token" {
				t.Errorf("got %s", dump(cfg))
			}
		}},
		{"sizes and status", `
listeners: [{address: "[::1]:8080", routes: [{pool: p}]}]
client: {max_body: 1GiB, max_header: 4096}
pools:
  p:
    max_replay_body: 64KB
    health: {status: 204}
`, func(t *testing.T, cfg *LB) {
			p := cfg.Pools["p"]
			if cfg.Client.MaxBodyBytes != 1<<30 || cfg.Client.MaxHeaderBytes != 4096 || p.MaxReplayBytes != 64000 ||
				p.Health.Status != "204" || p.Health.StatusMin != 204 || p.Health.StatusMax != 204 {
				t.Errorf("got %s", dump(cfg))
			}
		}},
		{"explicit zeros in pointer fields stay", `
listeners: [{address: "localhost:8080", routes: [{pool: p}]}]
pools:
  p:
    targets: [{address: 10.0.0.1:80, weight: 0}]
    retries: 0
    fail_open: false
    health: {passive_failures: 0}
`, func(t *testing.T, cfg *LB) {
			p := cfg.Pools["p"]
			if *p.Targets[0].Weight != 0 || *p.Retries != 0 || *p.FailOpen || *p.Health.PassiveFailures != 0 {
				t.Errorf("got %s", dump(cfg))
			}
		}},
		{"pool order is file order", `
listeners: [{address: ":1", routes: [{pool: b}]}]
pools: {zeta: {}, b: {}, alpha: {}, m: {}}
`, func(t *testing.T, cfg *LB) {
			if want := []string{"zeta", "b", "alpha", "m"}; !reflect.DeepEqual(cfg.PoolOrder, want) {
				t.Errorf("PoolOrder = %v, want %v", cfg.PoolOrder, want)
			}
		}},
		{"anchors, aliases and merge keys", `
listeners: [{address: ":1", routes: [{pool: a}]}]
pools:
  a: &pool
    balance: round_robin
    targets: [10.0.0.1:80]
    health: &health {path: /up, interval: 1s, timeout: 500ms}
  b: *pool
  c:
    <<: *pool
    balance: least_outstanding
    health: *health
`, func(t *testing.T, cfg *LB) {
			a, b, c := cfg.Pools["a"], cfg.Pools["b"], cfg.Pools["c"]
			if a == b || a.Name != "a" || b.Name != "b" || c.Name != "c" {
				t.Errorf("aliased pools share a struct or a name: %s", dump(cfg))
			}
			if b.Balance != BalanceRoundRobin || c.Balance != BalanceLeastOutstanding ||
				len(c.Targets) != 1 || c.Health.Path != "/up" || c.Health.Interval != Duration(time.Second) {
				t.Errorf("got %s", dump(cfg))
			}
		}},
		{"quoted numbers are strings", `
listeners: [{address: ":1", routes: [{pool: p}]}]
admin: {token: "0x1F"}
pools: {p: {health: {status: "200-299"}}}
`, func(t *testing.T, cfg *LB) {
			if cfg.Admin.Token != "0x1F" || cfg.Pools["p"].Health.StatusMax != 299 {
				t.Errorf("got %s", dump(cfg))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseLB("lb.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestParseLBEnv(t *testing.T) {
	t.Setenv("ZD_TEST_PORT", "8080")
	t.Setenv("ZD_TEST_TOKEN", "s3cret # not a comment")
	t.Setenv("ZD_TEST_RETRIES", "4")
	t.Setenv("ZD_TEST_EMPTY", "")
	doc := `listeners:
  - address: 127.0.0.1:${ZD_TEST_PORT}   # ${ZD_TEST_UNSET} in a comment is left alone
    routes: [{pool: p, host: "${ZD_TEST_EMPTY}"}]
admin:
  token: "${ZD_TEST_TOKEN}"
  token_file: "${ZD_TEST_EMPTY}"
state_file: cost-$$5.json
pools:
  p:
    retries: ${ZD_TEST_RETRIES}
    health: {path: "/$${ZD_TEST_PORT}"}
`
	cfg, err := ParseLB("lb.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Pools["p"]
	if cfg.Listeners[0].Address != "127.0.0.1:8080" || cfg.Admin.Token != "s3cret # not a comment" ||
		cfg.StateFile != "cost-$5.json" || *p.Retries != 4 || p.Health.Path != "/${ZD_TEST_PORT}" {
		t.Errorf("got %s", dump(cfg))
	}
}

func TestParseLBEnvMultiline(t *testing.T) {
	t.Setenv("ZD_TEST_PEM", "line1\nline2")
	_, err := ParseLB("lb.yaml", []byte("admin:\n  token: ${ZD_TEST_PEM}\n"))
	want := "lb.yaml:2:10: admin.token: environment variable ZD_TEST_PEM contains a line break, which cannot be inserted into one line"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestUnits(t *testing.T) {
	sizes := []struct {
		in   any
		want ByteSize
		err  string
	}{
		{int64(512), 512, ""},
		{uint64(1 << 40), 1 << 40, ""},
		{"512", 512, ""},
		{"512B", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"10MiB", 10 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"64KB", 64000, ""},
		{"10MB", 10e6, ""},
		{"2GB", 2e9, ""},
		{nil, 0, ""},
		{"", 0, `invalid size "": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB`},
		{"KiB", 0, `invalid size "KiB": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB`},
		{"10 MiB", 0, `invalid size "10 MiB": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB`},
		{"-1KiB", 0, `invalid size "-1KiB": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB`},
		{"9999999999GiB", 0, `invalid size "9999999999GiB": too large`},
		{"99999999999999999999", 0, `invalid size "99999999999999999999": too large`},
		{int64(-1), 0, "invalid size -1: must not be negative"},
		{uint64(1 << 63), 0, "invalid size 9223372036854775808: too large"},
		{1.5, 0, "invalid size: want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB, got the number 1.5"},
	}
	for _, tc := range sizes {
		got, err := parseByteSize(tc.in)
		if got != tc.want || errString(err) != tc.err {
			t.Errorf("parseByteSize(%#v) = %d, %v; want %d, %s", tc.in, got, err, tc.want, tc.err)
		}
	}
	durations := []struct {
		in   any
		want Duration
		err  string
	}{
		{"250ms", Duration(250 * time.Millisecond), ""},
		{"1m30s", Duration(90 * time.Second), ""},
		{nil, 0, ""},
		{"fast", 0, `invalid duration "fast": want a number with a unit, such as 250ms, 2s or 1m30s`},
		{"5", 0, `invalid duration "5": want a number with a unit, such as 250ms, 2s or 1m30s`},
		{int64(5), 0, "invalid duration 5: a unit is required, such as 5s or 5ms"},
		{true, 0, "invalid duration: want a string such as 2s, got the boolean true"},
	}
	for _, tc := range durations {
		got, err := parseDuration(tc.in)
		if got != tc.want || errString(err) != tc.err {
			t.Errorf("parseDuration(%#v) = %v, %v; want %v, %s", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestErrorsCapped(t *testing.T) {
	var es Errors
	for i := 1; i <= 25; i++ {
		es = append(es, &Error{File: "lb.yaml", Line: i, Column: 1, Path: "x", Msg: "bad"})
	}
	lines := strings.Split(es.Error(), "\n")
	if len(lines) != 21 || lines[20] != "lb.yaml: and 5 more problems" {
		t.Errorf("got %d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestLoadLB(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(benchConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadLB(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != path {
		t.Errorf("Path = %q, want %q", cfg.Path, path)
	}

	missing := filepath.Join(dir, "missing.yaml")
	if _, err := LoadLB(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadLB(missing) = %v, want ErrNotExist", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listeners: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadLB(bad)
	var ce *Error
	if !errors.As(err, &ce) || ce.File != bad || ce.Line != 1 || ce.Column != 1 || ce.Path != "listeners" {
		t.Errorf("LoadLB(bad) = %#v, want an *Error at %s:1:1 for listeners", err, bad)
	}
}

// errorCases are documents with the exact errors they must produce: every
// line names file:line:col and the key path.
var errorCases = []struct {
	name, yaml, want string
}{
	{
		name: "malformed YAML",
		yaml: "listeners: [{address: ':1'\npools: {}\n",
		want: "lb.yaml:2:1: ',' or '}' must be specified",
	},
	{
		name: "bad indentation",
		yaml: "listeners:\n  - address: ':1'\n routes: []\n",
		want: "lb.yaml:3:2: value is not allowed in this context",
	},
	{
		name: "duplicate key",
		yaml: "pools: {}\nlisteners: []\npools: {}\n",
		want: "lb.yaml:3:1: pools: duplicate key (first at 1:1)",
	},
	{
		name: "unknown top-level key",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools: {p: {}}
pool: {}
`,
		want: "lb.yaml:3:1: pool: unknown key (did you mean pools?)",
	},
	{
		name: "unknown nested keys, all reported",
		yaml: `listeners:
  - address: ":1"
    routes: [{pool: p, prefix: /x}]
pools:
  p:
    health:
      intervall: 1s
    upstream: {keepalive: 5}
`,
		want: "lb.yaml:3:24: listeners[0].routes[0].prefix: unknown key (want one of: host, path_prefix, pool)\n" +
			"lb.yaml:7:7: pools.p.health.intervall: unknown key (did you mean interval?)\n" +
			"lb.yaml:8:16: pools.p.upstream.keepalive: unknown key (want one of: connect_timeout, idle_timeout, max_idle_per_target, response_timeout)",
	},
	{
		name: "unknown key in a target mapping",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    targets:
      - {address: 10.0.0.1:80, wieght: 2}
`,
		want: "lb.yaml:5:32: pools.p.targets[0].wieght: unknown key (did you mean weight?)",
	},
	{
		name: "wrong types",
		yaml: `listeners: {address: ":1"}
admin: [a]
state_file: 0x1F
pools:
  p:
    retries: "2"
    fail_open: yes
    health: {healthy_threshold: 1.5, interval: 5}
    targets: [8080, [a]]
`,
		want: "lb.yaml:1:1: listeners: want a list, got a mapping\n" +
			"lb.yaml:2:1: admin: want a mapping, got a list\n" +
			"lb.yaml:3:1: state_file: want a string, got the integer 0x1F; quote it to keep it as written\n" +
			"lb.yaml:6:5: pools.p.retries: want an integer, got the string \"2\"\n" +
			"lb.yaml:7:5: pools.p.fail_open: want true or false, got the string \"yes\"\n" +
			"lb.yaml:8:14: pools.p.health.healthy_threshold: want an integer, got the number 1.5\n" +
			"lb.yaml:8:38: pools.p.health.interval: invalid duration 5: a unit is required, such as 5s or 5ms\n" +
			"lb.yaml:9:15: pools.p.targets[0]: want \"host:port\" or {address, weight}, got the integer 8080\n" +
			"lb.yaml:9:21: pools.p.targets[1]: want \"host:port\" or {address, weight}, got a list",
	},
	{
		name: "bad durations",
		yaml: `listeners: [{address: ":1", routes: [{pool: hello}]}]
shutdown_timeout: 0s
pools:
  hello:
    deregistration_delay: -1s
    health:
      interval: fast
`,
		want: "lb.yaml:2:1: shutdown_timeout: must be greater than 0 (leave the key out for the default)\n" +
			"lb.yaml:5:5: pools.hello.deregistration_delay: must not be negative, got -1s\n" +
			"lb.yaml:7:7: pools.hello.health.interval: invalid duration \"fast\": want a number with a unit, such as 250ms, 2s or 1m30s",
	},
	{
		name: "bad sizes",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
client:
  max_body: 10mb
  max_header: -1
pools:
  p: {max_replay_body: 1.5MiB}
`,
		want: "lb.yaml:3:3: client.max_body: invalid size \"10mb\": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB\n" +
			"lb.yaml:4:3: client.max_header: invalid size -1: must not be negative\n" +
			"lb.yaml:6:7: pools.p.max_replay_body: invalid size \"1.5MiB\": want bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB, such as 64KiB",
	},
	{
		name: "bad status ranges",
		yaml: `listeners: [{address: ":1", routes: [{pool: a}]}]
pools:
  a: {health: {status: 200-99}}
  b: {health: {status: 700}}
  c: {health: {status: 2xx}}
  d: {health: {status: 399-200}}
`,
		want: "lb.yaml:3:16: pools.a.health.status: invalid status \"200-99\": codes must be between 100 and 599\n" +
			"lb.yaml:4:16: pools.b.health.status: invalid status \"700\": codes must be between 100 and 599\n" +
			"lb.yaml:5:16: pools.c.health.status: invalid status \"2xx\": want a code such as 200 or a range such as 200-399\n" +
			"lb.yaml:6:16: pools.d.health.status: invalid status \"399-200\": the range is reversed",
	},
	{
		name: "bad target addresses",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    targets:
      - 10.0.0.1
      - ::1:80
      - http://10.0.0.1:80
      - 10.0.0.256:80
      - 10.0.0.1:0
      - bad_host:80
      - :80
`,
		want: "lb.yaml:5:9: pools.p.targets[0]: invalid address \"10.0.0.1\": missing port\n" +
			"lb.yaml:6:9: pools.p.targets[1]: invalid address \"::1:80\": an IPv6 address needs brackets, as in [::1]:8080\n" +
			"lb.yaml:7:9: pools.p.targets[2]: invalid address \"http://10.0.0.1:80\": want host:port, not a URL\n" +
			"lb.yaml:8:9: pools.p.targets[3]: invalid address \"10.0.0.256:80\": the host is not a valid IP address\n" +
			"lb.yaml:9:9: pools.p.targets[4]: invalid address \"10.0.0.1:0\": the port must be a number from 1 to 65535\n" +
			"lb.yaml:10:9: pools.p.targets[5]: invalid address \"bad_host:80\": the host is neither an IP address nor a host name\n" +
			"lb.yaml:11:9: pools.p.targets[6]: invalid address \":80\": missing host",
	},
	{
		name: "duplicate targets",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    targets:
      - 10.0.0.1:80
      - "[::1]:80"
      - {address: "[0:0::1]:80", weight: 2}
      - 10.0.0.1:80
`,
		want: "lb.yaml:7:10: pools.p.targets[2].address: duplicate target [0:0::1]:80 (also pools.p.targets[1])\n" +
			"lb.yaml:8:9: pools.p.targets[3]: duplicate target 10.0.0.1:80 (also pools.p.targets[0])",
	},
	{
		name: "weights out of range",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    targets: [{address: 10.0.0.1:80, weight: 1001}, {address: 10.0.0.2:80, weight: -1}]
`,
		want: "lb.yaml:4:38: pools.p.targets[0].weight: must be between 0 and 1000, got 1001\n" +
			"lb.yaml:4:76: pools.p.targets[1].weight: must be between 0 and 1000, got -1",
	},
	{
		name: "unknown pool in route",
		yaml: `listeners:
  - address: ":1"
    routes:
      - {host: api.example.com, pool: api}
      - {pool: hello}
pools:
  hello: {}
  web: {}
`,
		want: "lb.yaml:4:33: listeners[0].routes[0].pool: unknown pool \"api\" (pools: hello, web)",
	},
	{
		name: "listener problems",
		yaml: `listeners:
  - address: 127.0.0.1:8080
    tls: {cert: cert.pem}
    routes: [{pool: p, path_prefix: v1}, {pool: p}]
  - address: 0.0.0.0:8080
    routes: []
  - address: example.com:80
  - address: 127.0.0.1:65536
    routes: [{pool: p}]
pools: {p: {}}
`,
		want: "lb.yaml:3:5: listeners[0].tls.key: required when tls is set\n" +
			"lb.yaml:4:24: listeners[0].routes[0].path_prefix: must start with /\n" +
			"lb.yaml:5:5: listeners[1].address: 0.0.0.0:8080 is already used by listeners[0]\n" +
			"lb.yaml:6:5: listeners[1].routes: at least one route is required\n" +
			"lb.yaml:7:5: listeners[2].address: invalid address \"example.com:80\": the host must be an IP address, localhost, or empty for all interfaces\n" +
			"lb.yaml:7:5: listeners[2].routes: at least one route is required\n" +
			"lb.yaml:8:5: listeners[3].address: invalid address \"127.0.0.1:65536\": the port must be a number from 1 to 65535",
	},
	{
		name: "unreachable route",
		yaml: `listeners:
  - address: ":1"
    routes:
      - {pool: p, path_prefix: /api/}
      - {pool: p, path_prefix: /api/v2/}
      - {pool: p}
      - {pool: p, host: x.example.com}
pools: {p: {}}
`,
		want: "lb.yaml:5:9: listeners[0].routes[1]: never matches: listeners[0].routes[0] comes first and matches every request this one does\n" +
			"lb.yaml:7:9: listeners[0].routes[3]: never matches: listeners[0].routes[2] comes first and matches every request this one does",
	},
	{
		name: "no listeners and no pools",
		yaml: "# nothing yet\nstate_file: x\n",
		want: "lb.yaml:2:1: listeners: at least one listener is required\n" +
			"lb.yaml:2:1: pools: at least one pool is required",
	},
	{
		name: "empty file",
		yaml: "",
		want: "lb.yaml:1:1: listeners: at least one listener is required\n" +
			"lb.yaml:1:1: pools: at least one pool is required",
	},
	{
		name: "pool problems",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    balance: random
    retries: 11
    health:
      path: healthz
      interval: 1s
      timeout: 1s
      passive_failures: -1
  q:
    health: {interval: 1s}
  "a/b": {}
`,
		want: "lb.yaml:4:5: pools.p.balance: unknown balance \"random\" (want least_outstanding or round_robin)\n" +
			"lb.yaml:5:5: pools.p.retries: must be between 0 and 10, got 11\n" +
			"lb.yaml:7:7: pools.p.health.path: must start with /\n" +
			"lb.yaml:9:7: pools.p.health.timeout: 1s must be less than interval 1s\n" +
			"lb.yaml:10:7: pools.p.health.passive_failures: must not be negative, got -1\n" +
			"lb.yaml:12:5: pools.q.health.timeout: the default 2s must be less than interval 1s; set a shorter timeout\n" +
			"lb.yaml:13:3: pools.\"a/b\": invalid pool name: use letters, digits, '.', '_' and '-', starting with a letter or digit",
	},
	{
		name: "admin problems",
		yaml: `listeners: [{address: ":9100", routes: [{pool: p}]}]
admin:
  address: 127.0.0.1:9100
  token: abc
  token_file: lb.token
pools: {p: {}}
`,
		want: "lb.yaml:3:3: admin.address: 127.0.0.1:9100 is already used by listeners[0]\n" +
			"lb.yaml:5:3: admin.token_file: token and token_file are both set; use one",
	},
	{
		name: "admin API beyond loopback in plain text",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
admin: {address: "0.0.0.0:9100"}
pools: {p: {}}
`,
		want: "lb.yaml:2:9: admin.address: 0.0.0.0:9100 is reachable beyond this machine: set tls (cert and key), or allow_plaintext: true if the network is private",
	},
	{
		name: "admin tls without key",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
admin: {address: "0.0.0.0:9100", tls: {cert: c.pem}}
pools: {p: {}}
`,
		want: "lb.yaml:2:34: admin.tls.key: required when tls is set",
	},
	{
		name: "bad admin address",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
admin: {address: "10.0.0.1"}
pools: {p: {}}
`,
		want: "lb.yaml:2:9: admin.address: invalid address \"10.0.0.1\": missing port",
	},
	{
		name: "unset variables",
		yaml: `listeners:
  - address: ${ZD_TEST_UNSET}
    routes: [{pool: p}]
admin:
  token: "${ZD_TEST_UNSET}"
pools: {p: {targets: ["${ZD_TEST_UNSET}:80"]}}
`,
		want: "lb.yaml:2:14: listeners[0].address: environment variable ZD_TEST_UNSET is not set\n" +
			"lb.yaml:5:11: admin.token: environment variable ZD_TEST_UNSET is not set\n" +
			"lb.yaml:6:24: pools.p.targets[0]: environment variable ZD_TEST_UNSET is not set",
	},
	{
		name: "bad variable references",
		yaml: `listeners:
  - address: ${ZD TEST}
    routes: [{pool: p}]
admin:
  token: ${ZD_TEST_UNSET
pools: {p: {}}
`,
		want: "lb.yaml:2:14: listeners[0].address: invalid variable name in ${ZD TEST} (write $$ for a literal $)\n" +
			"lb.yaml:5:10: admin.token: unterminated ${ (write $$ for a literal $)",
	},
	{
		name: "alias to no anchor",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools: {p: *base}
`,
		want: "lb.yaml:2:9: pools.p: alias *base refers to no anchor &base before it",
	},
	{
		name: "merge after the key it overrides",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools:
  p:
    retries: 1
    <<: {retries: 2}
`,
		want: "lb.yaml:5:5: pools.p.retries: set again by a << after it; put << first, so keys written out override it",
	},
	{
		name: "tags",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools: {p: {retries: !!str 2}}
`,
		want: "lb.yaml:2:13: pools.p.retries: YAML tags such as !!str are not supported; quote the value to make it a string",
	},
	{
		name: "two documents",
		yaml: "listeners: []\n---\npools: {}\n",
		want: "lb.yaml:2:1: a second YAML document; the config is one document",
	},
	{
		name: "non-string pool name",
		yaml: `listeners: [{address: ":1", routes: [{pool: p}]}]
pools: {p: {}, 0x10: {}}
`,
		want: "lb.yaml:2:16: pools.0x10: a name must be a string; quote it",
	},
	{
		name: "aliases that expand too far",
		yaml: billionLaughs(),
		want: "lb.yaml:11:5: listeners[8]: aliases expand to more than 10000 nodes",
	},
}

// billionLaughs nests aliases of routes in aliases of listeners, so that
// the document would expand to far more nodes than any config has.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("pools: {p: {}}\nlisteners:\n  - &l {address: \":1\", routes: [&r {pool: p}")
	b.WriteString(strings.Repeat(", *r", 400))
	b.WriteString("]}\n")
	b.WriteString(strings.Repeat("  - *l\n", 400))
	return b.String()
}

func TestParseLBErrors(t *testing.T) {
	os.Unsetenv("ZD_TEST_UNSET")
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseLB("lb.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; got %s", dump(cfg))
			}
			if cfg != nil {
				t.Errorf("got a config with the error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Errorf("error is %T, want Errors", err)
			}
		})
	}
}

// FuzzParseLB checks that no input panics, that errors always carry a
// position and come out the same on every run, and that a config that
// parses keeps the promises the proxy relies on.
func FuzzParseLB(f *testing.F) {
	f.Add(docsExample(f) + apiPool)
	f.Add(benchConfig)
	for _, tc := range errorCases {
		f.Add(tc.yaml)
	}
	f.Add("listeners: [{address: ':1', routes: [{pool: p}]}]\npools: {p: &p {targets: [10.0.0.1:80]}, q: *p, r: {<<: *p, retries: 0}}\n")
	f.Add("listeners: [{address: '${HOME}:1', routes: [{pool: p}]}]\npools: {p: {}}\n# ${X}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := ParseLB("f.yaml", []byte(doc))
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
			if _, err2 := ParseLB("f.yaml", []byte(doc)); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("errors differ between runs:\n%v\n---\n%v", err, err2)
			}
			return
		}
		checkInvariants(t, cfg)
	})
}

func checkInvariants(t *testing.T, cfg *LB) {
	t.Helper()
	if len(cfg.Listeners) == 0 || len(cfg.Pools) == 0 || cfg.Admin.Address == "" {
		t.Fatalf("missing listeners, pools or admin address: %s", dump(cfg))
	}
	if len(cfg.PoolOrder) != len(cfg.Pools) {
		t.Fatalf("PoolOrder %v does not list the pools", cfg.PoolOrder)
	}
	for _, name := range cfg.PoolOrder {
		if p := cfg.Pools[name]; p == nil || p.Name != name {
			t.Fatalf("PoolOrder names %q, pool is %+v", name, p)
		}
	}
	for _, l := range cfg.Listeners {
		if len(l.Routes) == 0 {
			t.Fatalf("listener %s without routes", l.Address)
		}
		for _, r := range l.Routes {
			if cfg.Pools[r.Pool] == nil {
				t.Fatalf("route to unknown pool %q", r.Pool)
			}
		}
	}
	positive := []Duration{cfg.ShutdownTimeout, cfg.Client.ReadHeaderTimeout, cfg.Client.IdleTimeout}
	if cfg.Client.MaxBodyBytes <= 0 || cfg.Client.MaxHeaderBytes <= 0 {
		t.Fatalf("client sizes not positive: %+v", cfg.Client)
	}
	for _, p := range cfg.Pools {
		h, u := p.Health, p.Upstream
		positive = append(positive, h.Interval, h.Timeout, p.DeregistrationDelay, p.WebSocketGrace,
			u.ConnectTimeout, u.ResponseTimeout, u.IdleTimeout)
		if p.FailOpen == nil || p.Retries == nil || h.PassiveFailures == nil {
			t.Fatalf("pool %s has nil pointers", p.Name)
		}
		if p.Balance != BalanceLeastOutstanding && p.Balance != BalanceRoundRobin ||
			*p.Retries < 0 || *p.Retries > MaxRetries || *h.PassiveFailures < 0 ||
			h.Timeout >= h.Interval || h.HealthyThreshold < 1 || h.UnhealthyThreshold < 1 ||
			!strings.HasPrefix(h.Path, "/") || h.StatusMin < 100 || h.StatusMin > h.StatusMax || h.StatusMax > 599 ||
			p.MaxReplayBytes <= 0 || u.MaxIdlePerTarget <= 0 {
			t.Fatalf("pool %s breaks a rule: %s", p.Name, dump(cfg))
		}
		for _, tg := range p.Targets {
			if tg.Weight == nil || *tg.Weight < 0 || *tg.Weight > MaxWeight {
				t.Fatalf("pool %s: bad weight on %s", p.Name, tg.Address)
			}
			if _, err := targetAddr(tg.Address); err != nil {
				t.Fatalf("pool %s: %v", p.Name, err)
			}
		}
	}
	for _, d := range positive {
		if d <= 0 {
			t.Fatalf("a duration is not positive: %s", dump(cfg))
		}
	}
}

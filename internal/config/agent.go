package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Agent is the configuration of `zerodown agent` (docs/agent.md): where it
// listens, its token, where releases live and which port the app gets. A
// config from LoadAgent or ParseAgent is complete: defaults are filled in
// and every pointer field is set.
type Agent struct {
	// Path is the file the config was read from; set by LoadAgent.
	Path string `yaml:"-"`

	Listen    string `yaml:"listen"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	TLS       *TLS   `yaml:"tls"`
	// AllowPlaintext lets the API listen beyond loopback without TLS, for
	// networks that are private already.
	AllowPlaintext bool `yaml:"allow_plaintext"`

	// User and Group are who the app and its hooks run as (the app spec
	// may name others); empty, the agent's own. The agent refuses to run an
	// app as root unless AllowRoot is set.
	User      string `yaml:"user"`
	Group     string `yaml:"group"`
	AllowRoot bool   `yaml:"allow_root"`
	// AllowUsers and AllowGroups are the others an app spec may name; a
	// spec naming any other is refused, since whoever can upload a
	// release could otherwise run code as any account on the machine.
	AllowUsers  []string `yaml:"allow_users"`
	AllowGroups []string `yaml:"allow_groups"`

	// Root holds releases/<version>/, the current link, logs and state.
	Root string `yaml:"root"`
	// Port is exported to the app as PORT; its health is checked there.
	Port int `yaml:"port"`
	// SwapPort is the app's second slot, for the swap strategy: a new
	// release starts there beside the running one, the load balancer
	// moves to it, and the old one is stopped once drained; the next
	// release goes back to Port. 0: one slot.
	SwapPort int `yaml:"swap_port"`
	// KeepReleases is how many releases are kept; the current and the
	// previous one are never deleted.
	KeepReleases     int      `yaml:"keep_releases"`
	MaxArtifactBytes ByteSize `yaml:"max_artifact_bytes"`
	MaxUnpackedBytes ByteSize `yaml:"max_unpacked_bytes"`
	// LogMaxBytes caps each release's log file; past it the file is moved
	// to <version>.log.1 and started anew.
	LogMaxBytes ByteSize `yaml:"log_max_bytes"`
	// Preflight starts a new release on a spare port and checks its health
	// before the running release is stopped, so a release that fails its
	// health check never takes the port from one that works.
	Preflight *bool        `yaml:"preflight"`
	Restart   AgentRestart `yaml:"restart"`
	// ShutdownTimeout bounds how long SIGTERM waits for an activation in
	// progress; the app itself keeps running.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// AgentRestart is the backoff between restarts of an app that exited on
// its own: Backoff, doubling up to MaxBackoff, back to Backoff once the app
// has stayed up for MaxBackoff.
type AgentRestart struct {
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// Defaults of agent.yaml.
const (
	DefaultAgentListen          = "127.0.0.1:7101"
	DefaultAgentTokenFile       = "agent.token" // in root
	DefaultKeepReleases         = 5
	DefaultMaxArtifactBytes     = 1 << 30
	DefaultMaxUnpackedBytes     = 4 << 30
	DefaultAgentLogMaxBytes     = 10 << 20
	DefaultAgentPreflight       = true
	DefaultRestartBackoff       = 500 * time.Millisecond
	DefaultRestartMaxBackoff    = 30 * time.Second
	DefaultAgentShutdownTimeout = 30 * time.Second
	MinAgentTokenLength         = 16
)

// LoadAgent reads and parses the agent config at path; see ParseAgent.
func LoadAgent(path string) (*Agent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	return ParseAgent(path, data)
}

// ParseAgent parses an agent config the way ParseLB parses lb.yaml: ${VAR}
// from the environment, strict keys and types, defaults, validation, every
// problem with file:line:col.
func ParseAgent(path string, data []byte) (*Agent, error) {
	cfg, c, err := parseConfig[Agent](path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cfg.Path = path
	cfg.applyDefaults()
	v := &validator{c: c}
	v.agent(cfg)
	if len(v.errs) > 0 {
		return nil, v.errs.sorted()
	}
	return cfg, nil
}

// parseConfig runs the steps every config file goes through before its own
// defaults and validation: ${VAR} expansion, parsing, the check of keys and
// types along T, and decoding. The checker it returns knows where each key
// is written.
func parseConfig[T any](path string, data []byte, lookup func(string) (string, bool)) (*T, *checker, error) {
	expanded, envErrs := expandEnv(path, data, lookup)
	c := newChecker(path)
	file, err := parseYAML(expanded)
	if err != nil {
		return nil, nil, append(envErrs, c.libraryError(err)).sorted()
	}
	root, docErr := c.body(file)
	if docErr != nil {
		return nil, nil, append(envErrs, docErr).sorted()
	}
	c.at[""] = position{1, 1}
	if p := startPos(root); p.Line > 0 {
		c.at[""] = p
	}
	if root != nil {
		c.value(root, reflect.TypeFor[T](), "", c.at[""], true, false)
	}
	if len(envErrs) > 0 {
		pathOn := c.pathsOn()
		for _, e := range envErrs {
			e.Path = pathOn(e.Line, e.Column)
		}
		return nil, nil, envErrs.sorted()
	}
	if len(c.errs) > 0 {
		return nil, nil, c.errs.sorted()
	}
	cfg := new(T)
	if root != nil {
		if err := decodeNode(root, cfg); err != nil {
			return nil, nil, Errors{c.libraryError(err)}
		}
	}
	return cfg, c, nil
}

// decodeNode is decodeYAML for any config type.
func decodeNode(root ast.Node, v any) (err error) {
	defer recoverLibrary(&err)
	return yaml.NodeToValue(root, v, yaml.DisallowUnknownField(), yaml.AllowDuplicateMapKey())
}

func (cfg *Agent) applyDefaults() {
	orDefault(&cfg.Listen, DefaultAgentListen)
	if cfg.Token == "" && cfg.TokenFile == "" && cfg.Root != "" {
		cfg.TokenFile = filepath.Join(cfg.Root, DefaultAgentTokenFile)
	}
	orDefault(&cfg.KeepReleases, DefaultKeepReleases)
	orDefault(&cfg.MaxArtifactBytes, DefaultMaxArtifactBytes)
	orDefault(&cfg.MaxUnpackedBytes, DefaultMaxUnpackedBytes)
	orDefault(&cfg.LogMaxBytes, DefaultAgentLogMaxBytes)
	ptrDefault(&cfg.Preflight, DefaultAgentPreflight)
	orDefault(&cfg.Restart.Backoff, Duration(DefaultRestartBackoff))
	orDefault(&cfg.Restart.MaxBackoff, Duration(DefaultRestartMaxBackoff))
	orDefault(&cfg.ShutdownTimeout, Duration(DefaultAgentShutdownTimeout))
}

func (v *validator) agent(cfg *Agent) {
	c := v.c
	lp := c.key("", "listen")
	listen, err := listenAddr(cfg.Listen)
	if err != nil {
		v.errorf(lp, "%v", err)
	} else if !loopbackHost(listen) && cfg.TLS == nil && !cfg.AllowPlaintext {
		v.errorf(lp, "%s is reachable beyond this machine: set tls (cert and key), or allow_plaintext: true if the network is private", cfg.Listen)
	}
	switch {
	case cfg.Token != "" && cfg.TokenFile != "":
		v.errorf(c.key("", "token_file"), "token and token_file are both set; use one")
	case cfg.Token != "" && len(cfg.Token) < MinAgentTokenLength:
		// Never quote the token: errors end up in logs.
		v.errorf(c.key("", "token"), "too short: use at least %d characters, or leave it out to have one generated", MinAgentTokenLength)
	case strings.ContainsFunc(cfg.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		v.errorf(c.key("", "token"), "contains spaces or control characters")
	}
	v.tls(c.key("", "tls"), cfg.TLS)
	if cfg.Root == "" {
		v.errorf(c.key("", "root"), "required: the directory for releases, such as /var/lib/zerodown/hello")
	}
	for _, k := range []struct{ key, v string }{{"user", cfg.User}, {"group", cfg.Group}} {
		if k.v != "" && !ValidAccountName(k.v) {
			v.errorf(c.key("", k.key), "%q is not a user or group name (letters, digits, _, - and ., not starting with -) or a numeric ID", k.v)
		}
	}
	for _, k := range []struct {
		key   string
		names []string
	}{{"allow_users", cfg.AllowUsers}, {"allow_groups", cfg.AllowGroups}} {
		for i, n := range k.names {
			if !ValidAccountName(n) {
				v.errorf(c.item(c.key("", k.key), i), "%q is not a user or group name (letters, digits, _, - and ., not starting with -) or a numeric ID", n)
			}
		}
	}
	pp := c.key("", "port")
	switch {
	case cfg.Port == 0:
		v.errorf(pp, "required: the port the app listens on, exported to it as PORT")
	case cfg.Port < 1 || cfg.Port > 65535:
		v.errorf(pp, "must be from 1 to 65535, got %d", cfg.Port)
	case err == nil && strings.HasSuffix(listen, fmt.Sprintf(":%d", cfg.Port)):
		v.errorf(pp, "%d is the agent's own port (listen %s)", cfg.Port, cfg.Listen)
	}
	sp := c.key("", "swap_port")
	switch {
	case cfg.SwapPort == 0:
	case cfg.SwapPort < 1 || cfg.SwapPort > 65535:
		v.errorf(sp, "must be from 1 to 65535, got %d", cfg.SwapPort)
	case cfg.SwapPort == cfg.Port:
		v.errorf(sp, "%d is port too: the two slots need two ports", cfg.SwapPort)
	case err == nil && strings.HasSuffix(listen, fmt.Sprintf(":%d", cfg.SwapPort)):
		v.errorf(sp, "%d is the agent's own port (listen %s)", cfg.SwapPort, cfg.Listen)
	}
	if cfg.Restart.MaxBackoff < cfg.Restart.Backoff {
		v.errorf(c.key(c.key("", "restart"), "max_backoff"), "%s is less than backoff %s", cfg.Restart.MaxBackoff, cfg.Restart.Backoff)
	}
}

// loopbackHost reports whether a normalized listen address is reachable
// from this machine only.
func loopbackHost(norm string) bool {
	host, _, err := net.SplitHostPort(norm)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSH is an environment's ssh: block, shared by its hosts with an ssh:
// destination (docs/hosts.md).
type SSH struct {
	// User logs in when a host's destination names none; default the
	// local user.
	User string `yaml:"user"`
	// Port is sshd's port when a destination names none; default 22.
	Port int `yaml:"port"`
	// Identity is a private key file; keys of the ssh-agent at
	// SSH_AUTH_SOCK are tried too. ~ is the local home directory.
	Identity string `yaml:"identity"`
	// KnownHosts verifies host keys; default ~/.ssh/known_hosts. A host
	// whose key is not there is refused, never trusted silently.
	KnownHosts string `yaml:"known_hosts"`
	// ProxyJump is a jump host, [user@]host[:port], for fleets on a
	// private network; its key is checked against KnownHosts too.
	ProxyJump string `yaml:"proxy_jump"`
	// Dir is where bootstrap installs the agent on the host, relative to
	// the login's home directory unless absolute; default .zerodown.
	Dir string `yaml:"dir"`
	// KeepAlive is how often an idle connection is checked; a host that
	// does not answer within three of them counts as lost.
	KeepAlive Duration `yaml:"keepalive"`
	// Timeout bounds connecting and logging in.
	Timeout Duration `yaml:"timeout"`
	// AllowRoot lets the agent bootstrap installs run the app as root,
	// when the login is root.
	AllowRoot bool `yaml:"allow_root"`
}

// HostExec drives a host with the user's deploy scripts. Each command is an
// argv (no shell) in which ${HOST}, ${VERSION} and ${ARTIFACT} are replaced
// when it runs; they are also in its environment.
type HostExec struct {
	// Deploy puts ${VERSION} (the artifact at ${ARTIFACT}) on the host
	// and starts it; exit status 0 means done.
	Deploy []string `yaml:"deploy"`
	// Rollback puts the previous version back; ${VERSION} is the version
	// zerodown goes back to when it knows it.
	Rollback []string `yaml:"rollback"`
	// Status prints the version the host runs. Without it zerodown cannot
	// skip hosts already on the version.
	Status []string `yaml:"status"`
	// Timeout is each script's deadline; default 10m.
	Timeout Duration `yaml:"timeout"`
	// Dir is where the scripts run, relative to zerodown.yaml's directory,
	// which is also the default. The loader makes it absolute.
	Dir string `yaml:"dir"`
}

// Defaults of the ssh: block and exec hosts.
const (
	DefaultSSHPort      = 22
	DefaultSSHDir       = ".zerodown"
	DefaultSSHKeepAlive = 5 * time.Second
	DefaultSSHTimeout   = 15 * time.Second
	DefaultSSHAgent     = "http://127.0.0.1:7101"
)

// hostVars are the variables an exec host's commands get when they run;
// the loader leaves them as written.
var hostVars = []string{"HOST", "ARTIFACT"}

// Destination is a parsed SSH destination.
type Destination struct {
	User string
	Host string
	Port int
}

// Addr is host:port for dialing.
func (d Destination) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

func (d Destination) String() string {
	s := d.Addr()
	if d.User != "" {
		s = d.User + "@" + s
	}
	return s
}

// ParseDestination parses [user@]host[:port]; an IPv6 address with a port
// is written in brackets. A missing user or port is left zero.
func ParseDestination(s string) (Destination, error) {
	var d Destination
	rest := s
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		d.User, rest = rest[:i], rest[i+1:]
		if d.User == "" {
			return d, fmt.Errorf("invalid SSH destination %q: empty user before @", s)
		}
	}
	host := rest
	if h, p, err := net.SplitHostPort(rest); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return d, fmt.Errorf("invalid SSH destination %q: port %q is not 1-65535", s, p)
		}
		host, d.Port = h, n
	} else if strings.Count(rest, ":") == 1 || strings.HasPrefix(rest, "[") {
		return d, fmt.Errorf("invalid SSH destination %q: want [user@]host[:port]", s)
	}
	if host == "" || strings.ContainsAny(host, " /\t@[]") || strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return d, fmt.Errorf("invalid SSH destination %q: want [user@]host[:port], such as deploy@10.0.1.11", s)
	}
	d.Host = host
	return d, nil
}

// SSHDestination is where host h is reached: its ssh: destination with
// the environment's user and port filled in.
func (e *Environment) SSHDestination(h *Host) (Destination, error) {
	d, err := ParseDestination(h.SSH)
	if err != nil {
		return d, err
	}
	if d.User == "" {
		d.User = e.SSH.User
	}
	if d.Port == 0 {
		d.Port = e.SSH.Port
	}
	return d, nil
}

// AgentPort is the port of the agent's URL: where the agent of an ssh host
// listens on the host's loopback.
func (h *Host) AgentPort() int {
	u, err := url.Parse(h.Agent)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

// usesSSH reports whether any host of e is reached over SSH; the ssh:
// block gets its defaults only then.
func (e *Environment) usesSSH() bool {
	for _, h := range e.Hosts {
		if h.SSH != "" {
			return true
		}
	}
	return false
}

func sshDefaults(e *Environment) {
	for i := range e.Hosts {
		if x := e.Hosts[i].Exec; x != nil && x.Timeout == 0 {
			x.Timeout = Duration(DefaultExecTimeout)
		}
	}
	if !e.usesSSH() {
		return
	}
	s := &e.SSH
	if s.Port == 0 {
		s.Port = DefaultSSHPort
	}
	orDefault(&s.Dir, DefaultSSHDir)
	// The host's home, as a relative path is: "~" is not expanded there.
	if s.Dir == "~" {
		s.Dir = "."
	} else if rest, ok := strings.CutPrefix(s.Dir, "~/"); ok {
		s.Dir = rest
	}
	if s.KeepAlive == 0 {
		s.KeepAlive = Duration(DefaultSSHKeepAlive)
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(DefaultSSHTimeout)
	}
	if s.User == "" {
		s.User = localUser()
	}
	for i := range e.Hosts {
		h := &e.Hosts[i]
		if h.SSH != "" && h.Agent == "" {
			h.Agent = DefaultSSHAgent
		}
	}
}

// localUser is who runs zerodown, the default SSH login, as ssh's.
func localUser() string {
	for _, k := range []string{"USER", "LOGNAME", "USERNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// resolveSSHPaths makes the local paths of the ssh: block absolute: ~ is
// the home directory, anything else relative to zerodown.yaml.
func resolveSSHPaths(r pathResolver, e *Environment) {
	if !e.usesSSH() {
		return
	}
	s := &e.SSH
	home := func(p string) string {
		if p == "~" || strings.HasPrefix(p, "~/") {
			if h, err := os.UserHomeDir(); err == nil {
				return filepath.Join(h, p[1:])
			}
		}
		return r.resolve(p)
	}
	s.Identity = home(s.Identity)
	if s.KnownHosts == "" {
		s.KnownHosts = "~/.ssh/known_hosts"
	}
	s.KnownHosts = home(s.KnownHosts)
}

// hostKind checks which way host h is reached: an agent's URL, SSH, or
// the user's scripts; exactly one of them.
func (d *deployValidator) hostKind(e *Environment, h *Host, hp string) {
	c := d.c
	switch {
	case h.Exec != nil && h.SSH != "":
		d.errorf(c.key(hp, "exec"), "exec and ssh are both set: a host is reached by the agent over SSH, or by your scripts")
	case h.Exec != nil:
		d.hostExec(h.Exec, c.key(hp, "exec"))
		if h.Agent != "" {
			d.errorf(c.key(hp, "agent"), "an exec host has no agent: your scripts deploy it")
		}
		if h.SwapTarget != "" {
			d.errorf(c.key(hp, "swap_target"), "the swap strategy needs an agent's two slots; an exec host has one")
		}
	case h.SSH != "":
		sp := c.key(hp, "ssh")
		if _, err := e.SSHDestination(h); err != nil {
			d.errorf(sp, "%v", err)
		} else if e.SSH.User == "" {
			d.errorf(sp, "no user: write user@%s, or set ssh.user", h.SSH)
		}
		if h.Token != "" || h.TokenFile != "" {
			d.errorf(c.key(hp, "token"), "a host reached over SSH needs no token: zerodown reads the agent's own on the host")
		}
		if u, err := url.Parse(h.Agent); err == nil && u.Hostname() != "" {
			if ip := net.ParseIP(u.Hostname()); u.Scheme != "http" || (u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback())) || u.Port() == "" {
				d.errorf(c.key(hp, "agent"), "over SSH the agent listens on the host's loopback: want http://127.0.0.1:PORT, not %s", h.Agent)
			}
		}
	}
}

func (d *deployValidator) hostExec(x *HostExec, xp string) {
	c := d.c
	for _, s := range []struct {
		key      string
		argv     []string
		required bool
	}{{"deploy", x.Deploy, true}, {"rollback", x.Rollback, false}, {"status", x.Status, false}} {
		kp := c.key(xp, s.key)
		switch {
		case len(s.argv) == 0 && s.required:
			d.errorf(kp, `required: the command that deploys, such as ["./scripts/deploy.sh", "${HOST}", "${VERSION}", "${ARTIFACT}"]`)
		case len(s.argv) > 0 && strings.TrimSpace(s.argv[0]) == "":
			d.errorf(c.item(kp, 0), "the program is empty")
		}
	}
	if x.Timeout < 0 {
		d.errorf(c.key(xp, "timeout"), "must be positive")
	}
}

func (d *deployValidator) sshBlock(e *Environment, ep string) {
	if !e.usesSSH() {
		return
	}
	c := d.c
	sp := c.key(ep, "ssh")
	if e.SSH.Port < 1 || e.SSH.Port > 65535 {
		d.errorf(c.key(sp, "port"), "port %d is not 1-65535", e.SSH.Port)
	}
	if e.SSH.ProxyJump != "" {
		if _, err := ParseDestination(e.SSH.ProxyJump); err != nil {
			d.errorf(c.key(sp, "proxy_jump"), "%v", err)
		}
	}
	if e.SSH.KeepAlive < 0 {
		d.errorf(c.key(sp, "keepalive"), "must be positive")
	}
	if e.SSH.Timeout < 0 {
		d.errorf(c.key(sp, "timeout"), "must be positive")
	}
}

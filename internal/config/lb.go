package config

import "time"

// LB is the configuration of `zerodown lb`: listeners route requests to pools
// of targets; the admin API changes pool membership at run time. A config
// from LoadLB or ParseLB is complete: defaults are filled in, every pointer
// field is set and every route names an existing pool.
type LB struct {
	// Path is the file the config was read from; set by LoadLB, used in errors
	// and by SIGHUP reloads.
	Path string `yaml:"-"`

	Listeners []Listener       `yaml:"listeners"`
	Admin     Admin            `yaml:"admin"`
	StateFile string           `yaml:"state_file"`
	Client    Client           `yaml:"client"`
	Pools     map[string]*Pool `yaml:"pools"`
	// PoolOrder keeps the pools in file order for stable listings.
	PoolOrder []string `yaml:"-"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Listener is one address clients connect to.
type Listener struct {
	Name    string  `yaml:"name"`
	Address string  `yaml:"address"`
	TLS     *TLS    `yaml:"tls"`
	Routes  []Route `yaml:"routes"`
	// MaxConns caps this listener's client connections; 0 leaves only the
	// global client.max_conns.
	MaxConns int `yaml:"max_conns"`
}

// TLS names PEM files; both are required when the block is present.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Route sends requests whose Host and path match to a pool. An empty Host
// matches any host; an empty PathPrefix matches any path. Routes are tried in
// order; the first match wins.
type Route struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
	Pool       string `yaml:"pool"`
}

// Admin is the admin API listener.
type Admin struct {
	Address   string `yaml:"address"`
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	TLS       *TLS   `yaml:"tls"`
	// AllowPlaintext lets the admin API listen beyond loopback without TLS,
	// for networks that are private already.
	AllowPlaintext bool `yaml:"allow_plaintext"`
}

// Client holds limits toward clients of the load balancer.
type Client struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	MaxBodyBytes      ByteSize `yaml:"max_body"`
	MaxHeaderBytes    ByteSize `yaml:"max_header"`
	// MaxHeaders bounds the number of header lines of a request.
	MaxHeaders int `yaml:"max_headers"`
	// MaxConns caps client connections over all listeners; beyond it new
	// connections wait in the kernel's accept queue, as with HAProxy's
	// maxconn. It is lowered at start to what the open-files limit allows.
	MaxConns int `yaml:"max_conns"`
}

// Pool is a set of targets that share balancing, health checks and upstream
// settings.
type Pool struct {
	Name                string       `yaml:"-"`
	Balance             string       `yaml:"balance"`
	Targets             []TargetSpec `yaml:"targets"`
	Health              HealthCheck  `yaml:"health"`
	FailOpen            *bool        `yaml:"fail_open"`
	DeregistrationDelay Duration     `yaml:"deregistration_delay"`
	WebSocketGrace      Duration     `yaml:"websocket_grace"`
	Retries             *int         `yaml:"retries"`
	MaxReplayBytes      ByteSize     `yaml:"max_replay_body"`
	Upstream            Upstream     `yaml:"upstream"`
}

// TargetSpec is one target of a pool in the config file. In YAML it is
// either a plain "ip:port" string or a mapping with address and weight.
type TargetSpec struct {
	Address string `yaml:"address"`
	Weight  *int   `yaml:"weight"`
}

// HealthCheck is the active health check of a pool's targets.
type HealthCheck struct {
	Path               string   `yaml:"path"`
	Interval           Duration `yaml:"interval"`
	Timeout            Duration `yaml:"timeout"`
	HealthyThreshold   int      `yaml:"healthy_threshold"`
	UnhealthyThreshold int      `yaml:"unhealthy_threshold"`
	// Status is an accepted status range such as "200-399" or "200".
	Status string `yaml:"status"`
	// PassiveFailures is how many connect failures in a row mark a target
	// unhealthy without waiting for the next active check; 0 turns it off.
	PassiveFailures *int `yaml:"passive_failures"`
	// StatusMin and StatusMax are Status parsed.
	StatusMin int `yaml:"-"`
	StatusMax int `yaml:"-"`
}

// Upstream tunes connections toward targets.
type Upstream struct {
	ConnectTimeout   Duration `yaml:"connect_timeout"`
	ResponseTimeout  Duration `yaml:"response_timeout"`
	IdleTimeout      Duration `yaml:"idle_timeout"`
	MaxIdlePerTarget int      `yaml:"max_idle_per_target"`
}

// Balance algorithms.
const (
	BalanceLeastOutstanding = "least_outstanding"
	BalanceRoundRobin       = "round_robin"
)

// Defaults, named so docs and code agree.
const (
	DefaultAdminAddress        = "127.0.0.1:9100"
	DefaultBalance             = BalanceLeastOutstanding
	DefaultFailOpen            = true
	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultClientIdleTimeout   = 60 * time.Second
	DefaultMaxBodyBytes        = 10 << 20
	DefaultMaxHeaderBytes      = 64 << 10
	DefaultMaxHeaders          = 100
	DefaultMaxConns            = 10000
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultHealthPath          = "/"
	DefaultHealthInterval      = 5 * time.Second
	DefaultHealthTimeout       = 2 * time.Second
	DefaultHealthyThreshold    = 2
	DefaultUnhealthyThreshold  = 2
	DefaultHealthStatus        = "200-399"
	DefaultPassiveFailures     = 3
	DefaultDeregistrationDelay = 30 * time.Second
	DefaultWebSocketGrace      = 10 * time.Second
	DefaultRetries             = 2
	DefaultMaxReplayBytes      = 64 << 10
	DefaultConnectTimeout      = 2 * time.Second
	DefaultResponseTimeout     = 60 * time.Second
	// DefaultUpstreamIdleTimeout stays below the keep-alive timeouts of common
	// backends (Node.js 5s, Apache 5s, nginx 75s) so the proxy, not the
	// backend, closes an idle connection; see docs/lb.md.
	DefaultUpstreamIdleTimeout = 4 * time.Second
	DefaultMaxIdlePerTarget    = 256
	DefaultWeight              = 1
	MaxWeight                  = 1000
	MaxRetries                 = 10
)

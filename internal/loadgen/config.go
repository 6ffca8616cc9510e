package loadgen

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	// DefaultTimeout bounds one request, from when it starts to the last
	// byte of its answer.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxLag is how late a request may start before it is dropped.
	DefaultMaxLag = time.Second
	// DefaultMaxConcurrency caps requests in flight in the open model.
	DefaultMaxConcurrency = 1000
	// DefaultVersionHeader is the answer header that names the serving version.
	DefaultVersionHeader = "X-Version"
	// DefaultTimelineRows bounds the timeline: an hour at one row per second.
	DefaultTimelineRows = 3600
	// UserAgent is sent with every request unless a header overrides it.
	UserAgent = "zerodown-load"

	// maxRowVersions is how many distinct versions one timeline row tracks;
	// more are counted as OtherVersion.
	maxRowVersions = 16
	// maxRunVersions is the same bound for the whole run.
	maxRunVersions = 64
	// maxVersionLen truncates version header values.
	maxVersionLen = 64
	// maxEvents bounds marked events; more are counted, not kept.
	maxEvents = 10000
	// maxLaneCycle bounds the sum of lane weights (after dividing by their
	// greatest common divisor): the lane sequence is precomputed.
	maxLaneCycle = 10000
	// minTimelineRows keeps the halving timeline meaningful.
	minTimelineRows = 16
)

// OtherVersion counts answers whose version was not tracked because too
// many distinct versions were seen. NoVersion counts answers without the
// version header.
const (
	OtherVersion = "(other)"
	NoVersion    = "(none)"
)

// ClientKind selects the HTTP client.
type ClientKind string

const (
	// ClientAuto picks ClientRaw in closed-loop mode when every target is
	// http://, and ClientGo otherwise.
	ClientAuto ClientKind = ""
	// ClientGo is Go's net/http client: connection pool, keep-alive, TLS,
	// and its silent retries of requests on reused connections, which are
	// detected and reported.
	ClientGo ClientKind = "go"
	// ClientRaw is a minimal HTTP/1.1 client over one keep-alive connection
	// per worker, for throughput. It never retries. http:// only.
	ClientRaw ClientKind = "raw"
)

// Target is one lane of requests.
type Target struct {
	// Label names the lane in reports and JTL files; default "METHOD URL".
	Label string
	// Method defaults to GET.
	Method string
	// URL is an absolute http:// or https:// URL.
	URL string
	// Header is sent with every request; a "Host" entry sets the Host header.
	Header http.Header
	// Body is sent with every request (with Content-Length).
	Body []byte
	// Weight is the lane's share of requests relative to the other lanes;
	// 0 means 1.
	Weight int
	// ExpectBody, when set, must occur in every 2xx answer's body.
	ExpectBody string
	// ExpectEcho requires every 2xx answer's body to equal Body byte for
	// byte (an echo endpoint, such as examples/hello's POST).
	ExpectEcho bool
}

// Config is a load run. Exactly one of Rate (open model) and Connections
// (closed loop) is set.
type Config struct {
	// Targets are the lanes; requests are spread over them by weight in a
	// fixed interleaved order.
	Targets []Target

	// Rate is the open model's requests per second: request i is due at
	// start + i/Rate whatever the answers do.
	Rate float64
	// Connections is the closed loop's number of workers, each sending its
	// next request as soon as the previous answer is complete.
	Connections int

	// Duration of the run; 0 runs until Stop.
	Duration time.Duration
	// Timeout bounds each request from its start; default DefaultTimeout.
	Timeout time.Duration
	// MaxLag is how late after its due time a request may start before it
	// is dropped; default DefaultMaxLag. Open model only.
	MaxLag time.Duration
	// MaxConcurrency caps requests in flight in the open model; workers are
	// added as needed up to it. Default DefaultMaxConcurrency.
	MaxConcurrency int

	// VersionHeader names the answer header counted per second; default
	// DefaultVersionHeader.
	VersionHeader string
	// Client selects the HTTP client; default ClientAuto.
	Client ClientKind
	// DisableKeepAlives opens a new connection for every request.
	DisableKeepAlives bool
	// InsecureSkipVerify accepts any TLS certificate (https targets).
	InsecureSkipVerify bool

	// TimelineRows bounds the per-second timeline; default
	// DefaultTimelineRows. When a run outlasts it, adjacent rows are merged
	// pairwise so the timeline always covers the whole run.
	TimelineRows int

	// JTL, when set, receives one JMeter CSV row per request, with header.
	JTL io.Writer
	// OnSecond, when set, is called with each finished second of the
	// timeline, in order, from one goroutine. It must return quickly.
	OnSecond func(Row)
}

// lane is a validated Target ready to send.
type lane struct {
	Target
	idx     int
	u       *url.URL
	host    string // Host header value
	addr    string // host:port to dial
	addrIdx int    // index of addr among the distinct addresses
	method  string
	header  http.Header   // without Host
	raw     []byte        // the whole request for the raw client
	tmpl    *http.Request // the Go client's request, copied per request
	check   bool          // the body must be inspected
}

func (c *Config) withDefaults() Config {
	cfg := *c
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = DefaultMaxConcurrency
	}
	if cfg.VersionHeader == "" {
		cfg.VersionHeader = DefaultVersionHeader
	}
	if cfg.TimelineRows == 0 {
		cfg.TimelineRows = DefaultTimelineRows
	}
	return cfg
}

// validate checks a config with defaults applied.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch {
	case c.Rate != 0 && c.Connections != 0:
		add("set a rate (open model) or a number of connections (closed loop), not both")
	case c.Rate == 0 && c.Connections == 0:
		add("set a rate (open model) or a number of connections (closed loop)")
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		add("rate must be a positive number of requests per second, got %v", c.Rate)
	case c.Rate > 1e6:
		add("rate %v is above the limit of 1000000 requests per second", c.Rate)
	case c.Connections < 0:
		add("connections must be positive, got %d", c.Connections)
	case c.Connections > 100000:
		add("connections %d is above the limit of 100000", c.Connections)
	}
	if c.Duration < 0 {
		add("duration must not be negative, got %s", c.Duration)
	}
	if c.Rate > 0 && c.Duration > 0 && c.Duration.Seconds()*c.Rate < 1 {
		add("duration %s at %v requests per second sends no request", c.Duration, c.Rate)
	}
	if c.Timeout < 0 {
		add("timeout must be positive, got %s", c.Timeout)
	}
	if c.MaxLag < 0 {
		add("max lag must be positive, got %s", c.MaxLag)
	}
	if c.MaxConcurrency < 0 || c.MaxConcurrency > 100000 {
		add("max concurrency must be between 1 and 100000, got %d", c.MaxConcurrency)
	}
	if !validToken(c.VersionHeader) {
		add("version header %q is not a valid header name", c.VersionHeader)
	}
	if c.TimelineRows < minTimelineRows {
		add("timeline rows must be at least %d, got %d", minTimelineRows, c.TimelineRows)
	}
	switch c.Client {
	case ClientAuto, ClientGo, ClientRaw:
	default:
		add("client %q: want %q or %q", c.Client, ClientGo, ClientRaw)
	}
	if len(c.Targets) == 0 {
		add("no target: give at least one URL")
	}
	for i, t := range c.Targets {
		if err := checkTarget(t); err != nil {
			add("target %d (%s): %w", i+1, t.URL, err)
		}
		if c.Client == ClientRaw && !strings.HasPrefix(strings.ToLower(t.URL), "http://") {
			add("target %d (%s): the raw client speaks plain http:// only", i+1, t.URL)
		}
	}
	return errors.Join(errs...)
}

func checkTarget(t Target) error {
	u, err := url.Parse(t.URL)
	if err != nil {
		return fmt.Errorf("want an absolute http:// or https:// URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http:// or https:// URL with a host")
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not supported: send an Authorization header")
	}
	if u.Port() != "" {
		if p, err := parsePort(u.Port()); err != nil || p == 0 {
			return fmt.Errorf("bad port %q", u.Port())
		}
	}
	if t.Method != "" && !validToken(t.Method) {
		return fmt.Errorf("method %q is not a valid HTTP method", t.Method)
	}
	if t.Weight < 0 {
		return fmt.Errorf("weight must not be negative, got %d", t.Weight)
	}
	for k, vs := range t.Header {
		if !validToken(k) {
			return fmt.Errorf("header name %q is not valid", k)
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return fmt.Errorf("header %s: value %q has control characters", k, v)
			}
		}
	}
	if t.ExpectEcho && t.ExpectBody != "" {
		return errors.New("expect an echo or a substring, not both")
	}
	return nil
}

func parsePort(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 5 {
		return 0, errors.New("bad port")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("bad port")
		}
		n = n*10 + int(r-'0')
	}
	if n > 65535 {
		return 0, errors.New("bad port")
	}
	return n, nil
}

// buildLanes turns validated targets into lanes.
func buildLanes(c *Config) []*lane {
	lanes := make([]*lane, len(c.Targets))
	addrs := map[string]int{}
	for i, t := range c.Targets {
		u, _ := url.Parse(t.URL) // validated
		l := &lane{Target: t, idx: i, u: u, method: strings.ToUpper(t.Method)}
		if l.method == "" {
			l.method = http.MethodGet
		}
		if l.Weight == 0 {
			l.Weight = 1
		}
		if l.Label == "" {
			l.Label = l.method + " " + t.URL
		}
		l.header = http.Header{}
		l.host = u.Host
		for k, vs := range t.Header {
			ck := http.CanonicalHeaderKey(k)
			if ck == "Host" {
				if len(vs) > 0 {
					l.host = vs[0]
				}
				continue
			}
			l.header[ck] = append(l.header[ck], vs...)
		}
		if l.header.Get("User-Agent") == "" {
			l.header.Set("User-Agent", UserAgent)
		}
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		l.addr = net.JoinHostPort(u.Hostname(), port)
		key := u.Scheme + "://" + l.addr
		if _, ok := addrs[key]; !ok {
			addrs[key] = len(addrs)
		}
		l.addrIdx = addrs[key]
		l.check = l.ExpectBody != "" || l.ExpectEcho
		l.raw = rawRequest(l, c.DisableKeepAlives)
		lanes[i] = l
	}
	return lanes
}

// rawRequest serializes the lane's request for the raw client.
func rawRequest(l *lane, closeConn bool) []byte {
	var b strings.Builder
	uri := l.u.RequestURI()
	b.WriteString(l.method + " " + uri + " HTTP/1.1\r\nHost: " + l.host + "\r\n")
	keys := slices.Sorted(maps.Keys(l.header))
	for _, k := range keys {
		if k == "Content-Length" || k == "Connection" || k == "Transfer-Encoding" {
			continue
		}
		for _, v := range l.header[k] {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	if len(l.Body) > 0 || methodWantsBody(l.method) {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(l.Body))
	}
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return append([]byte(b.String()), l.Body...)
}

func methodWantsBody(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch
}

// laneCycle returns the order in which lanes take turns: each lane appears
// Weight/gcd times, spread evenly (smooth weighted round robin).
func laneCycle(lanes []*lane) ([]int, error) {
	g := 0
	for _, l := range lanes {
		g = gcd(g, l.Weight)
	}
	total := 0
	w := make([]int, len(lanes))
	for i, l := range lanes {
		w[i] = l.Weight / g
		total += w[i]
		if total > maxLaneCycle {
			return nil, fmt.Errorf("lane weights are too fine-grained: their sum divided by their greatest common divisor must be at most %d", maxLaneCycle)
		}
	}
	cur := make([]int, len(lanes))
	cycle := make([]int, 0, total)
	for range total {
		best := 0
		for i := range lanes {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		cycle = append(cycle, best)
	}
	return cycle, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

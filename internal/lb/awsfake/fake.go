// Package awsfake is a local stand-in for AWS Elastic Load Balancing, for
// the AWS drivers' tests and for deploy tests that run load through it. It
// speaks the awsQuery wire format of both APIs — classic ELB (version
// 2012-06-01) and ELBv2 target groups (2015-12-01) — to the real AWS SDK,
// runs their state machines on a clock scaled down by Options.Scale, really
// health-checks the targets, and really proxies HTTP to the targets that are
// in service: one listener per classic load balancer or target group.
//
// It is a simulation of the documented behaviour, not AWS: signatures are
// checked for their form and credential scope, not their cryptography; a
// classic instance is reached at the address the fake was given for it
// (EC2 would know its IP; loopback instances cannot share a port), whatever
// the port in HealthCheck.Target.
package awsfake

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "123456789012"
	DefaultUser    = "arn:aws:iam::123456789012:user/deployer"
)

// XML namespaces of the two APIs' answers.
const (
	classicVersion = "2012-06-01"
	v2Version      = "2015-12-01"
	classicNS      = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/"
	v2NS           = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
)

// Options configure a Fake.
type Options struct {
	Region  string  // the only region whose signed requests are served; default us-east-1
	Account string  // in ARNs; default 123456789012
	User    string  // the principal AccessDenied names; default DefaultUser
	Scale   float64 // the clock: 0.01 makes a 30 s interval 300 ms; default 1
	Listen  string  // the API's address; default 127.0.0.1:0
}

// Fake is the simulated API endpoint with its load balancers.
type Fake struct {
	opts Options
	ln   net.Listener
	srv  *http.Server

	mu       sync.Mutex
	classics map[string]*classicLB
	groups   map[string]*targetGroup
	// listeners are ELBv2 listeners forwarding to a target group.
	listeners map[string]*listener
	deny      map[string]bool
	throttle  int         // the next throttle calls are refused
	rate      int         // calls per second beyond which calls are refused; 0: no limit
	recent    []time.Time // the calls of the last second, when rate is set
	calls     map[string]int
}

// New starts a Fake listening on loopback.
func New(opts Options) (*Fake, error) {
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Account == "" {
		opts.Account = DefaultAccount
	}
	if opts.User == "" {
		opts.User = DefaultUser
	}
	if opts.Scale <= 0 {
		opts.Scale = 1
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("awsfake: listen: %w", err)
	}
	f := &Fake{opts: opts, ln: ln, classics: map[string]*classicLB{}, groups: map[string]*targetGroup{},
		deny: map[string]bool{}, calls: map[string]int{}}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// Endpoint is the URL to give the SDK clients as their BaseEndpoint.
func (f *Fake) Endpoint() string { return "http://" + f.ln.Addr().String() }

// Region is the region the fake serves.
func (f *Fake) Region() string { return f.opts.Region }

// Close stops the API, the proxies and the health checks.
func (f *Fake) Close() error {
	err := f.srv.Close()
	f.mu.Lock()
	var pools []*pool
	for _, c := range f.classics {
		pools = append(pools, c.pool)
	}
	for _, g := range f.groups {
		pools = append(pools, g.pool)
	}
	var servers []*http.Server
	for _, l := range f.listeners {
		servers = append(servers, l.srv)
	}
	f.mu.Unlock()
	for _, s := range servers {
		_ = s.Close()
	}
	for _, p := range pools {
		p.close()
	}
	return err
}

// Deny makes the given actions (such as "DescribeInstanceHealth") answer
// AccessDenied, as for a principal whose policy lacks them; Deny() with no
// action allows everything again.
func (f *Fake) Deny(actions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deny = map[string]bool{}
	for _, a := range actions {
		f.deny[a] = true
	}
}

// ThrottleNext makes the next n calls answer Throttling.
func (f *Fake) ThrottleNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttle = n
}

// ThrottleRate makes every call beyond perSecond in any one second answer
// Throttling, as AWS's per-account API rate limit does; 0 lifts it.
func (f *Fake) ThrottleRate(perSecond int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate = perSecond
	f.recent = nil
}

// Calls counts the signed calls of action received so far, throttled and
// denied ones included.
func (f *Fake) Calls(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[action]
}

// scaled converts AWS seconds to the fake's clock.
func (f *Fake) scaled(seconds int) time.Duration {
	return time.Duration(float64(seconds) * float64(time.Second) * f.opts.Scale)
}

// apiError is an error answer as AWS sends it.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func validation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

// ServeHTTP answers one API call.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ns := classicNS
	if err := f.authorize(r); err != nil {
		writeError(w, ns, err)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, ns, errorf(http.StatusBadRequest, "InvalidAction", "awsQuery takes POST, not %s", r.Method))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, ns, errorf(http.StatusBadRequest, "MalformedQueryString", "%v", err))
		return
	}
	req, err := decodeRequest(body)
	if err != nil {
		writeError(w, ns, errorf(http.StatusBadRequest, "MalformedQueryString", "%v", err))
		return
	}
	if req.Version == v2Version {
		ns = v2NS
	}
	if err := f.admit(req); err != nil {
		writeError(w, ns, err)
		return
	}
	var out xw
	var aerr *apiError
	switch req.Version {
	case classicVersion:
		aerr = f.classicAction(req, &out)
	case v2Version:
		aerr = f.v2Action(req, &out)
	default:
		aerr = errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", req.Action, req.Version)
	}
	if aerr != nil {
		writeError(w, ns, aerr)
		return
	}
	id := requestID()
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", id)
	fmt.Fprintf(w, `<%sResponse xmlns="%s"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`,
		req.Action, ns, req.Action, out.b.String(), req.Action, id, req.Action)
}

// authorize checks the request is signed with SigV4 for this region and
// service. The signature itself is not verified: any key is accepted.
func (f *Fake) authorize(r *http.Request) *apiError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errorf(http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token")
	}
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != "AWS4-HMAC-SHA256" {
		return errorf(http.StatusBadRequest, "IncompleteSignature", "Unsupported AWS 'algorithm': '%s'", alg)
	}
	var cred string
	var signed, sig bool
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v != ""
		case "Signature":
			sig = v != ""
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || !signed || !sig || r.Header.Get("X-Amz-Date") == "" {
		return errorf(http.StatusBadRequest, "IncompleteSignature", "Authorization header requires 'Credential', 'Signature', 'SignedHeaders' and X-Amz-Date: %s", auth)
	}
	if scope[2] != f.opts.Region {
		return errorf(http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to a valid region, not '%s'. ", scope[2])
	}
	if scope[3] != "elasticloadbalancing" || scope[4] != "aws4_request" {
		return errorf(http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to correct service: 'elasticloadbalancing'. ")
	}
	return nil
}

// admit counts a call and applies the throttling and the denials.
func (f *Fake) admit(req *request) *apiError {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[req.Action]++
	if f.throttle > 0 {
		f.throttle--
		return errorf(http.StatusBadRequest, "Throttling", "Rate exceeded")
	}
	if f.rate > 0 {
		now := time.Now()
		keep := f.recent[:0]
		for _, t := range f.recent {
			if now.Sub(t) < time.Second {
				keep = append(keep, t)
			}
		}
		f.recent = keep
		if len(f.recent) >= f.rate {
			return errorf(http.StatusBadRequest, "Throttling", "Rate exceeded")
		}
		f.recent = append(f.recent, now)
	}
	if f.deny[req.Action] {
		return errorf(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: elasticloadbalancing:%s on resource: %s",
			f.opts.User, req.Action, f.resourceOf(req))
	}
	return nil
}

// resourceOf is the ARN an action acts on, as AccessDenied names it.
func (f *Fake) resourceOf(req *request) string {
	if name := req.get("LoadBalancerName"); name != "" {
		return f.classicARN(name)
	}
	if arn := req.get("TargetGroupArn"); arn != "" {
		return arn
	}
	if arn := req.get("ListenerArn"); arn != "" {
		return arn
	}
	if arns, _ := req.list("ListenerArns", ""); len(arns) == 1 {
		return arns[0]
	}
	if arns, _ := req.list("TargetGroupArns", ""); len(arns) == 1 {
		return arns[0]
	}
	if names, _ := req.list("LoadBalancerNames", ""); len(names) == 1 {
		return f.classicARN(names[0])
	}
	return "*"
}

func (f *Fake) classicARN(name string) string {
	return "arn:aws:elasticloadbalancing:" + f.opts.Region + ":" + f.opts.Account + ":loadbalancer/" + name
}

func writeError(w http.ResponseWriter, ns string, e *apiError) {
	id := requestID()
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", id)
	w.WriteHeader(e.status)
	var x xw
	x.elem("Type", "Sender")
	x.elem("Code", e.code)
	x.elem("Message", e.message)
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error>%s</Error><RequestId>%s</RequestId></ErrorResponse>`, ns, x.b.String(), id)
}

// Stats are what a proxy did since it started.
type Stats struct {
	Requests uint64 // requests received
	Failures uint64 // requests answered with the proxy's own error (no target in service: 503; the target failed: 502)
	Cut      uint64 // of the failures, requests cut because their target's drain ended
}

// Proxy is the data plane of one classic load balancer or target group.
type Proxy struct {
	pool *pool
	arn  string
}

// Addr is the proxy's listening address (ip:port).
func (p *Proxy) Addr() string { return p.pool.ln.Addr().String() }

// URL is http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// ARN is the classic load balancer's or the target group's ARN.
func (p *Proxy) ARN() string { return p.arn }

// Stats reads the proxy's counters.
func (p *Proxy) Stats() Stats {
	return Stats{Requests: p.pool.requests.Load(), Failures: p.pool.failures.Load(), Cut: p.pool.cut.Load()}
}

// Registered lists the registered members (instance IDs; id:port for
// ELBv2), draining ones included.
func (p *Proxy) Registered() []string { return p.pool.keys() }

func itoa(n int) string { return strconv.Itoa(n) }

package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// TargetGroup configures an ELBv2 target group (ALB or NLB): times in AWS
// seconds, as the API reports them; the fake runs them on its scaled clock.
type TargetGroup struct {
	Name string
	// ARN defaults to arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID.
	ARN string
	// Listen is the proxy's address; default 127.0.0.1:0.
	Listen     string
	Protocol   string // default HTTP
	Port       int    // the targets' default port; default 80
	TargetType string // instance (default) or ip
	// HealthCheckPath is checked with GET; default /.
	HealthCheckPath                                         string
	Interval, Timeout, HealthyThreshold, UnhealthyThreshold int
	// DeregistrationDelay is deregistration_delay.timeout_seconds; AWS's
	// default 300 when 0. A deregistered target drains for all of it.
	DeregistrationDelay int
	// Instances are the EC2 instances the fake knows, for instance
	// targets: ID → IP.
	Instances map[string]string
	// Registered targets are in service from the start.
	Registered []Target
	// LoadBalancerARNs are reported; default one ALB's ARN.
	LoadBalancerARNs []string
}

// Target is an ELBv2 target: an instance ID or an IP, and a port (0: the
// group's).
type Target struct {
	ID   string
	Port int
}

type targetGroup struct {
	cfg  TargetGroup
	pool *pool
}

// AddTargetGroup creates a target group with its proxy.
func (f *Fake) AddTargetGroup(g TargetGroup) (*Proxy, error) {
	if g.Name == "" {
		return nil, fmt.Errorf("awsfake: a target group needs a name")
	}
	if g.Protocol == "" {
		g.Protocol = "HTTP"
	}
	if g.Port == 0 {
		g.Port = 80
	}
	if g.TargetType == "" {
		g.TargetType = "instance"
	}
	if g.TargetType != "instance" && g.TargetType != "ip" {
		return nil, fmt.Errorf("awsfake: target type %q is not instance or ip", g.TargetType)
	}
	if g.HealthCheckPath == "" {
		g.HealthCheckPath = "/"
	}
	if g.Interval == 0 {
		g.Interval = 30
	}
	if g.Timeout == 0 {
		g.Timeout = 5
	}
	if g.HealthyThreshold == 0 {
		g.HealthyThreshold = 5
	}
	if g.UnhealthyThreshold == 0 {
		g.UnhealthyThreshold = 2
	}
	if g.DeregistrationDelay == 0 {
		g.DeregistrationDelay = 300
	}
	if g.ARN == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		g.ARN = "arn:aws:elasticloadbalancing:" + f.opts.Region + ":" + f.opts.Account + ":targetgroup/" + g.Name + "/" + hex.EncodeToString(b[:])
	}
	if len(g.LoadBalancerARNs) == 0 {
		g.LoadBalancerARNs = []string{"arn:aws:elasticloadbalancing:" + f.opts.Region + ":" + f.opts.Account + ":loadbalancer/app/" + g.Name + "-alb/50dc6c495c0c9188"}
	}
	ck := check{path: g.HealthCheckPath, interval: f.scaled(g.Interval), timeout: f.scaled(g.Timeout), healthy: g.HealthyThreshold, unhealthy: g.UnhealthyThreshold}
	p, err := newPool(g.Listen, ck)
	if err != nil {
		return nil, fmt.Errorf("awsfake: target group %s: %w", g.Name, err)
	}
	tg := &targetGroup{cfg: g, pool: p}
	for _, t := range g.Registered {
		key, addr, aerr := tg.resolve(t.ID, t.Port)
		if aerr != nil {
			p.close()
			return nil, fmt.Errorf("awsfake: target group %s: %v", g.Name, aerr)
		}
		p.register(key, addr, true)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.groups[g.ARN]; dup {
		p.close()
		return nil, fmt.Errorf("awsfake: target group %s exists", g.ARN)
	}
	f.groups[g.ARN] = tg
	return &Proxy{pool: p, arn: g.ARN}, nil
}

// resolve checks a target against the group's type and returns its key
// (id:port) and the address the checks and the proxy reach.
func (g *targetGroup) resolve(id string, port int) (key, addr string, aerr *apiError) {
	if port == 0 {
		port = g.cfg.Port
	}
	if port < 1 || port > 65535 {
		return "", "", validation("Port %d is not between 1 and 65535", port)
	}
	ip := id
	if g.cfg.TargetType == "instance" {
		var ok bool
		if ip, ok = g.cfg.Instances[id]; !ok {
			return "", "", errorf(http.StatusBadRequest, "InvalidTarget", "The following targets are not valid instances: '%s'", id)
		}
	} else if net.ParseIP(id) == nil {
		return "", "", errorf(http.StatusBadRequest, "InvalidTarget", "The IP address '%s' is not a valid IPv4 address", id)
	}
	return id + ":" + strconv.Itoa(port), net.JoinHostPort(ip, strconv.Itoa(port)), nil
}

func (f *Fake) group(arn string) (*targetGroup, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if arn == "" {
		return nil, validation("TargetGroupArn is required")
	}
	g, ok := f.groups[arn]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "TargetGroupNotFound", "One or more target groups not found")
	}
	return g, nil
}

func (f *Fake) v2Action(req *request, out *xw) *apiError {
	switch req.Action {
	case "DescribeTargetGroups":
		return f.describeTargetGroups(req, out)
	case "DescribeTargetGroupAttributes":
		g, err := f.group(req.get("TargetGroupArn"))
		if err != nil {
			return err
		}
		out.open("Attributes")
		for _, kv := range [][2]string{
			{"deregistration_delay.timeout_seconds", strconv.Itoa(g.cfg.DeregistrationDelay)},
			{"stickiness.enabled", "false"},
			{"stickiness.type", "lb_cookie"},
			{"load_balancing.algorithm.type", "round_robin"},
			{"slow_start.duration_seconds", "0"},
		} {
			out.open("member")
			out.elem("Key", kv[0])
			out.elem("Value", kv[1])
			out.close("member")
		}
		out.close("Attributes")
		return nil
	case "DescribeTargetHealth":
		return f.describeTargetHealth(req, out)
	case "DescribeListeners":
		return f.describeListeners(req, out)
	case "ModifyListener":
		return f.modifyListener(req, out)
	case "RegisterTargets", "DeregisterTargets":
		g, err := f.group(req.get("TargetGroupArn"))
		if err != nil {
			return err
		}
		targets, err := g.targets(req, true)
		if err != nil {
			return err
		}
		for _, t := range targets {
			if req.Action == "RegisterTargets" {
				g.pool.register(t.key, t.addr, false)
			} else {
				g.pool.deregister(t.key, f.scaled(g.cfg.DeregistrationDelay), false)
			}
		}
		return nil
	}
	return errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", req.Action, req.Version)
}

type resolved struct {
	id        string
	port      int
	key, addr string
}

// targets reads Targets.member.N.Id and .Port.
func (g *targetGroup) targets(req *request, required bool) ([]resolved, *apiError) {
	ms, err := req.members("Targets", "Id", "Port", "AvailabilityZone")
	if err != nil {
		return nil, validation("%v", err)
	}
	if required && len(ms) == 0 {
		return nil, validation("Targets is required")
	}
	var out []resolved
	for _, m := range ms {
		if m["Id"] == "" {
			return nil, validation("Targets: a target has no Id")
		}
		port := 0
		if s, ok := m["Port"]; ok {
			if port, err = strconv.Atoi(s); err != nil {
				return nil, validation("Port %q is not a number", s)
			}
		}
		key, addr, aerr := g.resolve(m["Id"], port)
		if aerr != nil {
			return nil, aerr
		}
		if port == 0 {
			port = g.cfg.Port
		}
		out = append(out, resolved{id: m["Id"], port: port, key: key, addr: addr})
	}
	return out, nil
}

func (f *Fake) describeTargetGroups(req *request, out *xw) *apiError {
	arns, err := req.list("TargetGroupArns", "")
	if err != nil {
		return validation("%v", err)
	}
	names, err := req.list("Names", "")
	if err != nil {
		return validation("%v", err)
	}
	f.mu.Lock()
	var groups []*targetGroup
	switch {
	case len(arns) > 0:
		for _, a := range arns {
			if g, ok := f.groups[a]; ok {
				groups = append(groups, g)
			}
		}
	case len(names) > 0:
		for _, n := range names {
			for _, g := range f.groups {
				if g.cfg.Name == n {
					groups = append(groups, g)
				}
			}
		}
	default:
		for _, g := range f.groups {
			groups = append(groups, g)
		}
	}
	f.mu.Unlock()
	if len(groups) < len(arns)+len(names) {
		return errorf(http.StatusBadRequest, "TargetGroupNotFound", "One or more target groups not found")
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].cfg.ARN < groups[j].cfg.ARN })
	out.open("TargetGroups")
	for _, g := range groups {
		c := g.cfg
		out.open("member")
		out.elem("TargetGroupArn", c.ARN)
		out.elem("TargetGroupName", c.Name)
		out.elem("Protocol", c.Protocol)
		out.num("Port", c.Port)
		out.elem("VpcId", "vpc-3ac0fb5f")
		out.elem("HealthCheckProtocol", "HTTP")
		out.elem("HealthCheckPort", "traffic-port")
		out.bool("HealthCheckEnabled", true)
		out.num("HealthCheckIntervalSeconds", c.Interval)
		out.num("HealthCheckTimeoutSeconds", c.Timeout)
		out.num("HealthyThresholdCount", c.HealthyThreshold)
		out.num("UnhealthyThresholdCount", c.UnhealthyThreshold)
		out.elem("HealthCheckPath", c.HealthCheckPath)
		out.open("Matcher")
		out.elem("HttpCode", "200")
		out.close("Matcher")
		out.open("LoadBalancerArns")
		for _, a := range c.LoadBalancerARNs {
			out.elem("member", a)
		}
		out.close("LoadBalancerArns")
		out.elem("TargetType", c.TargetType)
		out.elem("ProtocolVersion", "HTTP1")
		out.elem("IpAddressType", "ipv4")
		out.close("member")
	}
	out.close("TargetGroups")
	return nil
}

func (f *Fake) describeTargetHealth(req *request, out *xw) *apiError {
	g, aerr := f.group(req.get("TargetGroupArn"))
	if aerr != nil {
		return aerr
	}
	targets, aerr := g.targets(req, false)
	if aerr != nil {
		return aerr
	}
	if len(targets) == 0 {
		for _, key := range g.pool.keys() {
			i := strings.LastIndex(key, ":")
			port, _ := strconv.Atoi(key[i+1:])
			targets = append(targets, resolved{id: key[:i], port: port, key: key})
		}
	}
	out.open("TargetHealthDescriptions")
	for _, t := range targets {
		out.open("member")
		out.open("Target")
		out.elem("Id", t.id)
		out.num("Port", t.port)
		out.close("Target")
		out.elem("HealthCheckPort", strconv.Itoa(t.port))
		out.open("TargetHealth")
		m, ok := g.pool.snapshot(t.key)
		switch {
		case !ok:
			out.elem("State", "unused")
			out.elem("Reason", "Target.NotRegistered")
			out.elem("Description", "Target is not registered to the target group")
		case m.phase == phaseInitial:
			out.elem("State", "initial")
			out.elem("Reason", "Elb.RegistrationInProgress")
			out.elem("Description", "Target registration is in progress")
		case m.phase == phaseHealthy:
			out.elem("State", "healthy")
		case m.phase == phaseUnhealthy:
			out.elem("State", "unhealthy")
			out.elem("Reason", m.reason)
			out.elem("Description", m.desc)
		case m.phase == phaseDraining:
			out.elem("State", "draining")
			out.elem("Reason", "Target.DeregistrationInProgress")
			out.elem("Description", "Target deregistration is in progress")
		}
		out.close("TargetHealth")
		out.close("member")
	}
	out.close("TargetHealthDescriptions")
	return nil
}

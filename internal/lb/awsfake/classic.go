package awsfake

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Classic configures a classic load balancer: times in AWS seconds, as the
// API reports them; the fake runs them on its scaled clock.
type Classic struct {
	Name string
	// Listen is the proxy's address; default 127.0.0.1:0.
	Listen string
	// HealthCheck.Target is PROTOCOL:PORT[/PATH] (HTTP:8080/healthz, TCP:8080).
	HealthCheck ClassicHealthCheck
	// ConnectionDraining lets a deregistered instance's requests finish,
	// up to DrainingTimeout seconds; without it they are cut at once.
	ConnectionDraining bool
	DrainingTimeout    int
	// Instances are the EC2 instances the fake knows: ID → the address
	// (ip:port) the checks and the proxy reach.
	Instances map[string]string
	// Registered are registered from the start, already in service.
	Registered []string
}

// ClassicHealthCheck is the HealthCheck of DescribeLoadBalancers.
type ClassicHealthCheck struct {
	Target                                                  string
	Interval, Timeout, UnhealthyThreshold, HealthyThreshold int
}

type classicLB struct {
	cfg  Classic
	pool *pool
	dns  string
}

// Classic-ELB descriptions of an instance's state, as AWS writes them.
const (
	descRegistering   = "Instance registration is still in progress."
	descFailed        = "Instance has failed at least the UnhealthyThreshold number of health checks consecutively."
	descDeregistering = "Instance deregistration currently in progress."
	descNotRegistered = "Instance is not currently registered with the LoadBalancer."
)

// AddClassic creates a classic load balancer with its proxy.
func (f *Fake) AddClassic(c Classic) (*Proxy, error) {
	if c.Name == "" {
		return nil, fmt.Errorf("awsfake: a classic load balancer needs a name")
	}
	hc := &c.HealthCheck
	if hc.Target == "" {
		hc.Target = "TCP:80"
	}
	if hc.Interval == 0 {
		hc.Interval = 30
	}
	if hc.Timeout == 0 {
		hc.Timeout = 5
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = 10
	}
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = 2
	}
	if c.ConnectionDraining && c.DrainingTimeout == 0 {
		c.DrainingTimeout = 300
	}
	proto, rest, _ := strings.Cut(hc.Target, ":")
	ck := check{interval: f.scaled(hc.Interval), timeout: f.scaled(hc.Timeout), healthy: hc.HealthyThreshold, unhealthy: hc.UnhealthyThreshold}
	switch strings.ToUpper(proto) {
	case "TCP", "SSL":
		ck.tcp = true
	case "HTTP", "HTTPS":
		_, path, ok := strings.Cut(rest, "/")
		if !ok {
			return nil, fmt.Errorf("awsfake: health check target %q has no path", hc.Target)
		}
		ck.path = "/" + path
	default:
		return nil, fmt.Errorf("awsfake: health check target %q: protocol is not HTTP, HTTPS, TCP or SSL", hc.Target)
	}
	p, err := newPool(c.Listen, ck)
	if err != nil {
		return nil, fmt.Errorf("awsfake: classic %s: %w", c.Name, err)
	}
	lbc := &classicLB{cfg: c, pool: p, dns: c.Name + "-1234567890." + f.opts.Region + ".elb.amazonaws.com"}
	for _, id := range c.Registered {
		addr, ok := c.Instances[id]
		if !ok {
			p.close()
			return nil, fmt.Errorf("awsfake: classic %s: registered instance %s is not among its instances", c.Name, id)
		}
		p.register(id, addr, true)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.classics[c.Name]; dup {
		p.close()
		return nil, fmt.Errorf("awsfake: classic %s exists", c.Name)
	}
	f.classics[c.Name] = lbc
	return &Proxy{pool: p, arn: f.classicARN(c.Name)}, nil
}

func (f *Fake) classic(name string) (*classicLB, *apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "" {
		return nil, validation("LoadBalancerName is required")
	}
	c, ok := f.classics[name]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "LoadBalancerNotFound", "There is no ACTIVE Load Balancer named '%s'", name)
	}
	return c, nil
}

func (f *Fake) classicAction(req *request, out *xw) *apiError {
	switch req.Action {
	case "DescribeLoadBalancers":
		return f.describeLoadBalancers(req, out)
	case "DescribeLoadBalancerAttributes":
		c, err := f.classic(req.get("LoadBalancerName"))
		if err != nil {
			return err
		}
		out.open("LoadBalancerAttributes")
		out.open("ConnectionDraining")
		out.bool("Enabled", c.cfg.ConnectionDraining)
		out.num("Timeout", max(c.cfg.DrainingTimeout, 300*boolInt(!c.cfg.ConnectionDraining)))
		out.close("ConnectionDraining")
		out.open("ConnectionSettings")
		out.num("IdleTimeout", 60)
		out.close("ConnectionSettings")
		out.open("CrossZoneLoadBalancing")
		out.bool("Enabled", true)
		out.close("CrossZoneLoadBalancing")
		out.open("AccessLog")
		out.bool("Enabled", false)
		out.close("AccessLog")
		out.close("LoadBalancerAttributes")
		return nil
	case "DescribeInstanceHealth":
		return f.describeInstanceHealth(req, out)
	case "RegisterInstancesWithLoadBalancer", "DeregisterInstancesFromLoadBalancer":
		c, err := f.classic(req.get("LoadBalancerName"))
		if err != nil {
			return err
		}
		ids, err := f.instanceIDs(req, c, true)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if req.Action == "RegisterInstancesWithLoadBalancer" {
				c.pool.register(id, c.cfg.Instances[id], false)
				continue
			}
			delay := f.scaled(c.cfg.DrainingTimeout)
			if !c.cfg.ConnectionDraining {
				delay = 0
			}
			c.pool.deregister(id, delay, true)
		}
		writeInstances(out, "Instances", c.pool.keys())
		return nil
	}
	return errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", req.Action, req.Version)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// instanceIDs reads Instances.member.N.InstanceId; each must be an
// instance the fake knows.
func (f *Fake) instanceIDs(req *request, c *classicLB, required bool) ([]string, *apiError) {
	ids, err := req.list("Instances", "InstanceId")
	if err != nil {
		return nil, validation("%v", err)
	}
	if required && len(ids) == 0 {
		return nil, validation("Instances is required")
	}
	for _, id := range ids {
		if _, ok := c.cfg.Instances[id]; !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidInstance", "Could not find EC2 instance %s.", id)
		}
	}
	return ids, nil
}

func writeInstances(out *xw, tag string, ids []string) {
	out.open(tag)
	for _, id := range ids {
		out.open("member")
		out.elem("InstanceId", id)
		out.close("member")
	}
	out.close(tag)
}

func (f *Fake) describeLoadBalancers(req *request, out *xw) *apiError {
	names, err := req.list("LoadBalancerNames", "")
	if err != nil {
		return validation("%v", err)
	}
	if len(names) == 0 {
		f.mu.Lock()
		for n := range f.classics {
			names = append(names, n)
		}
		f.mu.Unlock()
		sort.Strings(names)
	}
	var lbs []*classicLB
	for _, n := range names {
		c, aerr := f.classic(n)
		if aerr != nil {
			return aerr
		}
		lbs = append(lbs, c)
	}
	out.open("LoadBalancerDescriptions")
	for _, c := range lbs {
		hc := c.cfg.HealthCheck
		out.open("member")
		out.elem("LoadBalancerName", c.cfg.Name)
		out.elem("DNSName", c.dns)
		out.elem("Scheme", "internet-facing")
		out.open("HealthCheck")
		out.elem("Target", hc.Target)
		out.num("Interval", hc.Interval)
		out.num("Timeout", hc.Timeout)
		out.num("UnhealthyThreshold", hc.UnhealthyThreshold)
		out.num("HealthyThreshold", hc.HealthyThreshold)
		out.close("HealthCheck")
		writeInstances(out, "Instances", c.pool.keys())
		out.open("ListenerDescriptions")
		out.open("member")
		out.open("Listener")
		out.elem("Protocol", "HTTP")
		_, port, _ := strings.Cut(c.pool.ln.Addr().String(), ":")
		p, _ := strconv.Atoi(port)
		out.num("LoadBalancerPort", p)
		out.elem("InstanceProtocol", "HTTP")
		out.num("InstancePort", 80)
		out.close("Listener")
		out.close("member")
		out.close("ListenerDescriptions")
		out.close("member")
	}
	out.close("LoadBalancerDescriptions")
	return nil
}

func (f *Fake) describeInstanceHealth(req *request, out *xw) *apiError {
	c, aerr := f.classic(req.get("LoadBalancerName"))
	if aerr != nil {
		return aerr
	}
	ids, aerr := f.instanceIDs(req, c, false)
	if aerr != nil {
		return aerr
	}
	if len(ids) == 0 {
		ids = c.pool.keys()
	}
	out.open("InstanceStates")
	for _, id := range ids {
		state, code, desc := "InService", "N/A", "N/A"
		m, ok := c.pool.snapshot(id)
		switch {
		case !ok:
			state, desc = "OutOfService", descNotRegistered
		case m.phase == phaseInitial:
			state, code, desc = "OutOfService", "ELB", descRegistering
		case m.phase == phaseUnhealthy:
			state, code, desc = "OutOfService", "Instance", descFailed
		case m.phase == phaseDraining:
			desc = descDeregistering
		}
		out.open("member")
		out.elem("InstanceId", id)
		out.elem("State", state)
		out.elem("ReasonCode", code)
		out.elem("Description", desc)
		out.close("member")
	}
	out.close("InstanceStates")
	return nil
}

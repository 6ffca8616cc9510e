package awslb

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancing"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancing/types"

	"github.com/zerodown/zerodown/internal/lb"
)

// What classic ELB writes in an instance's Description.
const (
	descRegistering   = "Instance registration is still in progress."
	descDeregistering = "Instance deregistration currently in progress."
	descNotRegistered = "Instance is not currently registered with the LoadBalancer."
)

// ELB is a classic load balancer's instances as the deploy engine sees
// them: targets are the hosts' addresses, each an EC2 instance.
type ELB struct {
	client *elb.Client
	name   string
	region string
	byAddr map[string]string // target address → instance ID
	byID   map[string]string // instance ID → target address
	others []string          // instances registered at the start that are not ours
	poll   poller
}

var (
	_ lb.Balancer      = (*ELB)(nil)
	_ lb.DrainBounder  = (*ELB)(nil)
	_ lb.HealthBounder = (*ELB)(nil)
	_ lb.Advisor       = (*ELB)(nil)
)

// NewELB returns the driver of the classic load balancer name, whose
// instances are given as target address → EC2 instance ID. It checks the
// credentials and that the load balancer exists.
func NewELB(ctx context.Context, cfg Config, name string, instances map[string]string) (*ELB, error) {
	if name == "" {
		return nil, fmt.Errorf("aws-elb: the load balancer's name is empty")
	}
	ac, err := loadAWS(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("aws-elb %s: %w", name, err)
	}
	e := &ELB{name: name, region: ac.Region, byAddr: map[string]string{}, byID: map[string]string{},
		poll: poller{interval: pollInterval(cfg)}}
	e.client = elb.NewFromConfig(ac, func(o *elb.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	for addr, id := range instances {
		if id == "" {
			return nil, fmt.Errorf("aws-elb %s: host %s has no EC2 instance ID: set instance: on it", name, addr)
		}
		if other, dup := e.byID[id]; dup {
			return nil, fmt.Errorf("aws-elb %s: hosts %s and %s are both instance %s", name, other, addr, id)
		}
		e.byAddr[addr], e.byID[id] = id, addr
	}
	d, err := e.describe(ctx)
	if err != nil {
		return nil, err
	}
	for _, in := range d.Instances {
		if id := aws.ToString(in.InstanceId); e.byID[id] == "" {
			e.others = append(e.others, id)
		}
	}
	sort.Strings(e.others)
	return e, nil
}

func (e *ELB) String() string { return "classic ELB " + e.name + " in " + e.region }

func (e *ELB) describe(ctx context.Context) (elbtypes.LoadBalancerDescription, error) {
	out, err := e.client.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerNames: []string{e.name}})
	if err != nil {
		return elbtypes.LoadBalancerDescription{}, explain(err, "aws-elb: describe load balancer "+e.name, "DescribeLoadBalancers", e.region)
	}
	if len(out.LoadBalancerDescriptions) != 1 {
		return elbtypes.LoadBalancerDescription{}, fmt.Errorf("aws-elb: describe load balancer %s in %s: AWS answered %d descriptions", e.name, e.region, len(out.LoadBalancerDescriptions))
	}
	return out.LoadBalancerDescriptions[0], nil
}

func (e *ELB) draining(ctx context.Context) (*elbtypes.ConnectionDraining, error) {
	out, err := e.client.DescribeLoadBalancerAttributes(ctx, &elb.DescribeLoadBalancerAttributesInput{LoadBalancerName: aws.String(e.name)})
	if err != nil {
		return nil, explain(err, "aws-elb: describe the attributes of "+e.name, "DescribeLoadBalancerAttributes", e.region)
	}
	if out.LoadBalancerAttributes == nil || out.LoadBalancerAttributes.ConnectionDraining == nil {
		return &elbtypes.ConnectionDraining{}, nil
	}
	return out.LoadBalancerAttributes.ConnectionDraining, nil
}

// Targets implements lb.Balancer: the health of our instances (asked for
// by ID, so AWS answers for deregistered ones too) and of the others that
// were registered when the driver started, at most once per PollInterval.
func (e *ELB) Targets(ctx context.Context) ([]lb.Target, error) {
	return e.poll.get(ctx, e.read)
}

func (e *ELB) read(ctx context.Context) ([]lb.Target, error) {
	in := &elb.DescribeInstanceHealthInput{LoadBalancerName: aws.String(e.name)}
	for _, id := range e.ids() {
		in.Instances = append(in.Instances, elbtypes.Instance{InstanceId: aws.String(id)})
	}
	out, err := e.client.DescribeInstanceHealth(ctx, in)
	if err != nil {
		return nil, explain(err, "aws-elb: describe instance health on "+e.name, "DescribeInstanceHealth", e.region)
	}
	ts := make([]lb.Target, 0, len(out.InstanceStates))
	for _, s := range out.InstanceStates {
		id := aws.ToString(s.InstanceId)
		addr := e.byID[id]
		if addr == "" {
			addr = id
		}
		st, reason := classicState(aws.ToString(s.State), aws.ToString(s.Description))
		ts = append(ts, lb.Target{Address: addr, State: st, Reason: reason})
	}
	sortTargets(ts)
	return ts, nil
}

// classicState maps classic ELB's InService/OutOfService and description
// to ELBv2's states.
func classicState(state, desc string) (lb.State, string) {
	switch {
	case state == "InService" && desc == descDeregistering:
		// AWS counts no requests: its description is all there is.
		return lb.StateDraining, desc
	case state == "InService":
		return lb.StateHealthy, ""
	case desc == descNotRegistered:
		return lb.StateUnused, ""
	case desc == descRegistering:
		return lb.StateInitial, desc
	}
	if desc == "" || desc == "N/A" {
		desc = state
	}
	return lb.StateUnhealthy, desc
}

// ids are the instances asked for: ours, then the others.
func (e *ELB) ids() []string {
	ids := make([]string, 0, len(e.byID)+len(e.others))
	for id := range e.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return append(ids, e.others...)
}

func (e *ELB) instance(addr string) (string, error) {
	id, ok := e.byAddr[addr]
	if !ok {
		return "", fmt.Errorf("aws-elb %s: no host has the target %s", e.name, addr)
	}
	return id, nil
}

// Attach implements lb.Balancer: RegisterInstancesWithLoadBalancer.
func (e *ELB) Attach(ctx context.Context, addr string) error {
	id, err := e.instance(addr)
	if err != nil {
		return err
	}
	defer e.poll.forget()
	_, err = e.client.RegisterInstancesWithLoadBalancer(ctx, &elb.RegisterInstancesWithLoadBalancerInput{
		LoadBalancerName: aws.String(e.name), Instances: []elbtypes.Instance{{InstanceId: aws.String(id)}}})
	if err != nil {
		return explain(err, fmt.Sprintf("aws-elb: register %s (%s) with %s", id, addr, e.name), "RegisterInstancesWithLoadBalancer", e.region)
	}
	return nil
}

// Detach implements lb.Balancer: DeregisterInstancesFromLoadBalancer; with
// connection draining, AWS keeps the instance InService while it drains.
func (e *ELB) Detach(ctx context.Context, addr string) error {
	id, err := e.instance(addr)
	if err != nil {
		return err
	}
	defer e.poll.forget()
	_, err = e.client.DeregisterInstancesFromLoadBalancer(ctx, &elb.DeregisterInstancesFromLoadBalancerInput{
		LoadBalancerName: aws.String(e.name), Instances: []elbtypes.Instance{{InstanceId: aws.String(id)}}})
	if err != nil {
		return explain(err, fmt.Sprintf("aws-elb: deregister %s (%s) from %s", id, addr, e.name), "DeregisterInstancesFromLoadBalancer", e.region)
	}
	return nil
}

// DrainBound implements lb.DrainBounder: the connection-draining timeout
// (0 when draining is off) and a margin.
func (e *ELB) DrainBound(ctx context.Context) (time.Duration, error) {
	cd, err := e.draining(ctx)
	if err != nil {
		return 0, err
	}
	if !cd.Enabled {
		return settleMargin, nil
	}
	return seconds(aws.ToInt32(cd.Timeout)) + settleMargin, nil
}

// HealthBound implements lb.HealthBounder: HealthyThreshold × (Interval +
// Timeout) and a margin.
func (e *ELB) HealthBound(ctx context.Context) (time.Duration, error) {
	d, err := e.describe(ctx)
	if err != nil {
		return 0, err
	}
	hc := d.HealthCheck
	if hc == nil {
		return settleMargin, nil
	}
	return time.Duration(aws.ToInt32(hc.HealthyThreshold))*seconds(aws.ToInt32(hc.Interval)+aws.ToInt32(hc.Timeout)) + settleMargin, nil
}

// Advice implements lb.Advisor.
func (e *ELB) Advice(ctx context.Context) ([]string, error) {
	cd, err := e.draining(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if !cd.Enabled {
		out = append(out, fmt.Sprintf("connection draining is disabled on classic ELB %s: deregistering an instance cuts its requests in flight. Enable it:\n"+
			"  aws elb modify-load-balancer-attributes --region %s --load-balancer-name %s --load-balancer-attributes '{\"ConnectionDraining\":{\"Enabled\":true,\"Timeout\":30}}'",
			e.name, e.region, e.name))
	}
	d, err := e.describe(ctx)
	if err != nil {
		return nil, err
	}
	if hc := d.HealthCheck; hc != nil {
		out = append(out, healthAdvice("classic ELB "+e.name, aws.ToInt32(hc.HealthyThreshold), aws.ToInt32(hc.Interval), aws.ToInt32(hc.Timeout))...)
	}
	return out, nil
}

package awslb

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/zerodown/zerodown/internal/lb"
)

// awsDefaultDelay is ELBv2's default deregistration delay, in seconds.
const awsDefaultDelay = 300

// ALB is an ELBv2 target group's targets (behind an application or
// network load balancer) as the deploy engine sees them.
type ALB struct {
	client  *elbv2.Client
	arn     string
	region  string
	ipType  bool
	byAddr  map[string]v2types.TargetDescription // target address → AWS's target
	byKey   map[string]string                    // id:port → target address
	targets []v2types.TargetDescription          // ours, then the others registered at the start
	poll    poller
}

var (
	_ lb.Balancer      = (*ALB)(nil)
	_ lb.DrainBounder  = (*ALB)(nil)
	_ lb.HealthBounder = (*ALB)(nil)
	_ lb.Advisor       = (*ALB)(nil)
)

// NewALB returns the driver of the target group targetGroupARN, whose
// targets are given as target address → EC2 instance ID for a group of
// instances (the target's port is the address's), or → "" for a group of
// IP addresses (Id is the address's IP). It checks the credentials, that
// the group exists, and that the targets fit its target type.
func NewALB(ctx context.Context, cfg Config, targetGroupARN string, targets map[string]string) (*ALB, error) {
	if targetGroupARN == "" {
		return nil, fmt.Errorf("aws-alb: the target group's ARN is empty")
	}
	ac, err := loadAWS(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("aws-alb %s: %w", targetGroupARN, err)
	}
	a := &ALB{arn: targetGroupARN, region: ac.Region, byAddr: map[string]v2types.TargetDescription{}, byKey: map[string]string{},
		poll: poller{interval: pollInterval(cfg)}}
	a.client = elbv2.NewFromConfig(ac, func(o *elbv2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	g, err := a.group(ctx)
	if err != nil {
		return nil, err
	}
	switch g.TargetType {
	case v2types.TargetTypeEnumInstance:
	case v2types.TargetTypeEnumIp:
		a.ipType = true
	default:
		return nil, fmt.Errorf("aws-alb: target group %s registers %s targets; zerodown drives instance and ip targets", a.arn, g.TargetType)
	}
	addrs := make([]string, 0, len(targets))
	for addr := range targets {
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		host, portStr, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(portStr)
		if err != nil || perr != nil || port < 1 || port > 65535 {
			return nil, fmt.Errorf("aws-alb %s: target %q is not ip:port", a.arn, addr)
		}
		id := targets[addr]
		switch {
		case !a.ipType && id == "":
			return nil, fmt.Errorf("aws-alb: target group %s registers instances: set instance: on each host (%s has none)", a.arn, addr)
		case a.ipType && id != "":
			return nil, fmt.Errorf("aws-alb: target group %s registers ip addresses, not instances: remove instance: %s from host %s", a.arn, id, addr)
		case a.ipType:
			id = host
		}
		td := v2types.TargetDescription{Id: aws.String(id), Port: aws.Int32(int32(port))}
		key := id + ":" + portStr
		if other, dup := a.byKey[key]; dup {
			return nil, fmt.Errorf("aws-alb %s: hosts %s and %s are both target %s", a.arn, other, addr, key)
		}
		a.byAddr[addr], a.byKey[key] = td, addr
		a.targets = append(a.targets, td)
	}
	// The others registered now are reported too (under id or ip:port).
	out, err := a.client.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(a.arn)})
	if err != nil {
		return nil, explain(err, "aws-alb: describe target health of "+a.arn, "DescribeTargetHealth", a.region)
	}
	for _, d := range out.TargetHealthDescriptions {
		if d.Target == nil {
			continue
		}
		if _, ours := a.byKey[keyOf(*d.Target)]; !ours {
			a.targets = append(a.targets, v2types.TargetDescription{Id: d.Target.Id, Port: d.Target.Port})
		}
	}
	return a, nil
}

func keyOf(t v2types.TargetDescription) string {
	return aws.ToString(t.Id) + ":" + strconv.Itoa(int(aws.ToInt32(t.Port)))
}

func (a *ALB) String() string { return "target group " + a.arn }

func (a *ALB) group(ctx context.Context) (v2types.TargetGroup, error) {
	out, err := a.client.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{a.arn}})
	if err != nil {
		return v2types.TargetGroup{}, explain(err, "aws-alb: describe target group "+a.arn, "DescribeTargetGroups", a.region)
	}
	if len(out.TargetGroups) != 1 {
		return v2types.TargetGroup{}, fmt.Errorf("aws-alb: describe target group %s in %s: AWS answered %d groups", a.arn, a.region, len(out.TargetGroups))
	}
	return out.TargetGroups[0], nil
}

// delay reads deregistration_delay.timeout_seconds.
func (a *ALB) delay(ctx context.Context) (int, error) {
	out, err := a.client.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(a.arn)})
	if err != nil {
		return 0, explain(err, "aws-alb: describe the attributes of "+a.arn, "DescribeTargetGroupAttributes", a.region)
	}
	for _, kv := range out.Attributes {
		if aws.ToString(kv.Key) == "deregistration_delay.timeout_seconds" {
			n, err := strconv.Atoi(aws.ToString(kv.Value))
			if err != nil {
				return 0, fmt.Errorf("aws-alb: %s: deregistration_delay.timeout_seconds is %q", a.arn, aws.ToString(kv.Value))
			}
			return n, nil
		}
	}
	return awsDefaultDelay, nil
}

// Targets implements lb.Balancer: the health of our targets (asked for
// explicitly, so AWS answers unused for deregistered ones) and of the
// others registered when the driver started, at most once per PollInterval.
func (a *ALB) Targets(ctx context.Context) ([]lb.Target, error) {
	return a.poll.get(ctx, a.read)
}

func (a *ALB) read(ctx context.Context) ([]lb.Target, error) {
	out, err := a.client.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(a.arn), Targets: a.targets})
	if err != nil {
		return nil, explain(err, "aws-alb: describe target health of "+a.arn, "DescribeTargetHealth", a.region)
	}
	ts := make([]lb.Target, 0, len(out.TargetHealthDescriptions))
	for _, d := range out.TargetHealthDescriptions {
		if d.Target == nil || d.TargetHealth == nil {
			continue
		}
		addr, ours := a.byKey[keyOf(*d.Target)]
		if !ours {
			addr = aws.ToString(d.Target.Id)
			if a.ipType {
				addr = net.JoinHostPort(addr, strconv.Itoa(int(aws.ToInt32(d.Target.Port))))
			}
		}
		st := targetState(d.TargetHealth)
		t := lb.Target{Address: addr, State: st}
		if st != lb.StateHealthy {
			t.Reason = string(d.TargetHealth.Reason)
			if desc := aws.ToString(d.TargetHealth.Description); desc != "" {
				t.Reason += ": " + desc
			}
		}
		ts = append(ts, t)
	}
	sortTargets(ts)
	return ts, nil
}

// outOfGroup are the reasons of an unused target that is out of the group,
// as a deregistration leaves it.
var outOfGroup = map[v2types.TargetHealthReasonEnum]bool{
	"": true, v2types.TargetHealthReasonEnumNotRegistered: true, v2types.TargetHealthReasonEnumDeregistrationInProgress: true,
}

// targetState is the engine's state for AWS's health of a target. A
// target registered but unused (Target.NotInUse: the group serves no load
// balancer, or not in this zone) will never be healthy and is not out of
// the group either: unhealthy, with AWS's reason.
func targetState(h *v2types.TargetHealth) lb.State {
	st := v2State(h.State)
	if st == lb.StateUnused && !outOfGroup[h.Reason] {
		return lb.StateUnhealthy
	}
	return st
}

// v2State maps ELBv2's states onto the engine's (its own words, but
// unhealthy.draining and unavailable).
func v2State(s v2types.TargetHealthStateEnum) lb.State {
	switch s {
	case v2types.TargetHealthStateEnumInitial:
		return lb.StateInitial
	case v2types.TargetHealthStateEnumHealthy:
		return lb.StateHealthy
	case v2types.TargetHealthStateEnumDraining, v2types.TargetHealthStateEnumUnhealthyDraining:
		return lb.StateDraining
	case v2types.TargetHealthStateEnumUnused:
		return lb.StateUnused
	}
	return lb.StateUnhealthy // unhealthy, unavailable, and any state AWS adds
}

func (a *ALB) target(addr string) (v2types.TargetDescription, error) {
	td, ok := a.byAddr[addr]
	if !ok {
		return td, fmt.Errorf("aws-alb %s: no host has the target %s", a.arn, addr)
	}
	return td, nil
}

// Attach implements lb.Balancer: RegisterTargets.
func (a *ALB) Attach(ctx context.Context, addr string) error {
	td, err := a.target(addr)
	if err != nil {
		return err
	}
	defer a.poll.forget()
	_, err = a.client.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(a.arn), Targets: []v2types.TargetDescription{td}})
	if err != nil {
		return explain(err, fmt.Sprintf("aws-alb: register %s (%s) with %s", keyOf(td), addr, a.arn), "RegisterTargets", a.region)
	}
	return nil
}

// Detach implements lb.Balancer: DeregisterTargets. The target drains for
// the whole deregistration delay, even when it has no request in flight.
func (a *ALB) Detach(ctx context.Context, addr string) error {
	td, err := a.target(addr)
	if err != nil {
		return err
	}
	defer a.poll.forget()
	_, err = a.client.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(a.arn), Targets: []v2types.TargetDescription{td}})
	if err != nil {
		return explain(err, fmt.Sprintf("aws-alb: deregister %s (%s) from %s", keyOf(td), addr, a.arn), "DeregisterTargets", a.region)
	}
	return nil
}

// DrainBound implements lb.DrainBounder: the deregistration delay and a margin.
func (a *ALB) DrainBound(ctx context.Context) (time.Duration, error) {
	d, err := a.delay(ctx)
	if err != nil {
		return 0, err
	}
	return time.Duration(d)*time.Second + settleMargin, nil
}

// HealthBound implements lb.HealthBounder: HealthyThresholdCount ×
// (interval + timeout) and a margin.
func (a *ALB) HealthBound(ctx context.Context) (time.Duration, error) {
	g, err := a.group(ctx)
	if err != nil {
		return 0, err
	}
	return time.Duration(aws.ToInt32(g.HealthyThresholdCount))*seconds(aws.ToInt32(g.HealthCheckIntervalSeconds)+aws.ToInt32(g.HealthCheckTimeoutSeconds)) + settleMargin, nil
}

// Advice implements lb.Advisor.
func (a *ALB) Advice(ctx context.Context) ([]string, error) {
	d, err := a.delay(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if d == awsDefaultDelay {
		out = append(out, fmt.Sprintf("target group %s keeps a deregistered target draining for %d s (AWS's default) even when it has no request in flight: "+
			"every detach takes %s. If your requests finish well within 30 s, shorten it:\n"+
			"  aws elbv2 modify-target-group-attributes --region %s --target-group-arn %s --attributes Key=deregistration_delay.timeout_seconds,Value=30",
			a.arn, d, time.Duration(d)*time.Second, a.region, a.arn))
	}
	g, err := a.group(ctx)
	if err != nil {
		return nil, err
	}
	out = append(out, healthAdvice("target group "+a.arn, aws.ToInt32(g.HealthyThresholdCount), aws.ToInt32(g.HealthCheckIntervalSeconds), aws.ToInt32(g.HealthCheckTimeoutSeconds))...)
	return out, nil
}

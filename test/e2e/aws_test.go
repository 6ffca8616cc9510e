package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb/awsfake"
	"github.com/zerodown/zerodown/internal/lb/awslb"
)

// AWS cannot be reached from tests: the AWS drivers deploy through
// awsfake, a local simulation of the classic ELB and ELBv2 query APIs that
// also proxies traffic to the registered targets, on a clock scaled down.

// awsScale runs AWS's timers 50 times faster: a 5s check interval is
// 100ms, a 300s draining timeout 6s.
const awsScale = 0.02

// awsSettings are a load balancer's health check and draining settings,
// in AWS's seconds.
type awsSettings struct {
	interval, timeout, healthy, unhealthy, draining int
}

var (
	// awsDefaults are AWS's defaults: a classic health check every 30s,
	// 10 passes to be InService; ELBv2 every 30s, 5 passes; 300s draining.
	awsClassicDefaults = awsSettings{interval: 30, timeout: 5, healthy: 10, unhealthy: 2, draining: 300}
	awsALBDefaults     = awsSettings{interval: 30, timeout: 5, healthy: 5, unhealthy: 2, draining: 300}
	// awsTuned is what docs/aws.md recommends for deploys.
	awsTuned = awsSettings{interval: 5, timeout: 2, healthy: 2, unhealthy: 2, draining: 30}
)

// startAWSFake starts the simulation; TestMain gave every process
// credentials for it.
func startAWSFake(t *testing.T) *awsfake.Fake {
	t.Helper()
	fake, err := awsfake.New(awsfake.Options{Scale: awsScale})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

// awsDriverConfig is the driver's configuration for the test's own view.
func awsDriverConfig(fake *awsfake.Fake) awslb.Config {
	return awslb.Config{Region: fake.Region(), Endpoint: fake.Endpoint(), PollInterval: 200 * time.Millisecond}
}

func instanceID(i int) string { return fmt.Sprintf("i-%017x", i+1) }

// startELBFor puts f's agents behind a simulated classic ELB with the
// given settings, every instance registered and InService.
func startELBFor(t *testing.T, f *driverFleet, s awsSettings) {
	t.Helper()
	fake := startAWSFake(t)
	instances := map[string]string{}
	ids := map[string]string{}
	var registered []string
	for i := range f.agents {
		instances[instanceID(i)] = f.target(i)
		ids[f.target(i)] = instanceID(i)
		registered = append(registered, instanceID(i))
	}
	px, err := fake.AddClassic(awsfake.Classic{Name: "staging-web", ConnectionDraining: true, DrainingTimeout: s.draining,
		HealthCheck: awsfake.ClassicHealthCheck{Target: "HTTP:8080/healthz", Interval: s.interval, Timeout: s.timeout,
			HealthyThreshold: s.healthy, UnhealthyThreshold: s.unhealthy},
		Instances: instances, Registered: registered})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if f.bal, err = awslb.NewELB(ctx, awsDriverConfig(fake), "staging-web", ids); err != nil {
		t.Fatal(err)
	}
	f.front = px.URL()
	f.lbYAML = fmt.Sprintf("{ driver: aws-elb, name: staging-web, region: %s, endpoint: %q, poll_interval: 200ms }", fake.Region(), fake.Endpoint())
	f.hostYAML = func(i int) string { return "instance: " + instanceID(i) }
}

// startALBFor puts f's agents behind a simulated ELBv2 target group of ip
// targets with the given settings, every target registered and healthy.
func startALBFor(t *testing.T, f *driverFleet, s awsSettings) {
	t.Helper()
	fake := startAWSFake(t)
	var registered []awsfake.Target
	ids := map[string]string{}
	for i, a := range f.agents {
		registered = append(registered, awsfake.Target{ID: "127.0.0.1", Port: a.port})
		ids[f.target(i)] = ""
	}
	px, err := fake.AddTargetGroup(awsfake.TargetGroup{Name: "staging-web", TargetType: "ip", Protocol: "HTTP", Port: 8080,
		HealthCheckPath: "/healthz", Interval: s.interval, Timeout: s.timeout, HealthyThreshold: s.healthy,
		UnhealthyThreshold: s.unhealthy, DeregistrationDelay: s.draining, Registered: registered})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if f.bal, err = awslb.NewALB(ctx, awsDriverConfig(fake), px.ARN(), ids); err != nil {
		t.Fatal(err)
	}
	f.front = px.URL()
	f.lbYAML = fmt.Sprintf("{ driver: aws-alb, target_group: %q, region: %s, endpoint: %q, poll_interval: 200ms }", px.ARN(), fake.Region(), fake.Endpoint())
}

// startALBCanaryFor puts f's first agent in a simulated ALB's canary
// target group and the others in its main group, behind a listener that
// forwards to the main group; zerodown gives it both, by weight.
func startALBCanaryFor(t *testing.T, f *driverFleet, s awsSettings) {
	t.Helper()
	fake := startAWSFake(t)
	group := func(name string, agents []*agentFixture) *awsfake.Proxy {
		var registered []awsfake.Target
		for _, a := range agents {
			registered = append(registered, awsfake.Target{ID: "127.0.0.1", Port: a.port})
		}
		px, err := fake.AddTargetGroup(awsfake.TargetGroup{Name: name, TargetType: "ip", Protocol: "HTTP", Port: 8080,
			HealthCheckPath: "/healthz", Interval: s.interval, Timeout: s.timeout, HealthyThreshold: s.healthy,
			UnhealthyThreshold: s.unhealthy, DeregistrationDelay: s.draining, Registered: registered})
		if err != nil {
			t.Fatal(err)
		}
		return px
	}
	canaryPx, mainPx := group("staging-canary", f.agents[:1]), group("staging-web", f.agents[1:])
	listener, err := fake.AddListener(awsfake.Listener{TargetGroupARN: mainPx.ARN()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := [2]map[string]string{{}, {}}
	members := map[string]string{}
	for i := range f.agents {
		g, arn := 0, mainPx.ARN()
		if i == 0 {
			g, arn = 1, canaryPx.ARN()
		}
		ids[g][f.target(i)] = ""
		members[f.target(i)] = arn
	}
	mainB, err := awslb.NewALB(ctx, awsDriverConfig(fake), mainPx.ARN(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	canaryB, err := awslb.NewALB(ctx, awsDriverConfig(fake), canaryPx.ARN(), ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if f.bal, err = awslb.NewCanaryGroups(ctx, listener.ARN(), mainB, canaryB, members); err != nil {
		t.Fatal(err)
	}
	f.front = listener.URL()
	f.lbYAML = fmt.Sprintf("{ driver: aws-alb, target_group: %q, canary_target_group: %q, listener: %q, region: %s, endpoint: %q, poll_interval: 200ms }",
		mainPx.ARN(), canaryPx.ARN(), listener.ARN(), fake.Region(), fake.Endpoint())
	f.canaryOnly = true
	f.evenShares = func() error {
		// Each group weighs its number of hosts: one canary, the others main.
		if w := listener.Weights(); w[mainPx.ARN()] != len(f.agents)-1 || w[canaryPx.ARN()] != 1 {
			return fmt.Errorf("the listener weighs main %d and canary %d, want %d and 1", w[mainPx.ARN()], w[canaryPx.ARN()], len(f.agents)-1)
		}
		return nil
	}
}

// TestDeployThroughClassicELB runs the drivers' rolling test through a
// simulated classic ELB with tuned settings.
func TestDeployThroughClassicELB(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startELBFor(t, f, awsTuned)
	rollingThrough(t, f, nil)
}

// TestDeployThroughALB runs it through a simulated ALB target group.
func TestDeployThroughALB(t *testing.T) {
	t.Parallel()
	f := startDriverAgents(t, 3)
	startALBFor(t, f, awsTuned)
	rollingThrough(t, f, nil)
}

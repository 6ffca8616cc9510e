package awsfake

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancing"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancing/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/zerodown/zerodown/internal/proctest"
)

// app is a backend whose /healthz answers 200 while healthy is set, and
// whose other paths answer its name, after ?sleep=D.
type app struct {
	addr    string
	healthy atomic.Bool
}

func newApp(t *testing.T, name string) *app {
	a := &app{}
	a.healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !a.healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	a.addr = strings.TrimPrefix(srv.URL, "http://")
	return a
}

func newFake(t *testing.T) *Fake {
	f, err := New(Options{Scale: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func awsConfig(f *Fake, region string) aws.Config {
	return aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxBackoff = 200 * time.Millisecond })
		},
		BaseEndpoint: aws.String(f.Endpoint()),
	}
}

func clients(f *Fake) (*elb.Client, *elbv2.Client) {
	cfg := awsConfig(f, f.Region())
	return elb.NewFromConfig(cfg), elbv2.NewFromConfig(cfg)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func get(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b)
}

func instanceState(t *testing.T, c *elb.Client, name, id string) elbtypes.InstanceState {
	t.Helper()
	out, err := c.DescribeInstanceHealth(ctxFor(t), &elb.DescribeInstanceHealthInput{
		LoadBalancerName: aws.String(name), Instances: []elbtypes.Instance{{InstanceId: aws.String(id)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.InstanceStates) != 1 {
		t.Fatalf("instance states %+v", out.InstanceStates)
	}
	return out.InstanceStates[0]
}

func is(s elbtypes.InstanceState, state, desc string) bool {
	return aws.ToString(s.State) == state && aws.ToString(s.Description) == desc
}

// A classic load balancer through the SDK: settings reported in AWS
// seconds, registration until the healthy threshold, failing checks,
// deregistration draining while a request is in flight and ending as soon
// as it finishes, and the proxy sending requests only to instances in service.
func TestClassicLifecycle(t *testing.T) {
	f := newFake(t)
	a, b := newApp(t, "a"), newApp(t, "b")
	px, err := f.AddClassic(Classic{Name: "web", ConnectionDraining: true, DrainingTimeout: 300,
		HealthCheck: ClassicHealthCheck{Target: "HTTP:8080/healthz", Interval: 5, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 2},
		Instances:   map[string]string{"i-0000000a": a.addr, "i-0000000b": b.addr}, Registered: []string{"i-0000000a"}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := clients(f)
	lbs, err := c.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{LoadBalancerNames: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	hc := lbs.LoadBalancerDescriptions[0].HealthCheck
	if aws.ToString(hc.Target) != "HTTP:8080/healthz" || aws.ToInt32(hc.Interval) != 5 || aws.ToInt32(hc.HealthyThreshold) != 3 ||
		len(lbs.LoadBalancerDescriptions[0].Instances) != 1 || aws.ToString(lbs.LoadBalancerDescriptions[0].DNSName) == "" {
		t.Fatalf("described %+v", lbs.LoadBalancerDescriptions[0])
	}
	attrs, err := c.DescribeLoadBalancerAttributes(ctxFor(t), &elb.DescribeLoadBalancerAttributesInput{LoadBalancerName: aws.String("web")})
	if err != nil || !attrs.LoadBalancerAttributes.ConnectionDraining.Enabled || aws.ToInt32(attrs.LoadBalancerAttributes.ConnectionDraining.Timeout) != 300 {
		t.Fatalf("attributes %+v %v", attrs, err)
	}

	if s := instanceState(t, c, "web", "i-0000000b"); !is(s, "OutOfService", descNotRegistered) {
		t.Fatalf("unregistered b: %+v", s)
	}
	if got := get(px.URL()); got != "200 OK a" {
		t.Fatalf("through the proxy: %s", got)
	}
	if _, err := c.RegisterInstancesWithLoadBalancer(ctxFor(t), &elb.RegisterInstancesWithLoadBalancerInput{
		LoadBalancerName: aws.String("web"), Instances: []elbtypes.Instance{{InstanceId: aws.String("i-0000000b")}}}); err != nil {
		t.Fatal(err)
	}
	if s := instanceState(t, c, "web", "i-0000000b"); !is(s, "OutOfService", descRegistering) || aws.ToString(s.ReasonCode) != "ELB" {
		t.Fatalf("b right after registering: %+v", s)
	}
	proctest.Eventually(t, 5*time.Second, "b in service", func() bool { return is(instanceState(t, c, "web", "i-0000000b"), "InService", "N/A") })
	seen := map[string]bool{}
	for range 4 {
		seen[get(px.URL())] = true
	}
	if !seen["200 OK a"] || !seen["200 OK b"] {
		t.Fatalf("round robin answered %v", seen)
	}

	b.healthy.Store(false)
	proctest.Eventually(t, 5*time.Second, "b out of service", func() bool {
		s := instanceState(t, c, "web", "i-0000000b")
		return is(s, "OutOfService", descFailed) && aws.ToString(s.ReasonCode) == "Instance"
	})
	for range 4 {
		if got := get(px.URL()); got != "200 OK a" {
			t.Fatalf("with b failing: %s", got)
		}
	}
	b.healthy.Store(true)
	proctest.Eventually(t, 5*time.Second, "b back in service", func() bool { return is(instanceState(t, c, "web", "i-0000000b"), "InService", "N/A") })

	// A long request on a, then a's deregistration: draining until it ends.
	long := make(chan string, 1)
	go func() { long <- get(px.URL() + "/?sleep=700ms") }()
	proctest.Eventually(t, 5*time.Second, "a request in flight", func() bool {
		px.pool.mu.Lock()
		defer px.pool.mu.Unlock()
		return len(px.pool.members["i-0000000a"].flying)+len(px.pool.members["i-0000000b"].flying) > 0
	})
	inFlightOn := "i-0000000a"
	px.pool.mu.Lock()
	if len(px.pool.members["i-0000000a"].flying) == 0 {
		inFlightOn = "i-0000000b"
	}
	px.pool.mu.Unlock()
	other := map[string]string{"i-0000000a": "200 OK b", "i-0000000b": "200 OK a"}[inFlightOn]
	start := time.Now()
	if _, err := c.DeregisterInstancesFromLoadBalancer(ctxFor(t), &elb.DeregisterInstancesFromLoadBalancerInput{
		LoadBalancerName: aws.String("web"), Instances: []elbtypes.Instance{{InstanceId: aws.String(inFlightOn)}}}); err != nil {
		t.Fatal(err)
	}
	if s := instanceState(t, c, "web", inFlightOn); !is(s, "InService", descDeregistering) {
		t.Fatalf("draining: %+v", s)
	}
	for range 3 {
		if got := get(px.URL()); got != other {
			t.Fatalf("a request during the drain answered %s, want %s", got, other)
		}
	}
	if got := <-long; !strings.HasPrefix(got, "200 OK") {
		t.Fatalf("the request in flight at the deregistration: %s", got)
	}
	proctest.Eventually(t, 2*time.Second, "the drain ending once idle", func() bool {
		return is(instanceState(t, c, "web", inFlightOn), "OutOfService", descNotRegistered)
	})
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("the drain took %s: it should end when idle, not at the 3s timeout", d)
	}
	if st := px.Stats(); st.Failures != 0 || st.Requests < 10 {
		t.Fatalf("proxy stats %+v", st)
	}
}

// Without connection draining, a deregistration cuts requests in flight.
func TestClassicNoDrainingCuts(t *testing.T) {
	f := newFake(t)
	a := newApp(t, "a")
	px, err := f.AddClassic(Classic{Name: "web", HealthCheck: ClassicHealthCheck{Target: "TCP:80"},
		Instances: map[string]string{"i-0000000a": a.addr}, Registered: []string{"i-0000000a"}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := clients(f)
	long := make(chan string, 1)
	go func() { long <- get(px.URL() + "/?sleep=5s") }()
	proctest.Eventually(t, 5*time.Second, "a request in flight", func() bool {
		px.pool.mu.Lock()
		defer px.pool.mu.Unlock()
		return len(px.pool.members["i-0000000a"].flying) > 0
	})
	if _, err := c.DeregisterInstancesFromLoadBalancer(ctxFor(t), &elb.DeregisterInstancesFromLoadBalancerInput{
		LoadBalancerName: aws.String("web"), Instances: []elbtypes.Instance{{InstanceId: aws.String("i-0000000a")}}}); err != nil {
		t.Fatal(err)
	}
	if got := <-long; !strings.HasPrefix(got, "502") {
		t.Fatalf("the request in flight: %s, want it cut", got)
	}
	if st := px.Stats(); st.Cut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func targetHealth(t *testing.T, c *elbv2.Client, arn, ip string, port int32) v2types.TargetHealth {
	t.Helper()
	out, err := c.DescribeTargetHealth(ctxFor(t), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn),
		Targets: []v2types.TargetDescription{{Id: aws.String(ip), Port: aws.Int32(port)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TargetHealthDescriptions) != 1 {
		t.Fatalf("descriptions %+v", out.TargetHealthDescriptions)
	}
	return *out.TargetHealthDescriptions[0].TargetHealth
}

// A target group of ip targets through the SDK: initial until the healthy
// threshold, unhealthy on failing checks, draining for the whole
// deregistration delay even when idle, then unused, cutting what is still
// in flight at the end of the delay.
func TestTargetGroupLifecycle(t *testing.T) {
	f := newFake(t)
	a, b := newApp(t, "a"), newApp(t, "b")
	ipOf := func(addr string) (string, int32) {
		i := strings.LastIndex(addr, ":")
		var p int32
		for _, ch := range addr[i+1:] {
			p = p*10 + ch - '0'
		}
		return addr[:i], p
	}
	aIP, aPort := ipOf(a.addr)
	bIP, bPort := ipOf(b.addr)
	px, err := f.AddTargetGroup(TargetGroup{Name: "app", TargetType: "ip", Port: int(aPort), HealthCheckPath: "/healthz",
		Interval: 5, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 2, DeregistrationDelay: 80,
		Registered: []Target{{ID: aIP, Port: int(aPort)}}})
	if err != nil {
		t.Fatal(err)
	}
	_, c := clients(f)
	arn := px.ARN()
	groups, err := c.DescribeTargetGroups(ctxFor(t), &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}})
	if err != nil {
		t.Fatal(err)
	}
	g := groups.TargetGroups[0]
	if g.TargetType != v2types.TargetTypeEnumIp || aws.ToInt32(g.HealthCheckIntervalSeconds) != 5 || aws.ToInt32(g.HealthyThresholdCount) != 3 ||
		aws.ToString(g.HealthCheckPath) != "/healthz" || len(g.LoadBalancerArns) != 1 {
		t.Fatalf("described %+v", g)
	}
	attrs, err := c.DescribeTargetGroupAttributes(ctxFor(t), &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
	if err != nil || aws.ToString(attrs.Attributes[0].Key) != "deregistration_delay.timeout_seconds" || aws.ToString(attrs.Attributes[0].Value) != "80" {
		t.Fatalf("attributes %+v %v", attrs, err)
	}
	if h := targetHealth(t, c, arn, bIP, bPort); h.State != v2types.TargetHealthStateEnumUnused || h.Reason != v2types.TargetHealthReasonEnumNotRegistered {
		t.Fatalf("unregistered: %+v", h)
	}
	if _, err := c.RegisterTargets(ctxFor(t), &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn),
		Targets: []v2types.TargetDescription{{Id: aws.String(bIP), Port: aws.Int32(bPort)}}}); err != nil {
		t.Fatal(err)
	}
	if h := targetHealth(t, c, arn, bIP, bPort); h.State != v2types.TargetHealthStateEnumInitial || h.Reason != v2types.TargetHealthReasonEnumRegistrationInProgress {
		t.Fatalf("registering: %+v", h)
	}
	proctest.Eventually(t, 5*time.Second, "b healthy", func() bool { return targetHealth(t, c, arn, bIP, bPort).State == v2types.TargetHealthStateEnumHealthy })
	b.healthy.Store(false)
	proctest.Eventually(t, 5*time.Second, "b unhealthy", func() bool {
		h := targetHealth(t, c, arn, bIP, bPort)
		return h.State == v2types.TargetHealthStateEnumUnhealthy && h.Reason == v2types.TargetHealthReasonEnumResponseCodeMismatch
	})
	b.healthy.Store(true)
	proctest.Eventually(t, 5*time.Second, "b healthy again", func() bool { return targetHealth(t, c, arn, bIP, bPort).State == v2types.TargetHealthStateEnumHealthy })

	// Deregister a while idle: it drains the full 800ms anyway.
	start := time.Now()
	if _, err := c.DeregisterTargets(ctxFor(t), &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(arn),
		Targets: []v2types.TargetDescription{{Id: aws.String(aIP), Port: aws.Int32(aPort)}}}); err != nil {
		t.Fatal(err)
	}
	if h := targetHealth(t, c, arn, aIP, aPort); h.State != v2types.TargetHealthStateEnumDraining || h.Reason != v2types.TargetHealthReasonEnumDeregistrationInProgress {
		t.Fatalf("deregistering: %+v", h)
	}
	for range 3 {
		if got := get(px.URL()); got != "200 OK b" {
			t.Fatalf("during the drain: %s", got)
		}
	}
	proctest.Eventually(t, 5*time.Second, "a unused", func() bool { return targetHealth(t, c, arn, aIP, aPort).State == v2types.TargetHealthStateEnumUnused })
	if d := time.Since(start); d < 750*time.Millisecond {
		t.Fatalf("an idle target drained in %s, not the whole 800ms delay", d)
	}

	// A request longer than the delay is cut at its end.
	long := make(chan string, 1)
	before := px.Stats().Requests
	go func() { long <- get(px.URL() + "/?sleep=5s") }()
	proctest.Eventually(t, 5*time.Second, "a request in flight on b", func() bool { return px.Stats().Requests > before })
	if _, err := c.DeregisterTargets(ctxFor(t), &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(arn),
		Targets: []v2types.TargetDescription{{Id: aws.String(bIP), Port: aws.Int32(bPort)}}}); err != nil {
		t.Fatal(err)
	}
	if got := <-long; !strings.HasPrefix(got, "502") {
		t.Fatalf("a request longer than the delay: %s", got)
	}
	if st := px.Stats(); st.Cut != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Instance targets are reached at the instance's IP and the target's port.
func TestTargetGroupInstances(t *testing.T) {
	f := newFake(t)
	a := newApp(t, "a")
	ip, port, _ := strings.Cut(a.addr, ":")
	px, err := f.AddTargetGroup(TargetGroup{Name: "app", HealthCheckPath: "/healthz", Interval: 5, HealthyThreshold: 2,
		Instances: map[string]string{"i-0000000a": ip}})
	if err != nil {
		t.Fatal(err)
	}
	_, c := clients(f)
	p := int32(0)
	for _, ch := range port {
		p = p*10 + ch - '0'
	}
	_, err = c.RegisterTargets(ctxFor(t), &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(px.ARN()),
		Targets: []v2types.TargetDescription{{Id: aws.String("i-0000000a"), Port: aws.Int32(p)}}})
	if err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "healthy", func() bool {
		return targetHealth(t, c, px.ARN(), "i-0000000a", p).State == v2types.TargetHealthStateEnumHealthy
	})
	if got := get(px.URL()); got != "200 OK a" {
		t.Fatal(got)
	}
	_, err = c.RegisterTargets(ctxFor(t), &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(px.ARN()),
		Targets: []v2types.TargetDescription{{Id: aws.String("10.0.0.1")}}})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidTarget" {
		t.Fatalf("an IP in an instance group: %v", err)
	}
}

// Errors come back as the SDK knows them; throttled calls are retried
// with backoff and get through.
func TestErrors(t *testing.T) {
	f := newFake(t)
	a := newApp(t, "a")
	if _, err := f.AddClassic(Classic{Name: "web", Instances: map[string]string{"i-0000000a": a.addr}}); err != nil {
		t.Fatal(err)
	}
	c, c2 := clients(f)
	_, err := c.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{LoadBalancerNames: []string{"nope"}})
	var notFound *elbtypes.AccessPointNotFoundException
	if !errors.As(err, &notFound) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown load balancer: %v", err)
	}
	_, err = c2.DescribeTargetGroups(ctxFor(t), &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1"}})
	var tgNotFound *v2types.TargetGroupNotFoundException
	if !errors.As(err, &tgNotFound) {
		t.Fatalf("unknown target group: %v", err)
	}
	_, err = c.DescribeInstanceHealth(ctxFor(t), &elb.DescribeInstanceHealthInput{LoadBalancerName: aws.String("web"),
		Instances: []elbtypes.Instance{{InstanceId: aws.String("i-99999999")}}})
	var invalid *elbtypes.InvalidEndPointException
	if !errors.As(err, &invalid) {
		t.Fatalf("unknown instance: %v", err)
	}

	f.Deny("DescribeInstanceHealth")
	_, err = c.DescribeInstanceHealth(ctxFor(t), &elb.DescribeInstanceHealthInput{LoadBalancerName: aws.String("web")})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" ||
		ae.ErrorMessage() != "User: arn:aws:iam::123456789012:user/deployer is not authorized to perform: elasticloadbalancing:DescribeInstanceHealth on resource: arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/web" {
		t.Fatalf("denied: %v", err)
	}
	f.Deny()

	f.ThrottleNext(2)
	before := f.Calls("DescribeLoadBalancers")
	if _, err := c.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{}); err != nil {
		t.Fatalf("throttled twice, the SDK's third try: %v", err)
	}
	if n := f.Calls("DescribeLoadBalancers") - before; n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	f.ThrottleNext(5)
	_, err = c.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "Throttling" || ae.ErrorMessage() != "Rate exceeded" {
		t.Fatalf("throttled beyond the retries: %v", err)
	}
	f.ThrottleNext(0)
	f.ThrottleRate(2)
	patient := elb.NewFromConfig(awsConfig(f, f.Region()), func(o *elb.Options) {
		o.Retryer = retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts, o.MaxBackoff = 10, 500*time.Millisecond })
	})
	for i := range 4 {
		if _, err := patient.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{}); err != nil {
			t.Fatalf("call %d at 2 per second: %v", i, err)
		}
	}
	f.ThrottleRate(0)

	// Unsigned, and signed for another region.
	resp, err := http.Post(f.Endpoint(), "application/x-www-form-urlencoded", strings.NewReader("Action=DescribeLoadBalancers&Version=2012-06-01"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Code>MissingAuthenticationToken</Code>") {
		t.Fatalf("unsigned: %d %s", resp.StatusCode, body)
	}
	other := elb.NewFromConfig(awsConfig(f, "eu-west-1"))
	_, err = other.DescribeLoadBalancers(ctxFor(t), &elb.DescribeLoadBalancersInput{})
	if !errors.As(err, &ae) || ae.ErrorCode() != "SignatureDoesNotMatch" {
		t.Fatalf("another region: %v", err)
	}
}

// The form parser never panics, and a list it returns has no more
// members than the form has keys.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte("Action=DescribeInstanceHealth&Instances.member.1.InstanceId=i-1&Instances.member.2.InstanceId=i-2&LoadBalancerName=web&Version=2012-06-01"))
	f.Add([]byte("Action=RegisterTargets&TargetGroupArn=arn&Targets.member.1.Id=10.0.0.1&Targets.member.1.Port=80&Version=2015-12-01"))
	f.Add([]byte("Action=X&Instances.member.01.InstanceId=a&Instances.member.1.InstanceId=b"))
	f.Add([]byte("Action=X&LoadBalancerNames.member.99999999999999999999=a"))
	f.Add([]byte("Action=X&Targets.member.1.Id=a&Targets.member.1.Id=b&Targets.member.-1.Port=2"))
	f.Add([]byte("%zz"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(body)
		if err != nil {
			return
		}
		if l, err := req.list("Instances", "InstanceId"); err == nil && len(l) > len(req.form) {
			t.Fatalf("%d members from %d keys", len(l), len(req.form))
		}
		_, _ = req.list("LoadBalancerNames", "")
		if ms, err := req.members("Targets", "Id", "Port"); err == nil && len(ms) > len(req.form) {
			t.Fatalf("%d members from %d keys", len(ms), len(req.form))
		}
	})
}

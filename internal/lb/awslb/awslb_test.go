package awslb

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/lb/awsfake"
	"github.com/zerodown/zerodown/internal/lb/lbtest"
	"github.com/zerodown/zerodown/internal/proctest"
)

// env gives the standard chain static keys and nothing else: no shared
// files, no instance role.
func env(t *testing.T, withKeys bool) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	key, secret := "", ""
	if withKeys {
		key, secret = "AKIDEXAMPLE", "secret"
	}
	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
}

func newFake(t *testing.T) *awsfake.Fake {
	env(t, true)
	f, err := awsfake.New(awsfake.Options{Scale: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func cfgFor(f *awsfake.Fake, poll time.Duration) Config {
	return Config{Region: f.Region(), Endpoint: f.Endpoint(), PollInterval: poll, retryer: func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts, o.MaxBackoff = 5, 100*time.Millisecond })
	}}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// app answers its name; /healthz answers 200.
func app(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			time.Sleep(d)
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// load sends GETs and POSTs through url until stopped, and counts the
// answers that are not 200 with a body.
type load struct {
	ok, failed atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	mu         sync.Mutex
	first      string
}

func startLoad(url string) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 3 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				var resp *http.Response
				var err error
				if w == 0 {
					resp, err = client.Post(url+"/?sleep=20ms", "text/plain", strings.NewReader("payload"))
				} else {
					resp, err = client.Get(url + "/")
				}
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 && len(body) > 0 {
						l.ok.Add(1)
						continue
					}
					err = &httpStatus{resp.Status}
				}
				l.failed.Add(1)
				l.mu.Lock()
				if l.first == "" {
					l.first = err.Error()
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

type httpStatus struct{ s string }

func (e *httpStatus) Error() string { return e.s }

func (l *load) end(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() != 0 || l.ok.Load() < 20 {
		t.Fatalf("load: %d ok, %d failed (first: %s)", l.ok.Load(), l.failed.Load(), l.first)
	}
}

// cycle detaches addr and attaches it again under load through px, and
// returns how long the drain took.
func cycle(t *testing.T, b lb.Balancer, px *awsfake.Proxy, addr string) time.Duration {
	t.Helper()
	l := startLoad(px.URL())
	proctest.Eventually(t, 5*time.Second, "load through the proxy", func() bool { return l.ok.Load() > 10 })
	start := time.Now()
	if err := b.Detach(ctxFor(t), addr); err != nil {
		t.Fatal(err)
	}
	if st := lbtest.Target(t, b, addr).State; st != lb.StateDraining && st != lb.StateUnused {
		t.Fatalf("right after detach %s is %s", addr, st)
	}
	proctest.Eventually(t, 10*time.Second, addr+" unused", func() bool { return lbtest.Target(t, b, addr).State == lb.StateUnused })
	drained := time.Since(start)
	if err := b.Attach(ctxFor(t), addr); err != nil {
		t.Fatal(err)
	}
	if tg := lbtest.Target(t, b, addr); tg.State != lb.StateInitial {
		t.Fatalf("right after attach %s is %+v, want initial", addr, tg)
	}
	proctest.Eventually(t, 10*time.Second, addr+" healthy", func() bool { return lbtest.Target(t, b, addr).State == lb.StateHealthy })
	before := l.ok.Load()
	proctest.Eventually(t, 5*time.Second, "load after the attach", func() bool { return l.ok.Load() > before+10 })
	l.end(t)
	if st := px.Stats(); st.Failures != 0 {
		t.Fatalf("the proxy failed requests: %+v", st)
	}
	return drained
}

func TestELBCycle(t *testing.T) {
	f := newFake(t)
	a, b := app(t, "a"), app(t, "b")
	px, err := f.AddClassic(awsfake.Classic{Name: "web", ConnectionDraining: true, DrainingTimeout: 300,
		HealthCheck: awsfake.ClassicHealthCheck{Target: "HTTP:80/healthz", Interval: 5, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 2},
		Instances:   map[string]string{"i-0000000a": a, "i-0000000b": b, "i-0000000c": b}, Registered: []string{"i-0000000a", "i-0000000b", "i-0000000c"}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewELB(ctxFor(t), cfgFor(f, 20*time.Millisecond), "web", map[string]string{a: "i-0000000a", b: "i-0000000b"})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := e.Targets(ctxFor(t))
	if err != nil || len(ts) != 3 || ts[2].Address != "i-0000000c" || ts[0].State != lb.StateHealthy {
		t.Fatalf("targets %+v %v", ts, err)
	}
	if d := cycle(t, e, px, a); d > 2500*time.Millisecond {
		t.Fatalf("the drain took %s: classic ELB ends it once idle, well before its 3s timeout", d)
	}
	if d, err := e.DrainBound(ctxFor(t)); err != nil || d != 330*time.Second {
		t.Fatalf("drain bound %s %v", d, err)
	}
	if d, err := e.HealthBound(ctxFor(t)); err != nil || d != 60*time.Second {
		t.Fatalf("health bound %s %v", d, err)
	}
	if adv, err := e.Advice(ctxFor(t)); err != nil || len(adv) != 0 {
		t.Fatalf("advice %q %v", adv, err)
	}
	if e.String() != "classic ELB web in us-east-1" {
		t.Fatal(e.String())
	}
}

func TestALBCycle(t *testing.T) {
	f := newFake(t)
	a, b := app(t, "a"), app(t, "b")
	aIP, aPort, _ := strings.Cut(a, ":")
	bIP, bPort, _ := strings.Cut(b, ":")
	port := func(s string) int {
		n := 0
		for _, c := range s {
			n = n*10 + int(c-'0')
		}
		return n
	}
	px, err := f.AddTargetGroup(awsfake.TargetGroup{Name: "app", TargetType: "ip", HealthCheckPath: "/healthz",
		Interval: 5, Timeout: 5, HealthyThreshold: 3, UnhealthyThreshold: 2, DeregistrationDelay: 100,
		Registered: []awsfake.Target{{ID: aIP, Port: port(aPort)}, {ID: bIP, Port: port(bPort)}}})
	if err != nil {
		t.Fatal(err)
	}
	al, err := NewALB(ctxFor(t), cfgFor(f, 20*time.Millisecond), px.ARN(), map[string]string{a: "", b: ""})
	if err != nil {
		t.Fatal(err)
	}
	if d := cycle(t, al, px, a); d < 950*time.Millisecond {
		t.Fatalf("the drain took %s: an ALB target drains the whole 1s delay even when idle", d)
	}
	if d, err := al.DrainBound(ctxFor(t)); err != nil || d != 130*time.Second {
		t.Fatalf("drain bound %s %v", d, err)
	}
	if d, err := al.HealthBound(ctxFor(t)); err != nil || d != 60*time.Second {
		t.Fatalf("health bound %s %v", d, err)
	}
	if adv, err := al.Advice(ctxFor(t)); err != nil || len(adv) != 0 {
		t.Fatalf("advice %q %v", adv, err)
	}
}

func TestALBInstances(t *testing.T) {
	f := newFake(t)
	a := app(t, "a")
	ip, _, _ := strings.Cut(a, ":")
	px, err := f.AddTargetGroup(awsfake.TargetGroup{Name: "app", HealthCheckPath: "/healthz", Interval: 30, HealthyThreshold: 2,
		Instances: map[string]string{"i-0000000a": ip, "i-0000000f": "10.0.0.9"}, Registered: []awsfake.Target{{ID: "i-0000000f", Port: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(f, 20*time.Millisecond)
	if _, err := NewALB(ctxFor(t), cfg, px.ARN(), map[string]string{a: ""}); err == nil ||
		!strings.Contains(err.Error(), "target group "+px.ARN()+" registers instances: set instance: on each host") {
		t.Fatalf("an ip target in an instance group: %v", err)
	}
	al, err := NewALB(ctxFor(t), cfg, px.ARN(), map[string]string{a: "i-0000000a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Attach(ctxFor(t), a); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "healthy", func() bool { return lbtest.Target(t, al, a).State == lb.StateHealthy })
	if tg := lbtest.Target(t, al, "i-0000000f"); tg.State != lb.StateUnhealthy || !strings.Contains(tg.Reason, "Target.") {
		t.Fatalf("another instance, unreachable: %+v", tg)
	}
	adv, err := al.Advice(ctxFor(t))
	if err != nil || len(adv) != 2 || !strings.Contains(adv[0], "aws elbv2 modify-target-group-attributes --region us-east-1 --target-group-arn "+px.ARN()+
		" --attributes Key=deregistration_delay.timeout_seconds,Value=30") || !strings.Contains(adv[1], "1m10s") {
		t.Fatalf("advice on a 300 s delay and 2 × (30+5) s checks: %q %v", adv, err)
	}
}

func TestErrors(t *testing.T) {
	f := newFake(t)
	a := app(t, "a")
	if _, err := f.AddClassic(awsfake.Classic{Name: "web", Instances: map[string]string{"i-0000000a": a}}); err != nil {
		t.Fatal(err)
	}
	cfg := cfgFor(f, time.Hour)
	_, err := NewELB(ctxFor(t), cfg, "nope", map[string]string{a: "i-0000000a"})
	if err == nil || !strings.Contains(err.Error(), "describe load balancer nope") || !strings.Contains(err.Error(), "region us-east-1") {
		t.Fatalf("unknown load balancer: %v", err)
	}
	arn := "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"
	_, err = NewALB(ctxFor(t), cfg, arn, map[string]string{a: ""})
	if err == nil || !strings.Contains(err.Error(), arn) || !strings.Contains(err.Error(), "no such target group in region us-east-1") {
		t.Fatalf("unknown target group: %v", err)
	}

	e, err := NewELB(ctxFor(t), cfg, "web", map[string]string{a: "i-0000000a"})
	if err != nil {
		t.Fatal(err)
	}
	f.Deny("DescribeInstanceHealth")
	_, err = e.Targets(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "arn:aws:iam::123456789012:user/deployer needs the permission elasticloadbalancing:DescribeInstanceHealth") ||
		!strings.Contains(err.Error(), "docs/aws.md") {
		t.Fatalf("denied: %v", err)
	}
	f.Deny()
	f.ThrottleNext(3)
	if _, err := e.Targets(ctxFor(t)); err != nil {
		t.Fatalf("throttled three times: %v", err)
	}
	adv, err := e.Advice(ctxFor(t))
	if err != nil || len(adv) != 2 || !strings.Contains(adv[0], "cuts its requests in flight") ||
		!strings.Contains(adv[0], `aws elb modify-load-balancer-attributes --region us-east-1 --load-balancer-name web --load-balancer-attributes '{"ConnectionDraining":{"Enabled":true,"Timeout":30}}'`) {
		t.Fatalf("advice without connection draining: %q %v", adv, err)
	}
	if d, err := e.DrainBound(ctxFor(t)); err != nil || d != 30*time.Second {
		t.Fatalf("drain bound without draining: %s %v", d, err)
	}
	if err := e.Detach(ctxFor(t), "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "no host has the target 127.0.0.1:1") {
		t.Fatalf("an unknown target: %v", err)
	}

	env(t, false)
	_, err = NewELB(ctxFor(t), cfg, "web", map[string]string{a: "i-0000000a"})
	if err == nil || !strings.Contains(err.Error(), "no AWS credentials: tried the environment") {
		t.Fatalf("without credentials: %v", err)
	}
}

// Targets asks AWS at most once per PollInterval, and again right after a change.
func TestPollLimit(t *testing.T) {
	f := newFake(t)
	a := app(t, "a")
	if _, err := f.AddClassic(awsfake.Classic{Name: "web", Instances: map[string]string{"i-0000000a": a}, Registered: []string{"i-0000000a"}}); err != nil {
		t.Fatal(err)
	}
	e, err := NewELB(ctxFor(t), cfgFor(f, time.Hour), "web", map[string]string{a: "i-0000000a"})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if tg := lbtest.Target(t, e, a); tg.State != lb.StateHealthy {
			t.Fatalf("%+v", tg)
		}
	}
	if n := f.Calls("DescribeInstanceHealth"); n != 1 {
		t.Fatalf("20 Targets within the interval made %d calls", n)
	}
	if err := e.Detach(ctxFor(t), a); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if tg := lbtest.Target(t, e, a); tg.State != lb.StateUnused {
			t.Fatalf("after a detach without draining: %+v", tg)
		}
	}
	if n := f.Calls("DescribeInstanceHealth"); n != 2 {
		t.Fatalf("%d calls, want one more after the change", n)
	}
}

func TestTargetState(t *testing.T) {
	for _, tc := range []struct {
		state  v2types.TargetHealthStateEnum
		reason v2types.TargetHealthReasonEnum
		want   lb.State
	}{
		{v2types.TargetHealthStateEnumInitial, v2types.TargetHealthReasonEnumRegistrationInProgress, lb.StateInitial},
		{v2types.TargetHealthStateEnumHealthy, "", lb.StateHealthy},
		{v2types.TargetHealthStateEnumUnhealthy, v2types.TargetHealthReasonEnumFailedHealthChecks, lb.StateUnhealthy},
		{v2types.TargetHealthStateEnumUnhealthyDraining, v2types.TargetHealthReasonEnumFailedHealthChecks, lb.StateDraining},
		{v2types.TargetHealthStateEnumDraining, v2types.TargetHealthReasonEnumDeregistrationInProgress, lb.StateDraining},
		{v2types.TargetHealthStateEnumUnused, v2types.TargetHealthReasonEnumNotRegistered, lb.StateUnused},
		{v2types.TargetHealthStateEnumUnused, v2types.TargetHealthReasonEnumNotInUse, lb.StateUnhealthy},
		{v2types.TargetHealthStateEnumUnused, v2types.TargetHealthReasonEnumInvalidState, lb.StateUnhealthy},
		{v2types.TargetHealthStateEnumUnavailable, v2types.TargetHealthReasonEnumHealthCheckDisabled, lb.StateUnhealthy},
	} {
		if got := targetState(&v2types.TargetHealth{State: tc.state, Reason: tc.reason}); got != tc.want {
			t.Errorf("%s (%s) is %s, want %s", tc.state, tc.reason, got, tc.want)
		}
	}
}

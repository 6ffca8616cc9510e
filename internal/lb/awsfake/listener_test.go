package awsfake

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
)

// appGroups makes a target group per name, each with one app answering
// its group's name.
func appGroups(t *testing.T, f *Fake, names ...string) map[string]*Proxy {
	t.Helper()
	groups := map[string]*Proxy{}
	for _, name := range names {
		a := newApp(t, name)
		_, ps, _ := net.SplitHostPort(a.addr)
		port, _ := strconv.Atoi(ps)
		px, err := f.AddTargetGroup(TargetGroup{Name: name, TargetType: "ip", Port: port, HealthCheckPath: "/healthz",
			Registered: []Target{{ID: "127.0.0.1", Port: port}}})
		if err != nil {
			t.Fatal(err)
		}
		groups[name] = px
	}
	return groups
}

// A listener forwards to the group its default action names; the SDK's
// ModifyListener points it at another, DescribeListeners reports it, and
// requests after the change go to the new group's targets.
func TestListenerForward(t *testing.T) {
	f := newFake(t)
	groups := appGroups(t, f, "blue", "green")
	l, err := f.AddListener(Listener{TargetGroupARN: groups["blue"].ARN()})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(l.URL()); got != "200 OK blue" {
		t.Fatalf("before the switch the listener answers %q", got)
	}
	_, c := clients(f)
	forward := func() string {
		out, err := c.DescribeListeners(ctxFor(t), &elbv2.DescribeListenersInput{ListenerArns: []string{l.ARN()}})
		if err != nil || len(out.Listeners) != 1 || len(out.Listeners[0].DefaultActions) != 1 {
			t.Fatalf("describe listeners: %+v %v", out, err)
		}
		a := out.Listeners[0].DefaultActions[0]
		if a.Type != v2types.ActionTypeEnumForward || a.ForwardConfig == nil || len(a.ForwardConfig.TargetGroups) != 1 ||
			aws.ToString(a.ForwardConfig.TargetGroups[0].TargetGroupArn) != aws.ToString(a.TargetGroupArn) {
			t.Fatalf("default action %+v", a)
		}
		return aws.ToString(a.TargetGroupArn)
	}
	if got := forward(); got != groups["blue"].ARN() {
		t.Fatalf("forwards to %s, want blue's group", got)
	}
	_, err = c.ModifyListener(ctxFor(t), &elbv2.ModifyListenerInput{ListenerArn: aws.String(l.ARN()),
		DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumForward, TargetGroupArn: aws.String(groups["green"].ARN())}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := forward(); got != groups["green"].ARN() || l.Forward() != got {
		t.Fatalf("after ModifyListener it forwards to %s (%s), want green's group", got, l.Forward())
	}
	if got := get(l.URL()); got != "200 OK green" {
		t.Fatalf("after the switch the listener answers %q", got)
	}

	// A group that does not exist, an unknown listener, and an action this
	// simulation does not take are refused, changing nothing.
	var tgNotFound *v2types.TargetGroupNotFoundException
	_, err = c.ModifyListener(ctxFor(t), &elbv2.ModifyListenerInput{ListenerArn: aws.String(l.ARN()),
		DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumForward, TargetGroupArn: aws.String("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1")}}})
	if !errors.As(err, &tgNotFound) {
		t.Fatalf("an unknown group: %v", err)
	}
	var ae smithy.APIError
	_, err = c.DescribeListeners(ctxFor(t), &elbv2.DescribeListenersInput{ListenerArns: []string{l.ARN() + "0"}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "ListenerNotFound" {
		t.Fatalf("an unknown listener: %v", err)
	}
	_, err = c.ModifyListener(ctxFor(t), &elbv2.ModifyListenerInput{ListenerArn: aws.String(l.ARN()),
		DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumFixedResponse, FixedResponseConfig: &v2types.FixedResponseActionConfig{StatusCode: aws.String("503")}}}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" {
		t.Fatalf("a fixed-response action: %v", err)
	}
	if l.Forward() != groups["green"].ARN() {
		t.Fatalf("a refused change moved the listener to %s", l.Forward())
	}
}

// A ForwardConfig of two groups splits requests by weight, as AWS's
// weighted target groups do; a group weighing 0 gets none, every group at
// 0 answers 503, and out-of-range weights are refused, changing nothing.
func TestListenerWeightedGroups(t *testing.T) {
	f := newFake(t)
	groups := appGroups(t, f, "main", "canary")
	l, err := f.AddListener(Listener{TargetGroupARN: groups["main"].ARN()})
	if err != nil {
		t.Fatal(err)
	}
	_, c := clients(f)
	weigh := func(main, canary int32) error {
		_, err := c.ModifyListener(ctxFor(t), &elbv2.ModifyListenerInput{ListenerArn: aws.String(l.ARN()),
			DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumForward, ForwardConfig: &v2types.ForwardActionConfig{
				TargetGroups: []v2types.TargetGroupTuple{
					{TargetGroupArn: aws.String(groups["main"].ARN()), Weight: aws.Int32(main)},
					{TargetGroupArn: aws.String(groups["canary"].ARN()), Weight: aws.Int32(canary)},
				}}}}})
		return err
	}
	count := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			got[get(l.URL())]++
		}
		return got
	}
	if err := weigh(80, 20); err != nil {
		t.Fatal(err)
	}
	out, err := c.DescribeListeners(ctxFor(t), &elbv2.DescribeListenersInput{ListenerArns: []string{l.ARN()}})
	if err != nil {
		t.Fatal(err)
	}
	a := out.Listeners[0].DefaultActions[0]
	if a.TargetGroupArn != nil || a.ForwardConfig == nil || len(a.ForwardConfig.TargetGroups) != 2 ||
		aws.ToInt32(a.ForwardConfig.TargetGroups[1].Weight) != 20 {
		t.Fatalf("described as %+v, want a ForwardConfig of two groups and no TargetGroupArn", a)
	}
	if got := count(100); got["200 OK canary"] != 20 || got["200 OK main"] != 80 {
		t.Fatalf("at weights 80:20 the answers were %v, want 20 from the canary", got)
	}
	if err := weigh(1, 0); err != nil {
		t.Fatal(err)
	}
	if got := count(50); got["200 OK main"] != 50 {
		t.Fatalf("at weights 1:0 the answers were %v, want all from main", got)
	}
	if err := weigh(0, 0); err != nil {
		t.Fatal(err)
	}
	if got := get(l.URL()); !strings.HasPrefix(got, "503") {
		t.Fatalf("with every group at weight 0 the listener answered %q, want 503", got)
	}
	var ae smithy.APIError
	if err := weigh(1000, 1); !errors.As(err, &ae) || ae.ErrorCode() != "ValidationError" {
		t.Fatalf("weight 1000: %v, want a ValidationError", err)
	}
	if w := l.Weights(); w[groups["main"].ARN()] != 0 || w[groups["canary"].ARN()] != 0 {
		t.Fatalf("a refused change moved the weights to %v", w)
	}
}

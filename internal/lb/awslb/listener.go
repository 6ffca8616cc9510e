package awslb

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v2types "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/zerodown/zerodown/internal/lb"
)

// Listeners is the lb.Switcher of an application load balancer's blue-green:
// its live listener's default action forwards to one of two target groups,
// and ModifyListener points it at the other; a preview listener, when
// there is one, forwards to the group that is not live.
type Listeners struct {
	client        *elbv2.Client
	region        string
	live, preview string // listener ARNs; preview may be empty
	pools         [2]string
}

var _ lb.Switcher = (*Listeners)(nil)

// NewListeners returns the switcher of the live (and preview) listener
// between two target groups. It checks the credentials and that the live
// listener forwards to one of them.
func NewListeners(ctx context.Context, cfg Config, live, preview string, pools [2]string) (*Listeners, error) {
	if live == "" {
		return nil, fmt.Errorf("aws-alb: the live listener's ARN is empty")
	}
	ac, err := loadAWS(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("aws-alb listener %s: %w", live, err)
	}
	s := &Listeners{region: ac.Region, live: live, preview: preview, pools: pools}
	s.client = elbv2.NewFromConfig(ac, func(o *elbv2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	if _, err := s.Live(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// forward reads the target group a listener forwards to.
func (s *Listeners) forward(ctx context.Context, arn string) (string, error) {
	out, err := s.client.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{arn}})
	if err != nil {
		return "", explain(err, "aws-alb: describe listener "+arn, "DescribeListeners", s.region)
	}
	if len(out.Listeners) != 1 {
		return "", fmt.Errorf("aws-alb: no listener %s", arn)
	}
	acts := out.Listeners[0].DefaultActions
	if len(acts) != 1 || acts[0].Type != v2types.ActionTypeEnumForward {
		return "", fmt.Errorf("aws-alb: listener %s's default action is not a single forward: blue-green needs one forward to a target group", arn)
	}
	if tg := aws.ToString(acts[0].TargetGroupArn); tg != "" {
		return tg, nil
	}
	if fc := acts[0].ForwardConfig; fc != nil && len(fc.TargetGroups) == 1 {
		return aws.ToString(fc.TargetGroups[0].TargetGroupArn), nil
	}
	return "", fmt.Errorf("aws-alb: listener %s forwards to several target groups by weight: blue-green needs one", arn)
}

// Live is the target group the live listener forwards to.
func (s *Listeners) Live(ctx context.Context) (string, error) {
	tg, err := s.forward(ctx, s.live)
	if err != nil {
		return "", err
	}
	if tg != s.pools[0] && tg != s.pools[1] {
		return "", fmt.Errorf("aws-alb: listener %s forwards to target group %s, which is neither %s nor %s", s.live, tg, s.pools[0], s.pools[1])
	}
	return tg, nil
}

// SwitchLive points the live listener at pool, then the preview listener
// at the other group.
func (s *Listeners) SwitchLive(ctx context.Context, pool string) error {
	other, err := lb.OtherPool(s.pools, pool)
	if err != nil {
		return fmt.Errorf("aws-alb: %w", err)
	}
	if err := s.point(ctx, s.live, pool); err != nil {
		return err
	}
	if s.preview != "" {
		if err := s.point(ctx, s.preview, other); err != nil {
			return fmt.Errorf("live traffic switched to %s, but the preview was not: %w", pool, err)
		}
	}
	return nil
}

func (s *Listeners) point(ctx context.Context, listener, tg string) error {
	_, err := s.client.ModifyListener(ctx, &elbv2.ModifyListenerInput{
		ListenerArn:    aws.String(listener),
		DefaultActions: []v2types.Action{{Type: v2types.ActionTypeEnumForward, TargetGroupArn: aws.String(tg)}},
	})
	if err != nil {
		return explain(err, "aws-alb: modify listener "+listener, "ModifyListener", s.region)
	}
	return nil
}

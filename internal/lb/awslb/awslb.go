// Package awslb drives AWS load balancers as the deploy engine's
// lb.Balancer: a classic ELB's instances (ELB) and an ELBv2 target group's
// targets (ALB, for application and network load balancers alike), through
// aws-sdk-go-v2. AWS reports no in-flight counts: a target is drained when
// AWS says it is no longer registered (unused).
package awslb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"

	"github.com/zerodown/zerodown/internal/lb"
)

// DefaultPollInterval is how often the drivers ask AWS for target health
// when Config leaves it 0: AWS throttles a faster poll, and its own
// waiters' 15 s would make every wait needlessly long.
const DefaultPollInterval = 2 * time.Second

// settleMargin is added to the waits read from AWS's settings, as AWS's
// own CodeDeploy scripts do: AWS acts on its timers with some delay.
const settleMargin = 30 * time.Second

// maxAttempts is how often the SDK tries a call that was throttled or
// failed transiently, with its exponential backoff in between.
const maxAttempts = 5

// Config is the lb section of zerodown.yaml for the AWS drivers.
type Config struct {
	Region   string // default: the standard chain's (AWS_REGION, the profile)
	Endpoint string // replaces AWS's endpoint (tests, AWS-compatible clouds)
	Profile  string // a shared-config profile; default AWS_PROFILE or default
	// PollInterval is the least time between two health reads; Targets
	// called more often answers the last read. Default DefaultPollInterval.
	PollInterval time.Duration

	// retryer replaces the SDK's standard retryer (tests shorten its backoff).
	retryer func() aws.Retryer
}

// loadAWS resolves region and credentials through the standard chain and
// proves the credentials can be had now, not at the first detach.
func loadAWS(ctx context.Context, cfg Config) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	r := cfg.retryer
	if r == nil {
		r = func() aws.Retryer { return retry.AddWithMaxAttempts(retry.NewStandard(), maxAttempts) }
	}
	opts = append(opts, config.WithRetryer(r))
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load the AWS configuration (profile %q): %w", cfg.Profile, err)
	}
	if ac.Region == "" {
		return aws.Config{}, fmt.Errorf("no AWS region: set region: in the lb section, or AWS_REGION, or region in the profile")
	}
	if _, err := ac.Credentials.Retrieve(ctx); err != nil {
		profile := cfg.Profile
		if profile == "" {
			profile = "AWS_PROFILE or default"
		}
		return aws.Config{}, fmt.Errorf("no AWS credentials: tried the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), "+
			"the shared files ~/.aws/credentials and ~/.aws/config (profile %s), web identity, SSO, and the ECS or EC2 instance role: %w", profile, err)
	}
	return ac, nil
}

// explain turns AWS's errors into what to do about them.
func explain(err error, what, action, region string) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch ae.ErrorCode() {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation":
		principal := "the caller"
		if m := principalRe.FindStringSubmatch(ae.ErrorMessage()); m != nil {
			principal = m[1]
		}
		return fmt.Errorf("%s: access denied: %s needs the permission elasticloadbalancing:%s "+
			"(docs/aws.md has the least-privilege policy): %w", what, principal, action, err)
	case "LoadBalancerNotFound":
		return fmt.Errorf("%s: there is no classic load balancer by that name in region %s (check lb name: and region:): %w", what, region, err)
	case "TargetGroupNotFound":
		return fmt.Errorf("%s: there is no such target group in region %s (check lb target_group:, the pools and region:): %w", what, region, err)
	case "ListenerNotFound":
		return fmt.Errorf("%s: there is no such listener in region %s (check lb listener:, preview_listener: and region:): %w", what, region, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

var principalRe = regexp.MustCompile(`User: (\S+) is not authorized`)

// poller answers Targets from one AWS read per interval.
type poller struct {
	mu       sync.Mutex
	interval time.Duration
	at       time.Time
	last     []lb.Target
}

// get returns the last answer if it is younger than the interval, else
// reads anew. The lock is held through the read: callers at once share it.
func (p *poller) get(ctx context.Context, read func(context.Context) ([]lb.Target, error)) ([]lb.Target, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last != nil && time.Since(p.at) < p.interval {
		return append([]lb.Target(nil), p.last...), nil
	}
	ts, err := read(ctx)
	if err != nil {
		return nil, err
	}
	p.last, p.at = ts, time.Now()
	return append([]lb.Target(nil), ts...), nil
}

// forget drops the last answer after a change, so the next Targets reads
// what the change did rather than what was before it.
func (p *poller) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = nil
}

func pollInterval(cfg Config) time.Duration {
	if cfg.PollInterval > 0 {
		return cfg.PollInterval
	}
	return DefaultPollInterval
}

// healthAdvice says how long an attach can take at worst, when that is long.
func healthAdvice(what string, threshold, interval, timeout int32) []string {
	worst := time.Duration(threshold) * time.Duration(interval+timeout) * time.Second
	if worst <= time.Minute {
		return nil
	}
	return []string{fmt.Sprintf("%s: an attach can take up to %s before AWS reports the target healthy "+
		"(healthy threshold %d × (interval %ds + timeout %ds)); fewer checks or a shorter interval make deploys faster",
		what, worst, threshold, interval, timeout)}
}

func seconds(n int32) time.Duration { return time.Duration(n) * time.Second }

func sortTargets(ts []lb.Target) {
	slices.SortFunc(ts, func(a, b lb.Target) int { return strings.Compare(a.Address, b.Address) })
}

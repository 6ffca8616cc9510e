package config

import (
	"strings"
	"testing"
	"time"
)

// blueGreenEnv is an environment "web" of zerodown lb with web-1 in pool
// blue and web-2 in pool green; extra goes under blue_green.
func blueGreenEnv(extra string) string {
	return `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100'}
    hosts:
      - {name: web-1, pool: blue, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, pool: green, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
    strategy:
      blue_green:
        pools: [blue, green]
        preview: http://127.0.0.1:8081/
` + extra
}

func TestBlueGreenDefaults(t *testing.T) {
	cfg, err := ParseDeploy("zerodown.yaml", []byte(blueGreenEnv("")))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Environments["web"]
	bg := e.Strategy.BlueGreen
	if e.Strategy.Rolling != nil {
		t.Error("a blue-green environment got a rolling strategy too")
	}
	if bg.RollbackWindow != Duration(DefaultRollbackWindow) || bg.DrainTimeout != Duration(DefaultDrainTimeout) ||
		*bg.PreviewLoad.Rate != DefaultPreviewLoadRate || bg.PreviewLoad.Duration != Duration(DefaultPreviewLoadDuration) {
		t.Errorf("defaults: %+v", bg)
	}
	if len(bg.Smoke) != 1 || bg.Smoke[0].URL != "http://127.0.0.1:8081/" || bg.Smoke[0].Status != 200 {
		t.Errorf("default smoke: %+v", bg.Smoke)
	}
	drain, health, parallel := e.Strategy.HostTimeouts()
	if drain != DefaultDrainTimeout || health != DefaultRolloutHealthTimeout || parallel != DefaultUploadParallel {
		t.Errorf("HostTimeouts: %s %s %d", drain, health, parallel)
	}
	cfg, err = ParseDeploy("zerodown.yaml", []byte(blueGreenEnv("        rollback_window: 10m\n        preview_load: {rate: 0}\n        smoke: [{url: 'http://127.0.0.1:8081/v', body_contains: ok}]\n")))
	if err != nil {
		t.Fatal(err)
	}
	bg = cfg.Environments["web"].Strategy.BlueGreen
	if bg.RollbackWindow != Duration(10*time.Minute) || *bg.PreviewLoad.Rate != 0 || len(bg.Smoke) != 1 || bg.Smoke[0].Status != 200 || bg.Smoke[0].Body != "ok" {
		t.Errorf("written: %+v", bg)
	}
}

func TestBlueGreenErrors(t *testing.T) {
	swap := func(old, new string) string { return strings.Replace(blueGreenEnv(""), old, new, 1) }
	tests := []struct{ name, doc, want string }{
		{"one pool", swap("pools: [blue, green]", "pools: [blue]"),
			"strategy.blue_green.pools: want two pools"},
		{"same pool twice", swap("pools: [blue, green]", "pools: [blue, blue]"),
			"pools[1]: the two pools are both blue"},
		{"host without a pool", swap("pool: green, ", ""),
			"hosts[1]: host web-2: pool is required under blue_green: blue or green"},
		{"host in another pool", swap("pool: green", "pool: red"),
			"hosts[1].pool: pool red is not one of strategy.blue_green.pools (blue, green)"},
		{"empty pool", swap("pool: green", "pool: blue"),
			"pools[1]: no host is in pool green"},
		{"no preview", swap("        preview: http://127.0.0.1:8081/\n", ""),
			"blue_green.preview: required"},
		{"both strategies", blueGreenEnv("      rolling: {batch: 1}\n"),
			"strategy.blue_green: rolling and blue_green are both set"},
		{"blue-green and canary", blueGreenEnv("      canary: { steps: [ { weight: 100 } ] }\n"),
			"strategy.canary: blue_green and canary are both set"},
		{"blue-green and swap", blueGreenEnv("      swap: {}\n"),
			"strategy.swap: blue_green and swap are both set"},
		{"nginx switch file is the upstream file", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: nginx, upstream_file: /etc/nginx/u.conf, switch_file: /etc/nginx/./u.conf}"),
			"lb.switch_file: is upstream_file too"},
		{"swap target on another address", strings.Replace(minimalEnv(1, ""), "target: '127.0.0.1:8101'", "target: '127.0.0.1:8101', swap_target: '127.0.0.2:8101'", 1),
			"swap_target: 127.0.0.2:8101 is not on target 127.0.0.1:8101's address"},
		{"lb.pool set", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {admin: 'http://127.0.0.1:9100', pool: hello}"),
			"lb.pool: unused under blue_green"},
		{"nginx without a switch file", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: nginx, upstream_file: /etc/nginx/u.conf}"),
			"lb.switch_file: required by blue_green on the nginx driver"},
		{"nginx with an upstream", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: nginx, upstream_file: /etc/nginx/u.conf, switch_file: /etc/nginx/bg.conf, upstream: app}"),
			"lb.upstream: unused under blue_green"},
		{"a classic ELB cannot switch", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: aws-elb, name: web, region: eu-west-1}"),
			"blue_green switches pools through the builtin, haproxy, nginx and aws-alb drivers; a classic ELB has one pool"},
		{"aws-alb pools are target groups", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: aws-alb, listener: 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/w/1/2', region: eu-west-1}"),
			`"blue" is not a target group ARN`},
		{"aws-alb without a listener", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: aws-alb, region: eu-west-1}"),
			"lb.listener: required by blue_green on the aws-alb driver"},
		{"haproxy without a map", swap("lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: haproxy, socket: /run/haproxy.sock}"),
			"lb.map: required by blue_green on the haproxy driver"},
		{"pool on a rolling host", strings.Replace(minimalEnv(1, ""), "{name: web-1,", "{name: web-1, pool: blue,", 1),
			"hosts[0].pool: a host's pool is used by strategy.blue_green only"},
		{"negative preview rate", blueGreenEnv("        preview_load: {rate: -1}\n"),
			"preview_load.rate: must not be negative"},
		{"switch outside blue-green", minimalEnv(1, "") + "pipelines:\n  p:\n    environment: web\n    stages: [{jobs: [{tasks: [{switch: {from: a, to: b}}]}]}]\n",
			"switch: environment web has no strategy.blue_green"},
		{"switch to an unknown pool", blueGreenEnv("") + "pipelines:\n  p:\n    environment: web\n    stages: [{jobs: [{tasks: [{switch: {from: blue, to: red}}]}]}]\n",
			`switch.to: want one of strategy.blue_green.pools (blue, green), not "red"`},
		{"preview load without rate", blueGreenEnv("") + "pipelines:\n  p:\n    environment: web\n    stages: [{jobs: [{tasks: [{preview-load: {url: 'http://x/', duration: 1s}}]}]}]\n",
			"preview-load.rate: want requests a second, more than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDeploy("zerodown.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			if !strings.Contains(err.Error(), "zerodown.yaml:") {
				t.Errorf("no file and line in %v", err)
			}
		})
	}
}

// The same HAProxy server name may be in each backend.
func TestBlueGreenHAProxyServers(t *testing.T) {
	doc := strings.Replace(blueGreenEnv(""), "lb: {admin: 'http://127.0.0.1:9100'}", "lb: {driver: haproxy, socket: /run/haproxy.sock, map: /etc/haproxy/bg.map}", 1)
	doc = strings.Replace(doc, "{name: web-1,", "{name: web-1, server: app,", 1)
	doc = strings.Replace(doc, "{name: web-2,", "{name: web-2, server: app,", 1)
	if _, err := ParseDeploy("zerodown.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// Every strategy gets the verify block's defaults (a panic once: the
// strategies' defaults returned before them).
func TestVerifyDefaultsUnderEveryStrategy(t *testing.T) {
	verify := "    verify: { url: 'http://127.0.0.1:8080/', rate: 10 }\n"
	docs := map[string]string{
		"blue-green": blueGreenEnv("") + verify,
		"canary":     minimalEnv(2, "    strategy: { canary: { steps: [ { weight: 10, pause: 1s }, { weight: 100 } ] } }\n") + verify,
		"swap":       strings.Replace(minimalEnv(1, ""), "target: '127.0.0.1:8101'", "target: '127.0.0.1:8101', swap_target: '127.0.0.1:8201'", 1) + verify,
		"rolling":    minimalEnv(2, "") + verify,
	}
	for name, doc := range docs {
		cfg, err := ParseDeploy("zerodown.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		v := cfg.Environments["web"].Verify
		if v.MaxFailed == nil || *v.MaxFailed != 0 || v.MaxDropped == nil {
			t.Errorf("%s: verify defaults %+v", name, v)
		}
	}
}

func TestALBCanary(t *testing.T) {
	const (
		mainTG   = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/main/0123456789abcdef"
		canaryTG = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/canary/0123456789abcdef"
		listener = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/web/1/2"
		verify   = "    verify: { url: 'http://127.0.0.1:8080/', rate: 10 }\n"
	)
	// Environment web: three hosts, a canary of one, behind lb.
	alb := func(keys string) string {
		return strings.Replace(minimalEnv(3, "    strategy: { canary: { steps: [ { weight: 10, pause: 1s }, { weight: 100 } ] } }\n"),
			"lb: {admin: 'http://127.0.0.1:9100', pool: hello}", "lb: {"+keys+"}", 1)
	}
	good := alb("driver: aws-alb, target_group: '"+mainTG+"', canary_target_group: '"+canaryTG+"', listener: '"+listener+"'") + verify
	cfg, err := ParseDeploy("zerodown.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if lb := cfg.Environments["web"].LB; lb.CanaryTargetGroup != canaryTG || lb.Listener != listener {
		t.Errorf("lb: %+v", lb)
	}
	tests := []struct{ name, doc, want string }{
		{"no canary group", alb("driver: aws-alb, target_group: '"+mainTG+"', listener: '"+listener+"'") + verify,
			"lb.canary_target_group: required by canary on the aws-alb driver"},
		{"no listener", alb("driver: aws-alb, target_group: '"+mainTG+"', canary_target_group: '"+canaryTG+"'") + verify,
			"lb.listener: required by canary on the aws-alb driver"},
		{"no verifier", alb("driver: aws-alb, target_group: '" + mainTG + "', canary_target_group: '" + canaryTG + "', listener: '" + listener + "'"),
			"strategy.canary: on the aws-alb driver the canary is compared on the load verifier's answers only"},
		{"one group for both", alb("driver: aws-alb, target_group: '"+mainTG+"', canary_target_group: '"+mainTG+"', listener: '"+listener+"'") + verify,
			"lb.canary_target_group: the same group as target_group"},
		{"not an ARN", alb("driver: aws-alb, target_group: '"+mainTG+"', canary_target_group: canary, listener: '"+listener+"'") + verify,
			`lb.canary_target_group: "canary" is not a target group ARN`},
		{"canary group without a canary", strings.Replace(minimalEnv(2, ""), "lb: {admin: 'http://127.0.0.1:9100', pool: hello}",
			"lb: {driver: aws-alb, target_group: '"+mainTG+"', canary_target_group: '"+canaryTG+"'}", 1),
			"lb.canary_target_group: used by strategy.canary only"},
		{"canary group on haproxy", strings.Replace(minimalEnv(2, ""), "lb: {admin: 'http://127.0.0.1:9100', pool: hello}",
			"lb: {driver: haproxy, socket: /run/haproxy.sock, canary_target_group: '"+canaryTG+"'}", 1),
			"lb.canary_target_group: canary_target_group is a key of the aws-alb driver"},
		{"canary on a classic ELB", alb("driver: aws-elb, name: web, region: eu-west-1") + verify,
			"canary shifts traffic by weight through the builtin, haproxy and aws-alb drivers; the aws-elb driver cannot yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDeploy("zerodown.yaml", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "zerodown.yaml:") {
				t.Errorf("got:\n%v\nwant it to contain zerodown.yaml: and:\n%s", err, tt.want)
			}
		})
	}
}

package config

import (
	"strings"
	"testing"
)

const sshHostsHead = `app: {run: [./hello]}
environments:
  web:
    lb: {admin: http://127.0.0.1:9100, pool: hello, token: ` + deployTestToken + `}
`

func TestSSHHosts(t *testing.T) {
	cfg, err := ParseDeploy("/etc/zd/zerodown.yaml", []byte(sshHostsHead+`    ssh: { user: deploy, identity: keys/id, proxy_jump: bastion.example.com:2222 }
    hosts:
      - { name: web-1, ssh: 10.0.1.11, target: 10.0.1.11:8080 }
      - { name: web-2, ssh: "ops@[fd00::2]:2200", agent: "http://127.0.0.1:7102", target: "[fd00::2]:8080" }
`))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Environments["web"]
	if e.SSH.Port != 22 || e.SSH.Dir != ".zerodown" || e.SSH.Identity != "/etc/zd/keys/id" || !strings.HasSuffix(e.SSH.KnownHosts, "/.ssh/known_hosts") {
		t.Errorf("ssh block %+v", e.SSH)
	}
	for i, want := range []struct {
		dest  string
		agent string
		port  int
	}{{"deploy@10.0.1.11:22", DefaultSSHAgent, 7101}, {"ops@[fd00::2]:2200", "http://127.0.0.1:7102", 7102}} {
		h := &e.Hosts[i]
		d, err := e.SSHDestination(h)
		if err != nil || d.String() != want.dest || h.Agent != want.agent || h.AgentPort() != want.port {
			t.Errorf("host %d: %v %v agent %s port %d", i, d, err, h.Agent, h.AgentPort())
		}
		if h.Token != "" || h.TokenFile != "" {
			t.Errorf("host %d inherited a token", i)
		}
	}
}

func TestSSHHostErrors(t *testing.T) {
	for _, tt := range []struct{ name, hosts, want string }{
		{"bad destination", `    hosts: [{name: web-1, ssh: "deploy@", target: 10.0.1.11:8080}]`, "hosts[0].ssh: invalid SSH destination"},
		{"bad port", `    hosts: [{name: web-1, ssh: "10.0.1.11:99999", target: 10.0.1.11:8080}]`, "port \"99999\" is not 1-65535"},
		{"agent beyond loopback", `    hosts: [{name: web-1, ssh: 10.0.1.11, agent: "http://10.0.1.11:7101", target: 10.0.1.11:8080}]`, "hosts[0].agent: over SSH the agent listens on the host's loopback"},
		{"token over ssh", `    hosts: [{name: web-1, ssh: 10.0.1.11, token: abcdefghijklmnopqrstu, target: 10.0.1.11:8080}]`, "needs no token"},
		{"ssh and exec", `    hosts: [{name: web-1, ssh: 10.0.1.11, exec: {deploy: [./d.sh]}, target: 10.0.1.11:8080}]`, "exec and ssh are both set"},
		{"bad jump", "    ssh: {proxy_jump: \"a:b:c\"}\n" + `    hosts: [{name: web-1, ssh: 10.0.1.11, target: 10.0.1.11:8080}]`, "ssh.proxy_jump: invalid SSH destination"},
		{"exec without deploy", `    hosts: [{name: web-1, exec: {status: [./v.sh]}, target: 10.0.1.11:8080}]`, "hosts[0].exec.deploy: required"},
		{"two agents on one port", `    hosts: [{name: web-1, ssh: "a@10.0.1.11", target: 10.0.1.11:8080}, {name: web-2, ssh: "b@10.0.1.11:22", target: 10.0.1.11:8081}]`, "hosts[1].agent: the agent of 10.0.1.11 on port 7101 is also web-1's"},
		{"exec with agent", `    hosts: [{name: web-1, agent: "http://10.0.0.1:7101", exec: {deploy: [./d.sh]}, target: 10.0.1.11:8080}]`, "an exec host has no agent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("USER", "deploy")
			_, err := ParseDeploy("zerodown.yaml", []byte(sshHostsHead+tt.hosts+"\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "zerodown.yaml:") {
				t.Errorf("got %v\nwant %q", err, tt.want)
			}
		})
	}
}

func TestParseDestination(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Destination
		bad  bool
	}{
		{"10.0.1.11", Destination{Host: "10.0.1.11"}, false},
		{"deploy@web-1.internal:2222", Destination{User: "deploy", Host: "web-1.internal", Port: 2222}, false},
		{"[::1]:22", Destination{Host: "::1", Port: 22}, false},
		{"user@", Destination{}, true},
		{"@host", Destination{}, true},
		{"host:", Destination{}, true},
		{"host:0", Destination{}, true},
		{"a b", Destination{}, true},
		{"", Destination{}, true},
	} {
		got, err := ParseDestination(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("%q: %+v, %v", tt.in, got, err)
		}
	}
}

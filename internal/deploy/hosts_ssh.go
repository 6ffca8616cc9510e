package deploy

import (
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/sshagent"
	"github.com/zerodown/zerodown/internal/sshhost"
)

// SSHHost is how host h of env is reached over SSH.
func SSHHost(env *config.Environment, h *config.Host) (*sshhost.Host, sshagent.Layout, error) {
	dest, err := env.SSHDestination(h)
	if err != nil {
		return nil, sshagent.Layout{}, err
	}
	cfg := sshhost.Config{
		Name: h.Name, Dest: dest, Identity: env.SSH.Identity, KnownHosts: env.SSH.KnownHosts,
		KeepAlive: time.Duration(env.SSH.KeepAlive), Timeout: time.Duration(env.SSH.Timeout),
	}
	if env.SSH.ProxyJump != "" {
		j, err := config.ParseDestination(env.SSH.ProxyJump)
		if err != nil {
			return nil, sshagent.Layout{}, err
		}
		if j.User == "" {
			j.User = dest.User
		}
		if j.Port == 0 {
			j.Port = config.DefaultSSHPort
		}
		cfg.Jump = &j
	}
	return sshhost.New(cfg), sshagent.Layout{Dir: env.SSH.Dir, Port: h.AgentPort()}, nil
}

// sshDeployer is the client of the host's agent, reached through an SSH
// connection to the host.
func sshDeployer(env *config.Environment, h *config.Host) (host.Deployer, func(), error) {
	conn, layout, err := SSHHost(env, h)
	if err != nil {
		return nil, nil, err
	}
	return sshagent.New(conn, layout, h.Agent), func() { conn.Close() }, nil
}

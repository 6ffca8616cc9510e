package deploy

import (
	"errors"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// sshDeployer is the client of the host's agent, reached through an SSH
// connection to the host.
func sshDeployer(env *config.Environment, h *config.Host) (host.Deployer, func(), error) {
	return nil, nil, errors.New("ssh hosts are not built yet")
}

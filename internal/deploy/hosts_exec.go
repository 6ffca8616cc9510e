package deploy

import (
	"errors"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// execDeployer drives a host with the user's deploy scripts.
func execDeployer(env *config.Environment, h *config.Host) (host.Deployer, error) {
	return nil, errors.New("exec hosts are not built yet")
}

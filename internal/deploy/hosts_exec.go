package deploy

import (
	"path/filepath"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/exechost"
)

// execDeployer drives a host with the user's deploy scripts. Its releases
// go to artifacts, shared by the environment's exec hosts, and its record
// of what it deployed lives beside the journal, for a rollback by a later
// zerodown.
func execDeployer(cfg *config.Deploy, env *config.Environment, h *config.Host, artifacts *exechost.Artifacts) (*exechost.Deployer, error) {
	return exechost.New(exechost.Config{
		Host:      h.Name,
		Exec:      *h.Exec,
		Artifacts: artifacts,
		Record:    filepath.Join(ExecRecordDir(cfg), env.Name, h.Name+".json"),
	})
}

// ArtifactDir is where releases are stored for exec hosts' scripts:
// beside the journal.
func ArtifactDir(cfg *config.Deploy) string {
	return filepath.Join(filepath.Dir(cfg.State), "artifacts")
}

// ExecRecordDir is where exec hosts' records are, one directory per
// environment: beside the journal.
func ExecRecordDir(cfg *config.Deploy) string {
	return filepath.Join(filepath.Dir(cfg.State), "exec-hosts")
}

// Unskippable are the hosts of env a deploy never skips, though they may
// run the version already: exec hosts without a status script to ask.
func Unskippable(env *config.Environment) []string {
	var out []string
	for _, h := range env.Hosts {
		if h.Exec != nil && len(h.Exec.Status) == 0 {
			out = append(out, h.Name)
		}
	}
	return out
}

package proctest

import "github.com/zerodown/zerodown/internal/reaper"

// KillUnder kills every process, with its process group, whose working
// directory is under root: the apps and hooks an agent started, which
// outlive the agent by design; the cgroups the agent made for them go too.
func KillUnder(root string) { reaper.KillUnder(root) }

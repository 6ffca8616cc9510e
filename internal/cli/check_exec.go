package cli

import (
	"fmt"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// fromExec fills in what check reports of an exec host: what its status
// script says, or that it has none. Whether its app runs and is healthy,
// only the load balancer tells. It returns the problem to report, if any.
func (hr *checkHost) fromExec(h config.Host, st host.Status, err error) string {
	hr.checkReach = checkReach{Reachable: err == nil}
	if err != nil {
		hr.Error, hr.Exec = err.Error(), "exec host: status script failed"
		return fmt.Sprintf("%s: %v", h.Name, err)
	}
	hr.Previous = &st.Previous
	switch {
	case st.Assumed && st.Version == "":
		hr.Exec = "exec host: no status script"
	case st.Assumed:
		// Not what the host runs, only what zerodown put there last.
		hr.Exec = "exec host: no status script; zerodown deployed " + st.Version + " last"
	case st.Version == "":
		hr.Version, hr.Exec = &st.Version, "exec host: status script says no release"
	default:
		hr.Version, hr.Exec = &st.Version, "exec host: status script says "+st.Version
	}
	return ""
}

// answeredText says who answered check, for its last line.
func answeredText(hosts []checkHost) string {
	agents, execs := 0, 0
	for _, h := range hosts {
		if h.Exec != "" {
			execs++
		} else {
			agents++
		}
	}
	switch {
	case execs == 0:
		return fmt.Sprintf("the load balancer and %s answered and accepted their tokens", nounCount(agents, "agent"))
	case agents == 0:
		return fmt.Sprintf("the load balancer answered and accepted its token, and %s answered", nounCount(execs, "exec host"))
	}
	return fmt.Sprintf("the load balancer and %s answered and accepted their tokens, and %s answered", nounCount(agents, "agent"), nounCount(execs, "exec host"))
}

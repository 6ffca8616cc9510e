//go:build !unix || aix || solaris

package supervise

import (
	"context"
	"fmt"
	"runtime"
)

// Run is not supported here: the supervisor relies on Unix signals, exec
// and flock. On Windows run the agent as a service instead.
func Run(ctx context.Context, o Options) error {
	return fmt.Errorf("zerodown agent supervise is not supported on %s: run the agent under the system's service manager", runtime.GOOS)
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cloudflare/tableflip"
)

// handover passes the load balancer's listening sockets from one process
// to the next (a new binary, or the same one restarted), the way HAProxy's
// -x and Envoy's hot restart do: the new process inherits the sockets,
// starts serving, and only then does the old one stop accepting and finish
// its requests. No connection is refused in between: the sockets never
// close, and connections queued meanwhile are accepted by the new process.
type handover struct {
	upg *tableflip.Upgrader
	log *slog.Logger
}

// newHandover prepares the sockets this process inherited, if any. It
// returns nil where processes cannot pass sockets (Windows): upgrades are
// then refused with a clear error.
func newHandover(pidFile string, timeout time.Duration, log *slog.Logger) (*handover, error) {
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile, UpgradeTimeout: timeout})
	if errors.Is(err, tableflip.ErrNotSupported) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("prepare socket handover: %w", err)
	}
	return &handover{upg: upg, log: log}, nil
}

// listen returns the socket inherited for addr, or opens one that will be
// passed on. An inherited socket that no longer listens (its listener was
// removed by a reload of the old process) is replaced by a new one.
func (h *handover) listen(network, addr string) (net.Listener, error) {
	ln, err := h.upg.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	if listening(ln) {
		return ln, nil
	}
	ln.Close()
	return h.upg.Listen(network, addr)
}

// previous is closed once the process this one took over from has exited,
// or after bound; nil when this process took over from none.
func (h *handover) previous(bound time.Duration) <-chan struct{} {
	if !h.upg.HasParent() {
		return nil
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if err := h.upg.WaitForParent(ctx); err != nil {
			h.log.Warn("the previous process did not exit in time; its detached targets are reported unused all the same", "waited", bound, "err", err)
		}
	}()
	return gone
}

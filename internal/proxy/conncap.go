package proxy

import (
	"net"
	"sync"
)

// fdsPerConn is what one proxied client connection may hold open: its own
// socket and one toward a target.
const fdsPerConn = 2

// fdReserve is kept for listeners, idle upstream connections, health
// checks, the admin API and files.
const fdReserve = 256

// connCap lowers the configured connection cap to what the open-files
// limit can serve, so the cap, not EMFILE, is what stops new connections.
func (s *Server) connCap(configured int) int {
	limit, ok := openFilesLimit()
	if !ok {
		return configured
	}
	fit := int((limit - fdReserve) / fdsPerConn)
	if fit < 1 {
		fit = 1
	}
	if fit < configured {
		s.log.Info("client.max_conns lowered to fit the open-files limit",
			"configured", configured, "max_conns", fit, "open_files_limit", limit)
		return fit
	}
	return configured
}

// cappedListener applies the connection caps to listeners served by
// net/http (HTTPS): a slot is taken before Accept and given back when the
// connection closes.
type cappedListener struct {
	net.Listener
	slots, global connSlots
	done          chan struct{}
	closeOnce     sync.Once
}

func (l *cappedListener) Accept() (net.Conn, error) {
	for _, sl := range []connSlots{l.slots, l.global} {
		if sl == nil {
			continue
		}
		select {
		case sl <- struct{}{}:
		case <-l.done:
			if sl == l.global {
				l.slots.release()
			}
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.global.release()
		l.slots.release()
		return nil, err
	}
	return &cappedConn{Conn: c, l: l}, nil
}

func (l *cappedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type cappedConn struct {
	net.Conn
	l    *cappedListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.global.release()
		c.l.slots.release()
	})
	return err
}

package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// tunnel is an upgraded connection (WebSocket) relayed byte for byte. It
// counts as one request in flight until either side closes.
type tunnel struct {
	client, upstream net.Conn
	once             sync.Once
}

func (tn *tunnel) close() {
	tn.once.Do(func() {
		tn.client.Close()
		tn.upstream.Close()
	})
}

// tunnel relays the 101 answer and then both directions until one ends.
func (h *handler) tunnel(w http.ResponseWriter, t *target, c *upConn) (outcome, int, error) {
	t.forget(c)
	clientConn, clientBuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		c.conn.Close()
		t.pool.srv.log.Warn("cannot take over the client connection for a WebSocket", "err", err)
		writeError(w, http.StatusInternalServerError, "the connection cannot be upgraded")
		return done, http.StatusInternalServerError, nil
	}
	_ = clientConn.SetDeadline(time.Time{})
	_ = c.conn.SetDeadline(time.Time{})
	tn := &tunnel{client: clientConn, upstream: c.conn}
	t.mu.Lock()
	t.sockets[tn] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.sockets, tn)
		t.mu.Unlock()
		tn.close()
	}()

	hd := &c.head
	bw := clientBuf.Writer
	bw.WriteString(hd.StatusLine)
	bw.WriteString("\r\n")
	for _, f := range hd.Fields {
		bw.WriteString(f.Key)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return done, http.StatusSwitchingProtocols, nil
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		pipe(c.conn, clientBuf.Reader)
		tn.close()
	}()
	go func() {
		defer wg.Done()
		pipe(clientConn, c.br)
		tn.close()
	}()
	wg.Wait()
	return done, http.StatusSwitchingProtocols, nil
}

// pipe copies until either side fails; buffered bytes go first because src
// reads through the buffer.
func pipe(dst net.Conn, src *bufio.Reader) {
	_, _ = io.Copy(dst, src)
}

package sampleapp

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
)

func (a *app) websocket(w http.ResponseWriter, r *http.Request) {
	// Through a load balancer the Origin rarely matches Host; this is a test
	// fixture, not something a browser should trust.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client already
	}
	if !a.trackWebSocket(c) {
		_ = c.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer a.untrackWebSocket(c)
	c.SetReadLimit(maxSize)
	ctx := context.Background()
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			// Closed by either side; CloseNow is a no-op on a closed conn.
			_ = c.CloseNow()
			return
		}
		wr, err := c.Writer(ctx, typ)
		if err != nil {
			_ = c.CloseNow()
			return
		}
		if _, err := io.Copy(wr, rd); err != nil {
			_ = c.CloseNow()
			return
		}
		if err := wr.Close(); err != nil {
			_ = c.CloseNow()
			return
		}
	}
}

func (a *app) trackWebSocket(c *websocket.Conn) bool {
	a.wsMu.Lock()
	defer a.wsMu.Unlock()
	if a.wsShutdown {
		return false
	}
	a.wsConns[c] = struct{}{}
	a.wsDone.Add(1)
	return true
}

func (a *app) untrackWebSocket(c *websocket.Conn) {
	a.wsMu.Lock()
	delete(a.wsConns, c)
	a.wsMu.Unlock()
	a.wsDone.Done()
}

// closeWebSockets starts the close handshake (1001 going away) on every open
// WebSocket; the echo loops then see the close and return.
func (a *app) closeWebSockets() {
	a.wsMu.Lock()
	a.wsShutdown = true
	conns := make([]*websocket.Conn, 0, len(a.wsConns))
	for c := range a.wsConns {
		conns = append(conns, c)
	}
	a.wsMu.Unlock()
	for _, c := range conns {
		// Close blocks for the peer's answer (up to 5s), so do not hold up
		// the others.
		go func() { _ = c.Close(websocket.StatusGoingAway, "server shutting down") }()
	}
}

// waitWebSockets waits for the echo loops to end, or ctx.
func (a *app) waitWebSockets(ctx context.Context) error {
	done := make(chan struct{})
	go func() { a.wsDone.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("websockets still open: %w", ctx.Err())
	}
}

package sampleapp

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestWebSocketEcho(t *testing.T) {
	srv := httptest.NewServer(newApp(testConfig()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if v := resp.Header.Get("X-Version"); v != "v7" {
		t.Errorf("handshake X-Version %q, want v7", v)
	}
	c.SetReadLimit(1 << 20)
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, bytes.Repeat([]byte{0, 1, 2}, 100000)}, // above the library's 32KiB default limit
		{websocket.MessageText, nil},
	}
	for _, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Errorf("echo of %v %d bytes: got %v %d bytes", m.typ, len(m.data), typ, len(data))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestWebSocketClosedOnShutdown checks that shutdown says "going away" to open
// WebSockets and waits for their handlers.
func TestWebSocketClosedOnShutdown(t *testing.T) {
	a := newApp(testConfig())
	srv := httptest.NewServer(a)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	// One round trip proves the server tracks the connection.
	if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	a.closeWebSockets()
	_, _, err = c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Errorf("read after shutdown: %v (status %d), want going away", err, got)
	}
	if err := a.waitWebSockets(ctx); err != nil {
		t.Error(err)
	}
}

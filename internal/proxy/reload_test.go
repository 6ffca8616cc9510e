package proxy

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// TestReloadAddsListenerForNewPool: one reload may add a pool and a
// listener that routes to it; the new listener must be built against the
// new pools, not the running ones.
func TestReloadAddsListenerForNewPool(t *testing.T) {
	a, api := backend(t, "a"), backend(t, "api")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)

	next := testConfig(t, hostPort(a.URL))
	next.Path, next.StateFile = cfg.Path, cfg.StateFile
	addPool(next, "api", config.BalanceLeastOutstanding, hostPort(api.URL))
	// A second address of its own: "127.0.0.1:0" would name the running
	// listener again.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := free.Addr().String()
	free.Close()
	next.Listeners = append(next.Listeners, config.Listener{Name: "api", Address: apiAddr, Routes: []config.Route{{Pool: "api"}}})
	if err := srv.Reload(next); err != nil {
		t.Fatalf("reload adding a listener for a new pool: %v", err)
	}
	eventually(t, 2*time.Second, "api healthy", func() bool { return stateOf(srv, "api", hostPort(api.URL)) == "healthy" })
	addrs := srv.ListenerAddrs()
	if len(addrs) != 2 {
		t.Fatalf("listeners after reload: %v", addrs)
	}
	code, body := get(t, http.DefaultClient, "http://"+addrs[1]+"/")
	if code != 200 || body != "hello from api" {
		t.Fatalf("new listener answered %d %q", code, body)
	}
}

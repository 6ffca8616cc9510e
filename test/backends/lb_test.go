package backends

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proxy"
)

const adminToken = "backend-zoo-admin-token"

// lbYAML is a user's lb.yaml with one pool of one target. The body limit is
// above the large upload; the health check is slow enough that a loaded
// test machine does not flap the target.
const lbYAML = `listeners:
  - name: web
    address: %s
    routes:
      - { pool: app }
admin:
  address: %s
  token: %s
state_file: %s
shutdown_timeout: 5s
client:
  max_body: 16MiB
pools:
  app:
    targets: [ %s ]
    health: { path: /healthz, interval: 1s, timeout: 800ms }
    deregistration_delay: 5s
    websocket_grace: 1s
`

// startLB runs `zerodown lb` in this process in front of target, waits
// until the admin API reports the target healthy and returns the listener
// address.
func startLB(t *testing.T, target string) string {
	t.Helper()
	dir := t.TempDir()
	// The config wants real ports; ports picked free can be taken by another
	// process before the lb binds them, which fails Start clearly.
	yaml := fmt.Sprintf(lbYAML, proctest.FreeAddr(t), proctest.FreeAddr(t), adminToken, filepath.Join(dir, "lb-state.json"), target)
	listeners, _ := runLB(t, dir, yaml, map[string][]string{"app": {target}})
	return listeners[0]
}

// runLB runs `zerodown lb` in this process on the lb.yaml text yaml,
// waits until the admin API reports each pool's targets healthy, and
// returns the listener addresses, in order, and the admin address. The
// load balancer's log is shown when the test fails.
func runLB(t *testing.T, dir, yaml string, pools map[string][]string) ([]string, string) {
	t.Helper()
	path := filepath.Join(dir, "lb.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadLB(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	logs := &proctest.Buffer{}
	srv, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatalf("start lb: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("lb shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("--- lb log ---\n%s", logs.String())
		}
	})
	for pool, targets := range pools {
		for _, target := range targets {
			waitHealthy(t, srv.AdminAddr(), pool, target)
		}
	}
	return srv.ListenerAddrs(), srv.AdminAddr()
}

// waitHealthy polls the admin API until the pool's target is healthy.
func waitHealthy(t *testing.T, admin, pool, target string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for {
		state, err := targetState(c, admin, pool, target)
		if err != nil {
			last = err.Error()
		} else if state == "healthy" {
			return
		} else {
			last = "state " + state
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %s not healthy in pool %s of the lb after 15s: %s", target, pool, last)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

func targetState(c *http.Client, admin, pool, target string) (string, error) {
	req, err := http.NewRequest("GET", "http://"+admin+"/v1/pools/"+pool, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("admin API answered %s", resp.Status)
	}
	var view struct {
		Targets []struct {
			Address string `json:"address"`
			State   string `json:"state"`
		} `json:"targets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		return "", fmt.Errorf("admin API answer: %w", err)
	}
	for _, tg := range view.Targets {
		if tg.Address == target {
			return tg.State, nil
		}
	}
	return "", fmt.Errorf("target %s not in pool %s", target, pool)
}

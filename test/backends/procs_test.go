package backends

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// program finds an executable the tests need. When it is missing the test
// is skipped with the package to install, except on CI (CI set), where a
// missing program would silently drop a whole backend, so it fails.
func program(t *testing.T, pkg string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if path, err := exec.LookPath(c); err == nil {
			return path
		}
	}
	msg := fmt.Sprintf("none of %q found; install it with: apt-get install %s", candidates, pkg)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// waitReady waits until the backend answers 200 on /healthz itself, so a
// backend that cannot start is told apart from a proxy that cannot reach it.
func waitReady(t *testing.T, p *proctest.Proc, addr string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	proctest.Eventually(t, 15*time.Second, fmt.Sprintf("%s to answer 200 on http://%s/healthz", p.Name, addr), func() bool {
		if p.Exited() {
			t.Fatalf("%s exited before answering on %s:\n%s", p.Name, addr, p.Output())
		}
		resp, err := c.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

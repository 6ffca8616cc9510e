package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExecHosts: an exec host's scripts keep ${HOST}, ${VERSION} and
// ${ARTIFACT} for when they run, run beside zerodown.yaml by default with
// a 10m deadline, and a host without a status script is warned about: a
// deploy never skips it.
func TestExecHosts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "zerodown.yaml")
	doc := `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - name: web-1
        target: 10.0.1.11:8080
        exec:
          deploy:   ["./scripts/deploy.sh", "${HOST}", "${VERSION}", "${ARTIFACT}"]
          rollback: ["./scripts/rollback.sh", "${HOST}"]
          status:   ["./scripts/version.sh", "${HOST}"]
      - name: web-2
        target: 10.0.1.12:8080
        exec: {deploy: [deploy-web], dir: scripts, timeout: 90s}
`
	cfg, err := ParseDeploy(path, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	hosts := cfg.Environments["web"].Hosts
	x1, x2 := hosts[0].Exec, hosts[1].Exec
	if !slices.Equal(x1.Deploy, []string{"./scripts/deploy.sh", "${HOST}", "${VERSION}", "${ARTIFACT}"}) || x1.Dir != dir ||
		time.Duration(x1.Timeout) != DefaultExecTimeout || hosts[0].TokenFile != "" {
		t.Errorf("web-1: %+v", *x1)
	}
	if x2.Dir != filepath.Join(dir, "scripts") || time.Duration(x2.Timeout) != 90*time.Second || len(x2.Status) != 0 {
		t.Errorf("web-2: %+v", *x2)
	}
	var warned []string
	for _, w := range cfg.Warnings() {
		if strings.Contains(w, "cannot skip hosts already on the version: no exec.status") {
			warned = append(warned, w)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "environments.web.hosts[1].exec") {
		t.Fatalf("warnings %q, want one for web-2", warned)
	}
}

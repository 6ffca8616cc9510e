package proctest

import (
	"os"
	"os/exec"
	"testing"
)

// NeedProgram returns the path of an installed program a test runs (such
// as haproxy), looked up on PATH and then at the given paths (/usr/sbin is
// not on every PATH). Without it the test is skipped, except in CI, which
// installs what the tests need: there it fails.
func NeedProgram(t testing.TB, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs it)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentSuperviseCLI(t *testing.T) {
	dir := t.TempDir()
	badConfig := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(badConfig, []byte("root: /r\nport: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid, log := filepath.Join(dir, "agent.pid"), filepath.Join(dir, "agent.log")
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"help", []string{"agent", "supervise", "--help"}, ExitOK, "--pid-file string"},
		{"no pid file", []string{"agent", "supervise", "--config", badConfig, "--log", log}, ExitBadInput, `required flag(s) "pid-file" not set`},
		{"no log", []string{"agent", "supervise", "--config", badConfig, "--pid-file", pid}, ExitBadInput, `required flag(s) "log" not set`},
		{"arguments", []string{"agent", "supervise", "--pid-file", pid, "--log", log, "extra"}, ExitBadInput, "takes no arguments"},
		{"bad config", []string{"agent", "supervise", "--config", badConfig, "--pid-file", pid, "--log", log}, ExitBadInput, "agent.yaml:2:1: port: must be greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			code := Main(tt.args, &out, &out)
			if code != tt.code || !strings.Contains(out.String(), tt.out) {
				t.Fatalf("exit %d, want %d; output %q, want it to contain %q", code, tt.code, out.String(), tt.out)
			}
		})
	}
	for _, p := range []string{pid, log} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written by a command that failed", p)
		}
	}

	var out bytes.Buffer
	Main([]string{"agent", "--help"}, &out, &out)
	if strings.Contains(out.String(), "supervise") {
		t.Errorf("agent --help lists the hidden supervise:\n%s", out.String())
	}
}

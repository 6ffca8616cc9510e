package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentCLIBadInput(t *testing.T) {
	t.Setenv(envAgentToken, "")
	t.Setenv(envAgentURL, "")
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	spec := filepath.Join(dir, "app.yaml")
	badSpec := filepath.Join(dir, "bad.yaml")
	artifact := filepath.Join(dir, "hello.tar.gz")
	badConfig := filepath.Join(dir, "agent.yaml")
	for p, body := range map[string]string{
		token:     "0123456789abcdef0123456789abcdef\n",
		spec:      "run: [./hello]\n",
		badSpec:   "run: [./hello]\nhealth: {interval: 5}\n",
		artifact:  "not really",
		badConfig: "root: /r\nport: 0\n",
	} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no token", []string{"agent", "status"}, ExitBadInput, "no agent token"},
		{"bad output", []string{"agent", "status", "-o", "yaml", "--token-file", token}, ExitBadInput, "--output must be text or json"},
		{"bad url", []string{"agent", "releases", "--agent", "ftp://x", "--token-file", token}, ExitBadInput, "want http:// or https://"},
		{"upload without version", []string{"agent", "upload", artifact, "--spec", spec, "--token-file", token}, ExitBadInput, "--version is required"},
		{"upload without spec", []string{"agent", "upload", artifact, "--version", "v1", "--token-file", token}, ExitBadInput, "--spec is required"},
		{"upload with a bad spec", []string{"agent", "upload", artifact, "--version", "v1", "--spec", badSpec, "--token-file", token}, ExitBadInput, "bad.yaml:2:10: health.interval: invalid duration 5"},
		{"upload a missing file", []string{"agent", "upload", filepath.Join(dir, "nope"), "--version", "v1", "--spec", spec, "--token-file", token}, ExitBadInput, "artifact"},
		{"activate without version", []string{"agent", "activate", "--token-file", token}, ExitBadInput, "wants VERSION"},
		{"activate with a bad timeout", []string{"agent", "activate", "v1", "--timeout", "-1s", "--token-file", token}, ExitBadInput, "--timeout must be positive"},
		{"logs with too many lines", []string{"agent", "logs", "-n", "0", "--token-file", token}, ExitBadInput, "-n must be from 1"},
		{"unreachable agent", []string{"agent", "status", "--agent", "http://127.0.0.1:1", "--token-file", token, "--retry-for", "200ms"}, ExitFailed, "connection refused"},
		{"bad config", []string{"agent", "--config", badConfig}, ExitBadInput, "agent.yaml:2:1: port: must be greater than 0"},
		{"misspelt subcommand", []string{"agent", "stauts"}, ExitBadInput, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.err) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q", code, tt.code, errOut.String(), tt.err)
			}
			if strings.Contains(errOut.String(), "0123456789abcdef") {
				t.Error("the token is in the output")
			}
		})
	}
}

func TestArtifactFormat(t *testing.T) {
	for in, want := range map[string]string{
		"hello-1.4.tar.gz": "tar.gz", "HELLO.TGZ": "tar.gz", "app.zip": "zip", "hello": "file", "hello.exe": "file", "x.tar": "file",
	} {
		if got := artifactFormat(in); got != want {
			t.Errorf("artifactFormat(%q) = %q, want %q", in, got, want)
		}
	}
}

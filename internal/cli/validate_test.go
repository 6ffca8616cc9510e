package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const validDeployConfig = `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102'}
`

func writeDeployConfig(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "zerodown.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runValidate(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(append([]string{"validate"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateOK(t *testing.T) {
	path := writeDeployConfig(t, t.TempDir(), validDeployConfig)
	code, stdout, stderr := runValidate(t, "--config", path)
	if code != ExitOK || stdout != path+": ok (1 environment, 0 pipelines)\n" || stderr != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

// Rolling one host is valid, and warned about: nobody serves while it is
// out. With a swap_target the default is swap, and there is no warning.
func TestValidateWarnsRollingOneHost(t *testing.T) {
	one := `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello}
    hosts: [{name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'%s}]
`
	path := writeDeployConfig(t, t.TempDir(), fmt.Sprintf(one, ""))
	code, _, stderr := runValidate(t, "--config", path)
	if code != ExitOK || !strings.Contains(stderr, "warning: "+path+": environments.web.strategy: a rolling deploy of a single host") {
		t.Errorf("exit %d\nstderr %q", code, stderr)
	}
	path = writeDeployConfig(t, t.TempDir(), fmt.Sprintf(one, ", swap_target: '127.0.0.1:8102'"))
	if code, _, stderr := runValidate(t, "--config", path); code != ExitOK || stderr != "" {
		t.Errorf("with a swap_target: exit %d\nstderr %q", code, stderr)
	}
}

func TestValidateExample(t *testing.T) {
	t.Setenv("ZERODOWN_LB_TOKEN", "lb-token-for-tests")
	path := filepath.Join("..", "..", "examples", "zerodown.yaml")
	code, stdout, stderr := runValidate(t, "-c", path, "--skip-token-files")
	if code != ExitOK || stdout != path+": ok (2 environments, 1 pipeline)\n" || stderr != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
	// Its production fleet keeps its tokens in /etc/zerodown on the
	// machine that deploys.
	if _, err := os.Stat("/etc/zerodown"); err == nil {
		t.Skip("/etc/zerodown exists here")
	}
	code, stdout, stderr = runValidate(t, "-c", path)
	want := path + `:31:7: environments.production.lb.token_file: /etc/zerodown/lb-admin.token does not exist
` + path + `:33:7: environments.production.agents.token_file: /etc/zerodown/agent.token does not exist
zerodown: ` + path + `: 2 problems
`
	if code != ExitBadInput || stdout != "" || stderr != want {
		t.Errorf("exit %d\nstdout %q\nstderr:\n%s\nwant:\n%s", code, stdout, stderr, want)
	}
}

// TestValidateTokenFiles: token files are found beside zerodown.yaml from
// any working directory, and one that is missing or empty is a problem at
// its key, with the path it resolved to.
func TestValidateTokenFiles(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "deploy")
	if err := os.MkdirAll(filepath.Join(cfgDir, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"secrets/lb.token": "lb\n", "secrets/agents.token": "agents\n", "empty.token": "\n"} {
		if err := os.WriteFile(filepath.Join(cfgDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc := func(hostToken string) string {
		return `app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token_file: secrets/lb.token}
    agents: {token_file: secrets/agents.token}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102', token_file: ` + hostToken + `}
`
	}
	t.Chdir(dir)
	path := filepath.Join("deploy", "zerodown.yaml")

	writeDeployConfig(t, cfgDir, doc("secrets/agents.token"))
	code, stdout, stderr := runValidate(t, "-c", path)
	if code != ExitOK || stdout != path+": ok (1 environment, 0 pipelines)\n" || stderr != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}

	abs, err := filepath.Abs(cfgDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, problem string }{
		{"missing.token", filepath.Join(abs, "missing.token") + " does not exist"},
		{"empty.token", filepath.Join(abs, "empty.token") + " is empty"},
		{"secrets", filepath.Join(abs, "secrets") + " is a directory, not a token file"},
	} {
		writeDeployConfig(t, cfgDir, doc(tt.file))
		code, stdout, stderr := runValidate(t, "-c", path)
		want := path + ":8:81: environments.web.hosts[1].token_file: " + tt.problem + "\nzerodown: " + path + ": 1 problem\n"
		if code != ExitBadInput || stdout != "" || stderr != want {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q\nwant   %q", tt.file, code, stdout, stderr, want)
		}
		if code, _, _ := runValidate(t, "-c", path, "--skip-token-files"); code != ExitOK {
			t.Errorf("%s: --skip-token-files: exit %d", tt.file, code)
		}
	}
}

func TestValidateDefaultPath(t *testing.T) {
	dir := t.TempDir()
	writeDeployConfig(t, dir, validDeployConfig)
	t.Chdir(dir)
	code, stdout, stderr := runValidate(t)
	if code != ExitOK || stdout != "zerodown.yaml: ok (1 environment, 0 pipelines)\n" || stderr != "" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

func TestValidateProblems(t *testing.T) {
	dir := t.TempDir()
	path := writeDeployConfig(t, dir, `app: {run: [./hello]}
environments:
  web:
    lb: {driver: nginx, upstream_file: up.conf}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-1, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8101'}
pipelines:
  by-hand:
    environment: web
    stages: [{name: one, jobs: [{tasks: [{detach: web-9}]}]}]
`)
	code, stdout, stderr := runValidate(t, "--config", path)
	want := path + `:4:5: environments.web.lb.upstream: required by the nginx driver: the name of the upstream block in upstream_file, such as app
` + path + `:7:10: environments.web.hosts[1].name: duplicate host name web-1 (also environments.web.hosts[0].name)
` + path + `:7:55: environments.web.hosts[1].target: duplicate target 127.0.0.1:8101 (also environments.web.hosts[0].target)
` + path + `:11:43: pipelines.by-hand.stages[0].jobs[0].tasks[0].detach: unknown host "web-9" (hosts of web: web-1)
zerodown: ` + path + `: 4 problems
`
	if code != ExitBadInput || stdout != "" || stderr != want {
		t.Errorf("exit %d\nstdout %q\nstderr:\n%s\nwant:\n%s", code, stdout, stderr, want)
	}

	// More problems than Errors.Error shows: every one is printed.
	var doc strings.Builder
	doc.WriteString("app: {run: [./hello]}\nenvironments:\n")
	for i := range 25 {
		doc.WriteString("  Env" + string(rune('a'+i)) + ": {lb: {admin: 'http://x', pool: p}, hosts: [{name: h, agent: 'http://h', target: 'h:1'}]}\n")
	}
	path = writeDeployConfig(t, dir, doc.String())
	code, _, stderr = runValidate(t, "--config", path)
	if lines := strings.Count(stderr, "\n"); code != ExitBadInput || lines != 26 || !strings.HasSuffix(stderr, "zerodown: "+path+": 25 problems\n") {
		t.Errorf("exit %d, %d lines:\n%s", code, lines, stderr)
	}
}

func TestValidateBadInput(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"--config", missing}, "zerodown: read deploy config: open " + missing + ": no such file or directory\n"},
		{"argument", []string{"staging"}, `zerodown: unknown command "staging" for "zerodown validate"` + "\n"},
		{"unknown flag", []string{"--conf", "x"}, "zerodown: zerodown validate: unknown flag: --conf (see 'zerodown validate --help')\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runValidate(t, tt.args...)
			if code != ExitBadInput || stdout != "" || stderr != tt.want {
				t.Errorf("exit %d\nstdout %q\nstderr %q\nwant   %q", code, stdout, stderr, tt.want)
			}
		})
	}
}

func TestValidateHelp(t *testing.T) {
	code, stdout, _ := runValidate(t, "--help")
	for _, want := range []string{"zerodown validate [--config zerodown.yaml]", "file:line:col", "exits 2", `(default "zerodown.yaml")`, "--skip-token-files", "relative to its\ndirectory"} {
		if code != ExitOK || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, help without %q:\n%s", code, want, stdout)
		}
	}
}

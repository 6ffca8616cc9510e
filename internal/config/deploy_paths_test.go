package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles writes name → content under dir, making directories; a name
// ending in / is a directory.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// realTempDir is t.TempDir with symbolic links resolved, so that paths
// built from it compare equal to paths built from the working directory.
func realTempDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDeployPaths loads one zerodown.yaml from several working directories:
// every path of this machine in it resolves to the same file each time.
func TestDeployPaths(t *testing.T) {
	root := realTempDir(t)
	abs := filepath.Join(root, "etc", "web-3.token")
	writeFiles(t, root, map[string]string{
		"deploy/zerodown.yaml": `state: ../var/state.db
app: {run: [./hello], hooks: {before_start: [[./migrate]]}}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token_file: secrets/lb.token}
    agents: {token_file: ./secrets/agents.token}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102', token_file: web-2.token}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103', token_file: '` + abs + `'}
pipelines:
  by-hand:
    environment: web
    stages:
      - name: check
        jobs:
          - tasks:
              - exec: {command: [./smoke.sh], dir: scripts}
              - exec: {command: [./notify.sh, failed]}
                run_if: failed
                on_cancel: {exec: {command: [./undo.sh], dir: ../ops}}
`,
		"deploy/secrets/lb.token":     "lb-token\n",
		"deploy/secrets/agents.token": "agents-token-0123456789\n",
		"deploy/web-2.token":          "web-2-token-0123456789\n",
		"etc/web-3.token":             "web-3-token-0123456789\n",
		"elsewhere/deep/":             "",
	})
	in := func(rel string) string { return filepath.Join(root, rel) }
	tests := []struct {
		name, cwd, path string
	}{
		{"from the file's directory", "deploy", "zerodown.yaml"},
		{"from its parent", ".", filepath.Join("deploy", "zerodown.yaml")},
		{"from elsewhere, a relative path", filepath.Join("elsewhere", "deep"), filepath.Join("..", "..", "deploy", "zerodown.yaml")},
		{"from elsewhere, an absolute path", filepath.Join("elsewhere", "deep"), in("deploy/zerodown.yaml")},
		{"from the file's directory, a ./ path", "deploy", "./zerodown.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(in(tt.cwd))
			cfg, err := LoadDeploy(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			web := cfg.Environments["web"]
			tasks := cfg.Pipelines["by-hand"].Stages[0].Jobs[0].Tasks
			for _, c := range []struct{ what, got, want string }{
				{"state", cfg.State, in("var/state.db")},
				{"lb.token_file", web.LB.TokenFile, in("deploy/secrets/lb.token")},
				{"agents.token_file", web.Agents.TokenFile, in("deploy/secrets/agents.token")},
				{"hosts[0] (inherits agents)", web.Hosts[0].TokenFile, in("deploy/secrets/agents.token")},
				{"hosts[1].token_file", web.Hosts[1].TokenFile, in("deploy/web-2.token")},
				{"hosts[2].token_file (absolute)", web.Hosts[2].TokenFile, abs},
				{"exec dir", tasks[0].Exec.Dir, in("deploy/scripts")},
				{"exec without dir", tasks[1].Exec.Dir, in("deploy")},
				{"on_cancel exec dir", tasks[1].OnCancel.Exec.Dir, in("ops")},
				// The app's command lines are the host's: as written.
				{"app.run", cfg.App.Run[0], "./hello"},
				{"app.hooks", cfg.App.Hooks.BeforeStart[0][0], "./migrate"},
				{"exec command", tasks[0].Exec.Command[0], "./smoke.sh"},
				{"path", cfg.Path, tt.path},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if errs := cfg.CheckTokenFiles(""); len(errs) > 0 {
				t.Errorf("token files: %v", errs)
			}
		})
	}
}

func TestCheckTokenFiles(t *testing.T) {
	dir := realTempDir(t)
	writeFiles(t, dir, map[string]string{
		"good.token":       "a-token\n",
		"blank.token":      " \n\n",
		"a-directory/":     "",
		"unreadable.token": "a-token\n",
	})
	if err := os.Chmod(filepath.Join(dir, "unreadable.token"), 0); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "zerodown.yaml")
	cfg, err := ParseDeploy(path, []byte(`app: {run: [./hello]}
environments:
  web:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token_file: missing.token}
    agents: {token_file: blank.token}
    hosts:
      - {name: web-1, agent: 'http://127.0.0.1:7101', target: '127.0.0.1:8101'}
      - {name: web-2, agent: 'http://127.0.0.1:7102', target: '127.0.0.1:8102', token_file: a-directory}
      - {name: web-3, agent: 'http://127.0.0.1:7103', target: '127.0.0.1:8103', token_file: unreadable.token}
  other:
    lb: {admin: 'http://127.0.0.1:9100', pool: hello, token: inline}
    hosts:
      - &h {name: other-1, agent: 'http://127.0.0.1:7201', target: '127.0.0.1:8201', token_file: good.token}
      - {<<: *h, name: other-2, agent: 'http://127.0.0.1:7202', target: '127.0.0.1:8202', token_file: ../nowhere/x.token}
`))
	if err != nil {
		t.Fatal(err)
	}
	unreadable := path + `:9:81: environments.web.hosts[2].token_file: ` + filepath.Join(dir, "unreadable.token") + " cannot be read: permission denied\n"
	if f, err := os.Open(filepath.Join(dir, "unreadable.token")); err == nil {
		f.Close()
		unreadable = "" // root reads every file
	}
	web := path + `:4:55: environments.web.lb.token_file: ` + filepath.Join(dir, "missing.token") + ` does not exist
` + path + `:5:14: environments.web.agents.token_file: ` + filepath.Join(dir, "blank.token") + ` is empty
` + path + `:8:81: environments.web.hosts[1].token_file: ` + filepath.Join(dir, "a-directory") + ` is a directory, not a token file
` + unreadable
	other := path + `:14:91: environments.other.hosts[1].token_file: ` + filepath.Join(filepath.Dir(dir), "nowhere", "x.token") + ` does not exist
`
	for _, tt := range []struct{ env, want string }{{"web", web}, {"other", other}, {"", web + other}, {"staging", ""}} {
		got := ""
		for _, e := range cfg.CheckTokenFiles(tt.env) {
			got += e.Error() + "\n"
		}
		if got != tt.want {
			t.Errorf("CheckTokenFiles(%q):\n%s\nwant:\n%s", tt.env, got, tt.want)
		}
	}
}

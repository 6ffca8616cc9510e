package bootstrap

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/proctest"
)

func TestUnitName(t *testing.T) {
	if got := UnitName(7101); got != "zerodown-agent-7101.service" {
		t.Errorf("UnitName(7101) = %q", got)
	}
}

func unitAt(dir string) Unit {
	return Unit{Binary: dir + "/zerodown", Config: dir + "/agent.yaml", WorkingDirectory: dir}
}

func TestSystemdUnit(t *testing.T) {
	u := unitAt("/home/deploy/.zerodown/agent-7101")
	u.User = "deploy"
	want := `# Written by ` + "`zerodown hosts bootstrap`; `--upgrade`" + ` rewrites it.
[Unit]
Description=zerodown agent in /home/deploy/.zerodown/agent-7101
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
ExecStart=/home/deploy/.zerodown/agent-7101/zerodown agent --config /home/deploy/.zerodown/agent-7101/agent.yaml
WorkingDirectory=/home/deploy/.zerodown/agent-7101
User=deploy
Restart=always
RestartSec=1
# The agent makes a cgroup per app instance below its own.
Delegate=yes
# Stopping or restarting the agent leaves the app running; the next agent adopts it.
KillMode=process

[Install]
WantedBy=multi-user.target
`
	if got := SystemdUnit(u); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	u.User = ""
	if got := SystemdUnit(u); strings.Contains(got, "User=") {
		t.Errorf("a unit without a user has a User= line:\n%s", got)
	}
}

// lineOf returns the value of the first line of unit setting key.
func lineOf(unit, key string) string {
	for l := range strings.Lines(unit) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(l, "\n"), key+"="); ok {
			return v
		}
	}
	return ""
}

func TestSystemdUnitEscaping(t *testing.T) {
	tests := []struct {
		name, dir, user         string
		execStart, workDir, usr string
	}{
		{"plain", "/srv/zd/agent-1", "", "/srv/zd/agent-1/zerodown agent --config /srv/zd/agent-1/agent.yaml", "/srv/zd/agent-1", ""},
		{"not clean", "/srv//zd/./x/../agent-1/", "", "/srv/zd/agent-1/zerodown agent --config /srv/zd/agent-1/agent.yaml", "/srv/zd/agent-1", ""},
		{"space", "/srv/my apps/agent-1", "", `"/srv/my apps/agent-1/zerodown" agent --config "/srv/my apps/agent-1/agent.yaml"`, "/srv/my apps/agent-1", ""},
		{"percent", "/srv/100%n/agent-1", "", `"/srv/100%%n/agent-1/zerodown" agent --config "/srv/100%%n/agent-1/agent.yaml"`, "/srv/100%%n/agent-1", ""},
		{"dollar", "/srv/$HOME/agent-1", "", `"/srv/$HOME/agent-1/zerodown" agent --config "/srv/$$HOME/agent-1/agent.yaml"`, "/srv/$HOME/agent-1", ""},
		{"semicolon and hash", "/srv/a;b#c/agent-1", "", `"/srv/a;b#c/agent-1/zerodown" agent --config "/srv/a;b#c/agent-1/agent.yaml"`, "/srv/a;b#c/agent-1", ""},
		{"unicode", "/srv/zérø/agent-1", "", `"/srv/zérø/agent-1/zerodown" agent --config "/srv/zérø/agent-1/agent.yaml"`, "/srv/zérø/agent-1", ""},
		{"user", "/srv/zd/agent-1", "zd-agent", "/srv/zd/agent-1/zerodown agent --config /srv/zd/agent-1/agent.yaml", "/srv/zd/agent-1", "zd-agent"},
		{"uid", "/srv/zd/agent-1", "1001", "/srv/zd/agent-1/zerodown agent --config /srv/zd/agent-1/agent.yaml", "/srv/zd/agent-1", "1001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := Unit{Binary: tt.dir + "/zerodown", Config: tt.dir + "/agent.yaml", WorkingDirectory: tt.dir, User: tt.user}
			if err := u.Check(); err != nil {
				t.Fatalf("Check: %v", err)
			}
			unit := SystemdUnit(u)
			if got := lineOf(unit, "ExecStart"); got != tt.execStart {
				t.Errorf("ExecStart=%s\nwant       %s", got, tt.execStart)
			}
			if got := lineOf(unit, "WorkingDirectory"); got != tt.workDir {
				t.Errorf("WorkingDirectory=%s, want %s", got, tt.workDir)
			}
			if got := lineOf(unit, "User"); got != tt.usr {
				t.Errorf("User=%s, want %s", got, tt.usr)
			}
		})
	}
	// Arguments may hold what the program's path and the working
	// directory may not.
	if got, want := execArg(`/a\b"c'd$e%f`+"\n\t\x01", false), `"/a\\b\"c'd$$e%%f\n\t\x01"`; got != want {
		t.Errorf("execArg = %s, want %s", got, want)
	}
}

func TestUnitCheck(t *testing.T) {
	tests := []struct {
		name string
		u    Unit
		err  string
	}{
		{"relative", unitAt("zerodown/agent-1"), `the binary "zerodown/agent-1/zerodown" is not an absolute path`},
		{"empty", Unit{}, `the working directory "" is not an absolute path`},
		{"not UTF-8", unitAt("/srv/\xff/agent-1"), "is not UTF-8"},
		{"newline", unitAt("/srv/a\nb"), `the working directory "/srv/a\nb" holds a control character`},
		{"trailing backslash", Unit{Binary: "/a/zerodown", Config: "/a/agent.yaml", WorkingDirectory: `/a\`}, "ends with a backslash or a blank"},
		{"trailing blank", Unit{Binary: "/a/zerodown", Config: "/a/agent.yaml", WorkingDirectory: "/a "}, "ends with a backslash or a blank"},
		{"quotes in the binary", unitAt(`/srv/it's/agent-1`), "systemd runs no program whose path holds quotes, backslashes or control characters"},
		{"backslash in the binary", unitAt(`/srv/a\b/agent-1`), "systemd runs no program whose path"},
		{"user with a space", Unit{Binary: "/a/zerodown", Config: "/a/agent.yaml", WorkingDirectory: "/a", User: "de ploy"}, `"de ploy" is not a user name systemd accepts`},
		{"user with a percent", Unit{Binary: "/a/zerodown", Config: "/a/agent.yaml", WorkingDirectory: "/a", User: "%u"}, "is not a user name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.u.Check()
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Check: %v, want an error with %q", err, tt.err)
			}
		})
	}
}

// verify runs systemd-analyze verify on unit, written as the unit file of
// port 7101, and returns its exit code and output. It needs no running
// systemd: --man=no skips looking up the Documentation= pages, and
// --recursive-errors=no judges this unit alone, not the units it names
// (the system's own may have problems of their own). It does check that
// ExecStart's program exists and is executable.
func verify(t *testing.T, analyze, unit string) (int, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), UnitName(7101))
	if err := os.WriteFile(file, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", "--recursive-errors=no", file).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("systemd-analyze: %v", err)
	return 0, ""
}

// TestSystemdUnitVerifies has systemd itself read the units: with paths
// that need quoting and escaping, ExecStart's program must be found where
// it was made, which proves the escaping round-trips.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := proctest.NeedProgram(t, "systemd-analyze", "/usr/bin/systemd-analyze")
	base := t.TempDir()
	agentDir := func(t *testing.T, name string) string {
		dir := filepath.Join(base, name, "agent-7101")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "zerodown"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}

	for _, name := range []string{"plain", "my apps", "100%n", "$HOME", "a;b#c", "zérø", "${X} %%", "a=b,c+d@e:f"} {
		t.Run("good "+name, func(t *testing.T) {
			u := unitAt(agentDir(t, name))
			u.User = "deploy"
			code, out := verify(t, analyze, SystemdUnit(u))
			if code != 0 || strings.Contains(out, UnitName(7101)) {
				t.Errorf("systemd-analyze verify: exit %d, want 0 and nothing about the unit:\n%s\nunit:\n%s", code, out, SystemdUnit(u))
			}
		})
	}

	dir := agentDir(t, "broken dir")
	good := SystemdUnit(unitAt(dir))
	missing := filepath.Join(base, "missing", "agent-7101")
	percent := SystemdUnit(unitAt(agentDir(t, "100%n")))
	for _, tt := range []struct {
		name, unit, says string
	}{
		{"no binary", SystemdUnit(unitAt(missing)), "is not executable"},
		{"unquoted path with a space", strings.Replace(good, lineOf(good, "ExecStart"), dir+"/zerodown agent", 1), "is not executable"},
		{"a % not doubled", strings.ReplaceAll(percent, "%%n", "%n"), "zerodown-agent-7101.service/agent-7101/zerodown is not executable"},
		// What Check refuses, systemd refuses.
		{"quotes in the program's path", SystemdUnit(unitAt(agentDir(t, `a\b"c`))), "Executable name contains special characters"},
		{"comment after a value", strings.Replace(good, "KillMode=process\n", "KillMode=process  # leave the app running\n", 1), "kill mode"},
		{"unknown setting", strings.Replace(good, "Delegate=yes\n", "Delegate=yes\nDelgate=yes\n", 1), "Delgate"},
	} {
		t.Run("broken: "+tt.name, func(t *testing.T) {
			code, out := verify(t, analyze, tt.unit)
			if code == 0 || !strings.Contains(out, tt.says) {
				t.Errorf("systemd-analyze verify: exit %d, output %q; want a failure that says %q", code, out, tt.says)
			}
		})
	}
}

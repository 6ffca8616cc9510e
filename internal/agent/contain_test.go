//go:build linux

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/proctest"
)

// shellRelease is the sample app started by a shell script (run), as
// apps started by wrappers are; name tells its processes apart.
func shellRelease(t *testing.T, version, name, script string) host.Release {
	spec := helloSpec()
	spec.Run = []string{"sh", "-c", strings.ReplaceAll(script, "NAME", name)}
	return memRelease(version, host.FormatFile, "hello", helloBinary(t), spec)
}

// running lists the pids whose command line holds --name name.
func running(name string) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--name" && args[i+1] == name && processAlive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// An app whose script puts the server in a session of its own (setsid)
// is stopped whole: the preflight's copy and the app itself. On process
// groups alone the server outlived every stop, kept the port, and the
// next activation failed with "port … is taken".
func TestSetsidDaemonIsStopped(t *testing.T) {
	t.Parallel()
	if c := newContainment(containName(t.TempDir())); c.base == "" {
		t.Skipf("no cgroup for the agent here (%s): a process that leaves its group cannot be contained", c.why)
	}
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	daemon := `setsid ./hello --listen 127.0.0.1:${PORT} --name NAME & wait`
	f.upload(shellRelease(t, "v2", "setsid-v2", daemon))
	f.activate("v2") // the preflight's copy, on a spare port, is stopped first
	f.mustServe("v2")
	if pids := running("setsid-v2"); len(pids) != 1 {
		t.Fatalf("v2 runs as pids %v: want its one server (the preflight's copy stopped)", pids)
	}
	f.upload(helloRelease(t, "v3"))
	f.activate("v3")
	f.mustServe("v3")
	if pids := running("setsid-v2"); len(pids) != 0 {
		t.Fatalf("v2's server still runs as pids %v after v3 took over", pids)
	}
}

var listenerPid = regexp.MustCompile(`^pid (\d+) `)

// processGroupsOnly makes an agent contain its apps by process group, as
// where no cgroup can be made.
func processGroupsOnly(a *Agent) { a.sup.contain = &containment{why: "the test said so"} }

// An app whose leader was killed while the agent was down leaves the
// server it started holding the port: the next agent stops it and starts
// the release afresh, where it looped restarting into "address already
// in use" while the orphan answered. With cgroups and with process groups.
func TestOrphansOfADeadLeaderAreStopped(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		before []func(*Agent)
	}{{"cgroup", nil}, {"process group", []func(*Agent){processGroupsOnly}}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFixture(t, testConfig(t), tt.before...)
			if tt.before == nil && f.agent.sup.contain.base == "" {
				t.Skipf("no cgroup for the agent here: %s", f.agent.sup.contain.why)
			}
			f.upload(shellRelease(t, "v1", "orphan-v1", `./hello --listen 127.0.0.1:${PORT} --name NAME & wait`))
			f.activate("v1")
			f.mustServe("v1")
			f.stop(false) // the agent goes; the app stays
			rec, ok, err := readPidFile(f.agent.sup.pidPath)
			if err != nil || !ok {
				t.Fatalf("pid file: %v %v", ok, err)
			}
			m := listenerPid.FindStringSubmatch(whoListens(f.cfg.Port))
			if m == nil {
				t.Fatalf("nothing named as listening on the app's port: %q", whoListens(f.cfg.Port))
			}
			orphan, _ := strconv.Atoi(m[1])
			if orphan == rec.PID {
				t.Fatalf("the server is the leader (%d): the script did not start a child", orphan)
			}
			if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			proctest.Eventually(t, 5*time.Second, "the leader gone", func() bool { return !processAlive(rec.PID) })

			g := startFixture(t, f.cfg, tt.before...)
			proctest.Eventually(t, 30*time.Second, "the orphan stopped and v1 healthy again", func() bool {
				st, err := g.client.AgentStatus(ctxFor(t, 5*time.Second))
				return err == nil && !processAlive(orphan) && st.Healthy && st.Version == "v1"
			})
			g.mustServe("v1")
			if st := g.status(); st.Restarts != 0 {
				t.Errorf("the app restarted %d times (last: %s): want a clean start", st.Restarts, st.LastExit)
			}
		})
	}
}

// A pid file whose leader is gone, and whose pid now leads a stranger's
// process group (a new session takes its pid as its group), does not get
// the stranger killed: only a group holding the app's PORT and VERSION is
// the app's.
func TestStrangerWithTheLeadersPidIsLeftAlone(t *testing.T) {
	t.Parallel()
	f := startFixture(t, testConfig(t), processGroupsOnly)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	f.stop(true)
	stranger := exec.Command("sleep", "60")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })
	rec := pidRecord{PID: stranger.Process.Pid, StartID: "1", Version: "v1", Port: f.cfg.Port}
	data, _ := json.Marshal(rec)
	if err := os.WriteFile(f.agent.sup.pidPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	g := startFixture(t, f.cfg, processGroupsOnly)
	proctest.Eventually(t, 30*time.Second, "v1 running again", func() bool {
		st, err := g.client.AgentStatus(ctxFor(t, 5*time.Second))
		return err == nil && st.Healthy && st.Version == "v1"
	})
	if !processAlive(stranger.Process.Pid) {
		t.Fatal("the agent killed a stranger whose group had the dead leader's pid")
	}
}

// The app's environment is its spec's, never the agent's: a token under
// any name and the agent's systemd sockets stay with the agent, on a real
// agent starting a real process.
func TestAppInheritsNothingOfTheAgent(t *testing.T) {
	t.Setenv("MY_AGENT_TOKEN", "s3cret-agent-token")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_PID", "1")
	f := newFixture(t)
	dump := filepath.Join(t.TempDir(), "env")
	spec := helloSpec()
	spec.Env = map[string]string{"DUMP": dump, "GREETING": "hi"}
	spec.Run = []string{"sh", "-c", `env > "$DUMP"; exec ./hello --listen 127.0.0.1:${PORT} --name env`}
	f.upload(memRelease("v1", host.FormatFile, "hello", helloBinary(t), spec))
	f.activate("v1")
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	env := string(data)
	for _, leak := range []string{"s3cret-agent-token", "NOTIFY_SOCKET=", "LISTEN_FDS=", "LISTEN_PID="} {
		if strings.Contains(env, leak) {
			t.Errorf("the app's environment has %s:\n%s", leak, env)
		}
	}
	for _, want := range []string{"GREETING=hi\n", "VERSION=v1\n", "PORT=" + strconv.Itoa(f.cfg.Port) + "\n", "PATH=" + defaultPath + "\n", "HOST="} {
		if !strings.Contains(env, want) {
			t.Errorf("the app's environment lacks %q:\n%s", want, env)
		}
	}
}

// An agent running as root refuses to run an app as root unless told
// so, and says why.
func TestRunAsRootRefused(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the refusal is of root: run as root to test it")
	}
	f := newFixture(t, func(c *config.Agent) { c.AllowRoot = false })
	f.upload(helloRelease(t, "v1"))
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Failure == nil || !strings.Contains(ae.Failure.Reason, "would run as root") || !strings.Contains(ae.Failure.Reason, "allow_root: true") {
		t.Fatalf("got %v, want the activation refused for running the app as root, naming allow_root", err)
	}
}

// An app with user: runs as that user: its processes have its uid, its
// release is root's and not writable by it, its log is the agent's.
func TestAppRunsAsUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("changing the app's user takes an agent running as root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	cfg := testConfig(t, func(c *config.Agent) { c.User, c.AllowRoot = "nobody", false })
	// The app must reach its release: t.TempDir's parent is 0700.
	for _, d := range []string{filepath.Dir(cfg.Root), cfg.Root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := startFixture(t, cfg)
	out := t.TempDir()
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(out, "id")
	spec := helloSpec()
	spec.Env = map[string]string{"DUMP": dump}
	spec.Run = []string{"sh", "-c", `{ id -u; touch ./x 2>/dev/null && echo writable || echo read-only; echo "$HOME $USER"; } > "$DUMP"; exec ./hello --listen 127.0.0.1:${PORT} --name as-user`}
	f.upload(memRelease("v1", host.FormatFile, "hello", helloBinary(t), spec))
	res := f.activate("v1")
	data, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	want := nobody.Uid + "\nread-only\n" + nobody.HomeDir + " nobody\n"
	if string(data) != want {
		t.Errorf("the app saw %q, want %q (its uid, its release not writable, its HOME and USER)", data, want)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", res.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+` + nobody.Uid + `\s`).Match(status) {
		t.Errorf("the app's process is not nobody's:\n%s", status)
	}
	for _, p := range []string{f.agent.store.Dir("v1"), filepath.Join(f.agent.store.Dir("v1"), "hello"), f.agent.store.LogPath("v1")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s is uid %d mode %s: want root's, writable by root alone", p, st.Uid, fi.Mode().Perm())
		}
	}
	f.mustServe("v1")
}

// An agent.yaml user that does not exist stops the agent at start, naming
// the file, not at the first activation.
func TestUnknownUserRefusedAtStart(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, func(c *config.Agent) { c.User, c.Path = "no-such-user-zd", "/etc/zerodown/agent.yaml" })
	_, err := New(cfg, Options{Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "/etc/zerodown/agent.yaml") || !strings.Contains(err.Error(), `no user "no-such-user-zd"`) {
		t.Fatalf("got %v, want the config file and the missing user named", err)
	}
}

// An instance a killed agent lost track of (started just before its pid
// file was written) is stopped by the next agent, found by its cgroup;
// the app the pid file names is adopted and keeps running.
func TestLostInstanceIsStopped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if f.agent.sup.contain.base == "" {
		t.Skipf("no cgroup for the agent here: %s", f.agent.sup.contain.why)
	}
	f.upload(helloRelease(t, "v1"))
	app := f.activate("v1")
	f.stop(false)
	rel, err := f.agent.release("v1")
	if err != nil {
		t.Fatal(err)
	}
	lost, err := f.agent.sup.start(rel, freePort(t), "app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lost.killAll() })

	g := startFixture(t, f.cfg)
	proctest.Eventually(t, 30*time.Second, "the lost instance stopped and v1 adopted", func() bool {
		st, err := g.client.AgentStatus(ctxFor(t, 5*time.Second))
		return err == nil && !lost.alive() && st.Healthy && st.Adopted
	})
	if st := g.status(); st.PID != app.PID {
		t.Errorf("the app runs as pid %d, want the adopted %d", st.PID, app.PID)
	}
}

// Who an app runs as: the spec's user and group merge with agent.yaml's
// field by field, a spec may name only what agent.yaml allows, and gid 0
// counts as root.
func TestRunAsRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing the app's user takes an agent running as root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	nogroup, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skipf("no group %s: %v", nobody.Gid, err)
	}
	sup := &supervisor{user: "nobody", allowGroups: []string{"root", nogroup.Name}}
	tests := []struct {
		name        string
		user, group string
		uid, gid    string
		refused     string
	}{
		{"agent.yaml's", "", "", nobody.Uid, nobody.Gid, ""},
		{"a group of the spec's, agent.yaml's user", "", nogroup.Name, nobody.Uid, nogroup.Gid, ""},
		{"a user agent.yaml does not allow", "daemon", "", "", "", "which agent.yaml does not allow"},
		{"a group agent.yaml does not allow", "", "adm", "", "", "which agent.yaml does not allow"},
		{"group root is root", "", "root", "", "", "would run as root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := sup.runAs(release{spec: config.App{User: tt.user, Group: tt.group}})
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("got %+v, %v; want refused: %s", r, err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strconv.Itoa(int(r.uid)) != tt.uid || strconv.Itoa(int(r.gid)) != tt.gid {
				t.Errorf("runs as uid %d gid %d, want %s %s", r.uid, r.gid, tt.uid, tt.gid)
			}
		})
	}
}

// A release whose spec asks for a user agent.yaml does not allow is
// refused before anything runs or stops: the running release keeps
// serving.
func TestDisallowedUserRefusedUntouched(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	spec := helloSpec()
	spec.User = "daemon"
	f.upload(memRelease("v2", host.FormatFile, "hello", helloBinary(t), spec))
	_, err := f.client.ActivateWith(ctxFor(t, time.Minute), ActivateRequest{Version: "v2"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Failure == nil || ae.Failure.Touched || !strings.Contains(ae.Failure.Reason, "which agent.yaml does not allow") {
		t.Fatalf("got %v, want the activation refused, untouched, for the user", err)
	}
	f.mustServe("v1")
}

// A program named without a slash is found in the app's PATH, not the
// agent's.
func TestProgramFoundInTheAppsPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "hello-in-path"), helloBinary(t), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := helloSpec()
	spec.Run[0] = "hello-in-path"
	spec.Env = map[string]string{"PATH": bin}
	f.upload(memRelease("v1", host.FormatFile, "unused", []byte("x"), spec))
	f.activate("v1")
	f.mustServe("v1")
}

// A server a wrapper script put in a session of its own drains its
// in-flight requests when the release is stopped, though the script exits
// at the first SIGTERM: the stop waits for every process of the cgroup,
// up to stop.timeout, before it kills what is left.
func TestSetsidDaemonDrainsOnStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, withoutPreflight)
	if f.agent.sup.contain.base == "" {
		t.Skipf("no cgroup for the agent here (%s)", f.agent.sup.contain.why)
	}
	f.upload(shellRelease(t, "v1", "drain-v1", `setsid ./hello --listen 127.0.0.1:${PORT} --name NAME & wait`))
	f.activate("v1")
	type answer struct {
		status int
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := appClient.Get(f.app + "/?sleep=1s")
		if err != nil {
			got <- answer{err: err}
			return
		}
		resp.Body.Close()
		got <- answer{status: resp.StatusCode}
	}()
	// Once its connection is established, the request is the server's to
	// finish; then v1 is stopped by the activation of v2.
	proctest.Eventually(t, 5*time.Second, "the slow request's connection", func() bool { return established(f.cfg.Port) > 0 })
	f.upload(helloRelease(t, "v2"))
	f.activate("v2")
	if a := <-got; a.err != nil || a.status != 200 {
		t.Fatalf("the in-flight request to v1 ended with %d %v, want 200: the server was killed before it drained", a.status, a.err)
	}
	f.mustServe("v2")
}

// established counts the established TCP connections to local port.
func established(port int) int { return len(portSockets(port, tcpEstablished)) }

// The containment holds for servers nobody here wrote: Python's
// http.server and a Node http server, each put in a session of its own by
// its start script, serve as the release and are stopped whole when the
// next release takes the port.
func TestForeignDaemonsAreStopped(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, program, server string
	}{
		{"python", "python3", `setsid python3 -m http.server --bind 127.0.0.1 ${PORT} & wait`},
		{"node", "node", `setsid node -e "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT, '127.0.0.1')" & wait`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := exec.LookPath(tt.program); err != nil {
				t.Skipf("no %s: %v", tt.program, err)
			}
			f := newFixture(t, withoutPreflight)
			if f.agent.sup.contain.base == "" {
				t.Skipf("no cgroup for the agent here (%s)", f.agent.sup.contain.why)
			}
			spec := helloSpec()
			spec.Run = []string{"sh", "-c", tt.server}
			spec.Health.Path = "/"
			f.upload(memRelease("v1", host.FormatFile, "unused", []byte("x"), spec))
			f.activate("v1")
			m := listenerPid.FindStringSubmatch(whoListens(f.cfg.Port))
			if m == nil {
				t.Fatalf("nothing named as listening on the app's port: %q", whoListens(f.cfg.Port))
			}
			server, _ := strconv.Atoi(m[1])
			if who := whoListens(f.cfg.Port); !strings.Contains(who, "("+tt.program) {
				t.Fatalf("the port is held by %s, not %s", who, tt.program)
			}
			f.upload(helloRelease(t, "v2"))
			f.activate("v2")
			f.mustServe("v2")
			if processAlive(server) {
				t.Fatalf("%s's server (pid %d) still runs after v2 took over", tt.program, server)
			}
		})
	}
}

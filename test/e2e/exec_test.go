package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/lb"
	"github.com/zerodown/zerodown/internal/proctest"
)

// The scripts of the exec hosts: what a team that deploys by hand keeps.
// switch.sh stops the app a host dir runs (its pid file; SIGTERM, then
// until it is gone) and starts a release in the background, in a session
// of its own with its output in a file, so it outlives the script.
var execScripts = map[string]string{
	"switch.sh": `#!/bin/sh
# switch.sh DIR VERSION PORT HOST
set -eu
dir=$1 version=$2 port=$3 host=$4
[ -x "$dir/releases/$version/hello" ] || { echo "no release $version in $dir"; exit 4; }
if [ -f "$dir/app.pid" ]; then
	pid=$(cat "$dir/app.pid")
	if kill -TERM "$pid" 2>/dev/null; then
		i=0 # until it has exited (a zombie has), for at most 30s
		while [ $i -lt 600 ]; do
			state=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || echo gone)
			[ "$state" = gone ] || [ "$state" = Z ] && break
			sleep 0.05
			i=$((i+1))
		done
	fi
fi
cd "$dir/releases/$version"
setsid ./hello --listen "127.0.0.1:$port" --version "$version" --name "$host" >"$dir/app.log" 2>&1 </dev/null &
echo $! >"$dir/app.pid"
echo "$version" >"$dir/version"
echo "started $version on $host, pid $!"
`,
	"deploy.sh": `#!/bin/sh
# deploy.sh HOST VERSION ARTIFACT PORT DIR
set -eu
host=$1 version=$2 artifact=$3 port=$4 dir=$5
echo "deploying $version on $host from $(basename "$artifact")"
if [ -e "$dir/fail-$version" ]; then
	echo "$host refuses $version" >&2
	exit 3
fi
if [ -e "$dir/wait-$version" ]; then
	touch "$dir/waiting"
	i=0 # until the test says go, for at most 60s
	while [ ! -e "$dir/go" ] && [ $i -lt 1200 ]; do
		sleep 0.05
		i=$((i+1))
	done
fi
if [ -e "$dir/hang-$version" ]; then
	sleep 600 &
	echo $! >"$dir/hang.pid"
	echo "$host waits forever"
	sleep 600
fi
mkdir -p "$dir/releases/$version"
tar -xzf "$artifact" -C "$dir/releases/$version"
exec ./switch.sh "$dir" "$version" "$port" "$host"
`,
	"rollback.sh": `#!/bin/sh
# rollback.sh HOST VERSION PORT DIR: VERSION is the release the deploy
# replaced, as zerodown knows it.
set -eu
host=$1 version=$2 port=$3 dir=$4
echo "rolling $host back to $version"
exec ./switch.sh "$dir" "$version" "$port" "$host"
`,
	"status.sh": `#!/bin/sh
# status.sh DIR: the version the host runs; nothing before its first release.
cat "$1/version" 2>/dev/null || true
`,
}

// execFleet is three exec hosts behind zerodown lb: each a directory the
// scripts deploy the sample app into, and a port.
type execFleet struct {
	t     *testing.T
	dir   string
	lb    *lbFixture
	hosts []execHost
	art   string
}

type execHost struct {
	name, dir string
	port      int
}

func (h execHost) target() string { return fmt.Sprintf("127.0.0.1:%d", h.port) }

func startExecFleet(t *testing.T) *execFleet {
	t.Helper()
	f := &execFleet{t: t, dir: t.TempDir()}
	// The apps the scripts start outlive them by design; the test ends
	// them, before its directory goes.
	t.Cleanup(func() { proctest.KillUnder(f.dir) })
	for name, body := range execScripts {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var targets []string
	for i := 1; i <= 3; i++ {
		h := execHost{name: fmt.Sprintf("web-%d", i), dir: filepath.Join(f.dir, "hosts", fmt.Sprintf("web-%d", i)), port: proctest.FreePort(t)}
		if err := os.MkdirAll(h.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f.hosts = append(f.hosts, h)
		targets = append(targets, h.target())
	}
	f.lb = startLBHealth(t, f.dir, slowHealth, targets...)
	f.art = helloTarGz(t)
	return f
}

// config writes zerodown.yaml with each script's deadline timeout.
func (f *execFleet) config(name, timeout string) string {
	f.t.Helper()
	var hosts strings.Builder
	for _, h := range f.hosts {
		fmt.Fprintf(&hosts, `      - name: %s
        target: %q
        exec:
          deploy: [./deploy.sh, "${HOST}", "${VERSION}", "${ARTIFACT}", "%d", %q]
          rollback: [./rollback.sh, "${HOST}", "${VERSION}", "%d", %q]
          status: [./status.sh, %q]
          timeout: %s
`, h.name, h.target(), h.port, h.dir, h.port, h.dir, h.dir, timeout)
	}
	cfg := fmt.Sprintf(appYAML, "", filepath.Join(f.dir, "state", "state.db")) + fmt.Sprintf(`environments:
  staging:
    lb: { driver: builtin, admin: %s, pool: hello, token_file: %s }
    hosts:
%s    strategy:
      rolling: { min_healthy: 1, drain_timeout: 30s, health_timeout: 20s }
`, f.lb.admin, filepath.Join(f.lb.dir, "admin.token"), hosts.String())
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// onVersion checks that every host's app answers version and that the
// balancer reports it healthy.
func (f *execFleet) onVersion(version string) {
	f.t.Helper()
	for _, h := range f.hosts {
		if v, err := appVersion("http://" + h.target()); err != nil || v != version {
			f.t.Fatalf("%s answers %q (%v), want %s", h.name, v, err, version)
		}
		f.lb.waitState(f.t, h.target(), lb.StateHealthy, 20*time.Second)
	}
}

var runIDIn = regexp.MustCompile(`run (r-[0-9a-z-]+)`)

// TestExecHostsEndToEnd: three hosts deployed by the user's own scripts
// (they unpack the artifact, stop the running app, start the new one)
// behind zerodown lb, under GET and slow POST load: a rolling deploy, a
// re-run that finds nothing to do, `zerodown rollback` of it by another
// process, a script failing on the second host (the first rolls back by
// its rollback script), a script that hangs past exec.timeout, killed
// with its child, and a deploy killed during a script and resumed: not
// one request fails.
func TestExecHostsEndToEnd(t *testing.T) {
	t.Parallel()
	f := startExecFleet(t)
	cfg := f.config("zerodown.yaml", "30s")

	out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v1", "--artifact", f.art, "-c", cfg, "-o", "log")
	if code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	f.onVersion("v1")

	l := startLoad(f.lb.url, 50, 20000, 3*time.Minute)
	posts := startSlowPosts(f.lb.url, 2, 3*time.Minute)
	defer l.finish()
	defer posts.finish()
	checkLoad := func(phase, log string) {
		t.Helper()
		if l.failed.Load() != 0 || posts.failed.Load() != 0 {
			t.Fatalf("%s: GET %s; POST %d failed %v\n%s", phase, l.report(), posts.failed.Load(), posts.failures, log)
		}
	}

	out, code = zerodownWhile(t, nil, "deploy", "staging", "--version", "v2", "--artifact", f.art, "-c", cfg, "-o", "log")
	if code != 0 {
		t.Fatalf("deploy v2: exit %d\n%s", code, out)
	}
	f.onVersion("v2")
	checkLoad("v1 → v2", out)
	m := runIDIn.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no run id in\n%s", out)
	}
	v2Run := m[1]
	show, code := zerodownWhile(t, nil, "show", v2Run, "-c", cfg)
	for _, want := range []string{"deploy script ./deploy.sh: exit status 0 after", "| deploying v2 on web-2 from hello.tar.gz", "| started v2 on web-3, pid "} {
		if code != 0 || !strings.Contains(show, want) {
			t.Fatalf("show %s: exit %d, no %q:\n%s", v2Run, code, want, show)
		}
	}
	if out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v2", "--artifact", f.art, "-c", cfg); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("re-run of v2: exit %d\n%s", code, out)
	}

	// Another process rolls the run back: what each deploy replaced is
	// in zerodown's record, and the rollback script gets it.
	out, code = zerodownWhile(t, nil, "rollback", v2Run, "-c", cfg, "-o", "log")
	if code != 0 || !strings.Contains(out, "rolling web-1 back to v1") {
		t.Fatalf("rollback %s: exit %d\n%s", v2Run, code, out)
	}
	f.onVersion("v1")
	checkLoad("rollback of v2", out)

	t.Run("a script failing on web-2 rolls back", func(t *testing.T) {
		marker := filepath.Join(f.hosts[1].dir, "fail-v3")
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v3", "--artifact", f.art, "-c", cfg, "-o", "log")
		if code != 1 || !strings.Contains(out, "rolled back") {
			t.Fatalf("exit %d, want 1 (rolled back)\n%s", code, out)
		}
		for _, want := range []string{"deploy script ./deploy.sh for web-2: exit status 3 after", "web-2 refuses v3", "rolling web-1 back to v1"} {
			if !strings.Contains(out, want) {
				t.Errorf("output without %q:\n%s", want, out)
			}
		}
		f.onVersion("v1")
		checkLoad("failed v3", out)
	})

	t.Run("a script hanging past exec.timeout is killed and the run rolls back", func(t *testing.T) {
		marker := filepath.Join(f.hosts[0].dir, "hang-v4")
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		short := f.config("zerodown-short.yaml", "2s")
		start := time.Now()
		out, code := zerodownWhile(t, nil, "deploy", "staging", "--version", "v4", "--artifact", f.art, "-c", short, "-o", "log")
		if code != 1 || !strings.Contains(out, "deploy script ./deploy.sh for web-1: did not finish within 2s and was killed") ||
			!strings.Contains(out, "web-1 waits forever") || !strings.Contains(out, "rolled back") {
			t.Fatalf("exit %d, want 1 (rolled back, the script killed)\n%s", code, out)
		}
		b, err := os.ReadFile(filepath.Join(f.hosts[0].dir, "hang.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		proctest.Eventually(t, 5*time.Second, "the hung script's child to be killed", func() bool { return !proctest.Running(pid) })
		f.onVersion("v1")
		checkLoad("hung v4", out)
		t.Logf("the hung deploy took %s with exec.timeout 2s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("killed during a deploy script, then resumed", func(t *testing.T) {
		web2 := f.hosts[1]
		if err := os.WriteFile(filepath.Join(web2.dir, "wait-v5"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p := proctest.Start(t, "zerodown deploy v5", bin.zerodown, "deploy", "staging", "--version", "v5", "--artifact", f.art, "-c", cfg, "-o", "log")
		proctest.Eventually(t, time.Minute, "web-2's deploy script to run", func() bool {
			_, err := os.Stat(filepath.Join(web2.dir, "waiting"))
			return err == nil
		})
		p.Signal(os.Kill)
		p.Wait(t, 10*time.Second)
		m := runIDIn.FindStringSubmatch(p.Output())
		if m == nil {
			t.Fatalf("no run id in\n%s", p.Output())
		}
		// The script outlives zerodown, in a process group of its own,
		// and finishes its deploy.
		if err := os.WriteFile(filepath.Join(web2.dir, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		proctest.Eventually(t, 30*time.Second, "the orphaned deploy script to finish", func() bool {
			b, _ := os.ReadFile(filepath.Join(web2.dir, "version"))
			return strings.TrimSpace(string(b)) == "v5"
		})
		out, code := zerodownWhile(t, nil, "resume", m[1], "-c", cfg, "-o", "log")
		if code != 0 {
			t.Fatalf("resume: exit %d\n%s", code, out)
		}
		f.onVersion("v5")
		checkLoad("killed and resumed", out)
	})

	out, code = zerodownWhile(t, nil, "check", "staging", "-c", cfg)
	if code != 0 || !strings.Contains(out, "exec host: status script says v5") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	l.finish()
	postReport := posts.finish()
	checkLoad("the whole test", "")
	t.Logf("load: GET %d ok; POST %s", l.ok.Load(), postReport)
}

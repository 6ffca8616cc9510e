package exechost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/proctest"
)

// release is a release of content, as deploy.Release describes one.
func release(version, content string) host.Release {
	sum := sha256.Sum256([]byte(content))
	return host.Release{Version: version, SHA256: hex.EncodeToString(sum[:]), Format: host.FormatTarGz, Size: int64(len(content)),
		Spec: config.App{Name: "hello"}, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(content)), nil }}
}

// fixture is an exec host whose scripts are sh scripts in a directory of
// the test: each appends what it was given to calls.log.
type fixture struct {
	t     *testing.T
	dir   string
	store *Artifacts
	rec   string
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	return &fixture{t: t, dir: dir, store: NewArtifacts(filepath.Join(dir, "artifacts"), 0), rec: filepath.Join(dir, "records", "web-1.json")}
}

// script writes an executable sh script named name with body.
func (f *fixture) script(name, body string) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	return "./" + name
}

// deployer is web-1 with x's scripts, in the fixture's directory.
func (f *fixture) deployer(x config.HostExec) *Deployer {
	f.t.Helper()
	x.Dir = f.dir
	d, err := New(Config{Host: "web-1", Exec: x, Artifacts: f.store, Record: f.rec})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(d.Close)
	return d
}

func (f *fixture) read(name string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// versionScripts are scripts that keep the host's version in a file, as
// a real host keeps its release: deploy writes it, rollback writes its
// ${VERSION}, status prints it.
func (f *fixture) versionScripts() config.HostExec {
	log := `echo "$0 args=$* env=$HOST,$VERSION,$ARTIFACT" >> calls.log`
	return config.HostExec{
		Deploy:   []string{f.script("deploy.sh", log+"\necho \"$2\" > version\necho deployed \"$2\" on \"$1\""), "${HOST}", "${VERSION}", "${ARTIFACT}"},
		Rollback: []string{f.script("rollback.sh", log+"\necho \"$2\" > version"), "${HOST}", "${VERSION}", "${ARTIFACT}"},
		Status:   []string{f.script("status.sh", "[ -f version ] && cat version || true")},
		Timeout:  config.Duration(20 * time.Second),
	}
}

func deploy(t *testing.T, d *Deployer, r host.Release) error {
	t.Helper()
	ctx := context.Background()
	if err := d.Upload(ctx, r); err != nil {
		t.Fatal(err)
	}
	return d.Activate(ctx, r.Version)
}

// TestDeployRuns: the deploy script gets the host, the version and the
// stored artifact in its argv and its environment, runs in exec.dir, and
// what it printed goes to the run's journal.
func TestDeployRuns(t *testing.T) {
	f := newFixture(t)
	d := f.deployer(f.versionScripts())
	var mu sync.Mutex
	var outputs []string
	ctx := host.WithOutput(context.Background(), func(msg string) {
		mu.Lock()
		outputs = append(outputs, msg)
		mu.Unlock()
	})
	r := release("v2", "the release v2")
	if err := d.Upload(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := d.Activate(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(f.store.Dir(), r.SHA256, "hello.tar.gz")
	if b, err := os.ReadFile(art); err != nil || string(b) != "the release v2" {
		t.Fatalf("stored artifact %q, %v", b, err)
	}
	want := fmt.Sprintf("./deploy.sh args=web-1 v2 %s env=web-1,v2,%s\n", art, art)
	if got := f.read("calls.log"); got != want {
		t.Fatalf("the script was given\n%s\nwant\n%s", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(outputs) != 1 || !strings.HasPrefix(outputs[0], "deploy script ./deploy.sh: exit status 0 after ") || !strings.HasSuffix(outputs[0], "output:\ndeployed v2 on web-1") {
		t.Fatalf("output reported: %q", outputs)
	}
}

// TestDeployFails: a script that exits 3 fails the activation with an
// error naming the host, the script, the exit status and the end of its
// output.
func TestDeployFails(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	x.Deploy = []string{f.script("fail.sh", `i=1; while [ $i -le 30 ]; do echo "step $i"; i=$((i+1)); done; echo "cannot reach $1" >&2; exit 3`), "${HOST}"}
	d := f.deployer(x)
	err := deploy(t, d, release("v2", "x"))
	var se *ScriptError
	if !errors.As(err, &se) || se.Host != "web-1" || se.Kind != "deploy" {
		t.Fatalf("error %v, want a ScriptError of web-1's deploy", err)
	}
	msg := err.Error()
	for _, want := range []string{"deploy script ./fail.sh for web-1: exit status 3 after ", "its output ends:", "step 30", "cannot reach web-1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "step 20\n") {
		t.Errorf("error quotes more than the end of the output:\n%s", msg)
	}
}

// TestStatus: what a status script printed, trimmed and checked; garbage
// is an error that quotes it, never a version.
func TestStatus(t *testing.T) {
	cases := []struct {
		name, body string
		want       string
		wantErr    string
	}{
		{"a version", `echo v1.2.3`, "v1.2.3", ""},
		{"spaces and a blank line around it", `printf '  v7 \n\n'`, "v7", ""},
		{"nothing: no release yet", `true`, "", ""},
		{"stderr is not the answer", `echo "warning: slow disk" >&2; echo v2`, "v2", ""},
		{"two words", `echo running v2`, "", `printed "running v2", which is not a version`},
		{"two lines", `printf 'v1\nv2\n'`, "", "which is not a version"},
		{"an HTML page", `echo '<html><body>502 Bad Gateway</body></html>'`, "", "which is not a version"},
		{"too much", `head -c 10000 /dev/zero | tr '\0' 'a'`, "", "printed more than 4096 bytes"},
		{"a failure", `echo "version file missing" >&2; exit 1`, "", "status script ./status.sh for web-1: exit status 1 after"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			x := f.versionScripts()
			x.Status = []string{f.script("status.sh", tc.body)}
			st, err := f.deployer(x).Status(context.Background())
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
			case st.Version != tc.want || st.Assumed:
				t.Fatalf("status %+v, want version %q", st, tc.want)
			}
		})
	}
}

// TestPreviousAcrossProcesses: the version a deploy replaced is what a
// rollback goes back to, also for another zerodown process (a new
// Deployer on the same record), and also after the same deploy ran twice
// (a resumed run).
func TestPreviousAcrossProcesses(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	d := f.deployer(x)
	v1, v2 := release("v1", "one"), release("v2", "two")
	for _, r := range []host.Release{v1, v2, v2} {
		if err := deploy(t, d, r); err != nil {
			t.Fatal(err)
		}
	}
	later := f.deployer(x) // zerodown rollback RUN, in a process of its own
	st, err := later.Status(context.Background())
	if err != nil || st.Version != "v2" || st.Previous != "v1" || st.Assumed {
		t.Fatalf("status %+v, %v; want v2 with previous v1", st, err)
	}
	if err := later.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	v1Art := filepath.Join(f.store.Dir(), v1.SHA256, "hello.tar.gz")
	calls := strings.Split(strings.TrimSpace(f.read("calls.log")), "\n")
	if want := "./rollback.sh args=web-1 v1 " + v1Art + " env=web-1,v1," + v1Art; calls[len(calls)-1] != want {
		t.Fatalf("rollback was given\n%s\nwant\n%s", calls[len(calls)-1], want)
	}
	st, err = later.Status(context.Background())
	if err != nil || st.Version != "v1" || st.Previous != "" {
		t.Fatalf("after the rollback: %+v, %v; want v1 and no previous", st, err)
	}
}

// TestNoStatusScript: without a status script the host's version is
// zerodown's own record, marked Assumed (never skipped), and a rollback
// still knows what the deploy replaced.
func TestNoStatusScript(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	x.Status = nil
	d := f.deployer(x)
	st, err := d.Status(context.Background())
	if err != nil || st.Version != "" || st.Previous != "" || !st.Assumed {
		t.Fatalf("before any deploy: %+v, %v; want an unknown version", st, err)
	}
	for _, r := range []host.Release{release("v1", "one"), release("v2", "two")} {
		if err := deploy(t, d, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err = d.Status(context.Background())
	if err != nil || st.Version != "v2" || st.Previous != "v1" || !st.Assumed {
		t.Fatalf("status %+v, %v; want v2 with previous v1, assumed", st, err)
	}
}

// TestNoRollbackScript: a host without one says so before anything
// changes, and its Rollback fails clearly.
func TestNoRollbackScript(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	x.Rollback = nil
	d := f.deployer(x)
	for _, err := range []error{d.CanRollBack(), d.Rollback(context.Background())} {
		if err == nil || !strings.Contains(err.Error(), "web-1 has no exec.rollback script") {
			t.Fatalf("error %v", err)
		}
	}
}

// TestAbortLeavesTheScriptRunning: a run that stops waiting (an abort)
// does not cut the script short; Status reports it as an activation under
// way, which a rollback waits for, and Close waits for it too.
func TestAbortLeavesTheScriptRunning(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	// The script goes on once the test creates "go", within a bound.
	x.Deploy = []string{f.script("deploy.sh", `touch started; i=0; while [ ! -e go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo "$1" > version`), "${VERSION}"}
	d := f.deployer(x)
	r := release("v2", "two")
	if err := d.Upload(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Activate(ctx, "v2") }()
	proctest.Eventually(t, 10*time.Second, "the deploy script to start", func() bool {
		_, err := os.Stat(filepath.Join(f.dir, "started"))
		return err == nil
	})
	cancel(errors.New("run aborted"))
	if err := <-done; err == nil || !strings.Contains(err.Error(), "stopped waiting for its deploy script ./deploy.sh") || !strings.Contains(err.Error(), "run aborted") {
		t.Fatalf("Activate: %v", err)
	}
	st, err := d.Status(context.Background())
	if err != nil || st.Activating != "v2" {
		t.Fatalf("status %+v, %v; want v2 activating", st, err)
	}
	if err := d.Activate(context.Background(), "v2"); !errors.Is(err, host.ErrBusy) {
		t.Fatalf("a second activation meanwhile: %v, want busy", err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Close()
	st, err = d.Status(context.Background())
	if err != nil || st.Activating != "" || st.Version != "v2" {
		t.Fatalf("after the script ended: %+v, %v", st, err)
	}
}

// TestActivateNeedsUpload: the script is never run without its artifact.
func TestActivateNeedsUpload(t *testing.T) {
	f := newFixture(t)
	d := f.deployer(f.versionScripts())
	if err := d.Activate(context.Background(), "v9"); !errors.Is(err, host.ErrNotFound) {
		t.Fatalf("error %v, want not found", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "calls.log")); err == nil {
		t.Fatal("the deploy script ran")
	}
}

// TestArtifacts: stored by content, checked while written, written once,
// and the oldest pruned.
func TestArtifacts(t *testing.T) {
	dir := t.TempDir()
	a := NewArtifacts(dir, 2)
	ctx := context.Background()
	bad := release("v1", "the real content")
	bad.Open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte("tampered"))), nil }
	if _, err := a.Put(ctx, bad); !errors.Is(err, host.ErrChecksum) {
		t.Fatalf("a tampered artifact: %v, want a checksum error", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*", "*")); len(matches) != 0 {
		t.Fatalf("a tampered artifact left %v", matches)
	}
	opens := 0
	r := release("v1", "one")
	open := r.Open
	r.Open = func() (io.ReadCloser, error) { opens++; return open() }
	p1, err := a.Put(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if p2, err := a.Put(ctx, r); err != nil || p2 != p1 || opens != 1 {
		t.Fatalf("second Put: %s, %v, opened %d times", p2, err, opens)
	}
	single := release("v1", "#!/bin/sh\n")
	single.Format, single.Name = host.FormatFile, "hello"
	if p, err := a.Put(ctx, single); err != nil || filepath.Base(p) != "hello" {
		t.Fatalf("a single file: %s, %v", p, err)
	}
	// Another process's store holds older artifacts: those beyond keep go.
	fresh := NewArtifacts(dir, 2)
	for _, c := range []string{"two", "three"} {
		if _, err := fresh.Put(ctx, release("v", c)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(p1); err == nil {
		t.Fatalf("%s was kept beyond the 2 newest", p1)
	}
	if _, err := a.Put(ctx, release("v1", "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, host.Release{Version: "v1", SHA256: "../../etc", Open: r.Open}); err == nil {
		t.Fatal("a digest that is not one was taken as a directory name")
	}
}

// TestStoppedBeforeTheScript: a run stopped before the deploy script
// starts changes neither the host nor its record.
func TestStoppedBeforeTheScript(t *testing.T) {
	f := newFixture(t)
	x := f.versionScripts()
	x.Status = nil
	d := f.deployer(x)
	if err := deploy(t, d, release("v1", "one")); err != nil {
		t.Fatal(err)
	}
	if err := d.Upload(context.Background(), release("v2", "two")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Activate(ctx, "v2"); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "deploy script ./deploy.sh not started") {
		t.Fatalf("Activate: %v", err)
	}
	if st, err := d.Status(context.Background()); err != nil || st.Version != "v1" {
		t.Fatalf("status %+v, %v; want v1 still", st, err)
	}
	if calls := strings.Count(f.read("calls.log"), "\n"); calls != 1 {
		t.Fatalf("the deploy script ran %d times, want once", calls)
	}
}

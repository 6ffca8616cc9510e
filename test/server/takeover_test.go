package server

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/server/api"
)

// testLease is the replicas' lease in the tests: the shortest server.yaml
// takes, so a takeover comes quickly.
const testLease = 3 * time.Second

// ha is two replicas of zerodown server on one PostgreSQL database, with
// one artifact directory, in front of one fleet.
type ha struct {
	lease  time.Duration // replica A's, which runs are started on
	leaseB time.Duration
	lb     string // the fleet's load balancer
	hosts  int
	a, b   *replica
	token  string // admin
	sha    string // the sample app's release, uploaded once
}

// startHA starts the fleet and the replicas A and B with their leases.
// With slowStart, the activation of every release but v1 (the first, which
// the tests deploy before any kill) first runs a before_start hook that
// takes that long — a migration, a warm-up — so a kill can land during one.
func startHA(t testing.TB, hosts int, lease, leaseB, slowStart time.Duration) *ha {
	t.Helper()
	sb := startFleet(t, hosts)
	dsn := proctest.StartPostgres(t).NewDatabase(t)
	dir := t.TempDir()
	deployCfg := sb.Config
	if slowStart > 0 {
		b, err := os.ReadFile(sb.Config)
		if err != nil {
			t.Fatal(err)
		}
		const stop = "  stop: { signal: SIGTERM, timeout: 10s }\n"
		if !strings.Contains(string(b), stop) {
			t.Fatalf("the sandbox's zerodown.yaml has no line %q to add the hook after:\n%s", stop, b)
		}
		script := fmt.Sprintf(`[ "$VERSION" = v1 ] || sleep %g`, slowStart.Seconds())
		hook := fmt.Sprintf("  hooks: { before_start: [[\"sh\", \"-c\", %s]] }\n", strconv.Quote(script))
		deployCfg = filepath.Join(dir, "zerodown-slow-start.yaml")
		if err := os.WriteFile(deployCfg, []byte(strings.Replace(string(b), stop, stop+hook, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shared := filepath.Join(dir, "artifacts")
	var cfgs, urls [2]string
	for i, name := range []string{"a", "b"} {
		cfgs[i], urls[i] = writeServerConfig(t, filepath.Join(dir, name), serverOpts{deploy: deployCfg,
			data: filepath.Join(dir, name, "data"), artifacts: shared, postgres: dsn, lease: []time.Duration{lease, leaseB}[i]})
	}
	h := &ha{lease: lease, leaseB: leaseB, lb: sb.LB, hosts: len(sb.Hosts)}
	h.token = createToken(t, cfgs[0], "ci", "admin") // one database: every replica knows it
	h.a = startServer(t, "replica A", cfgs[0], urls[0])
	h.b = startServer(t, "replica B", cfgs[1], urls[1])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if h.sha, err = client(t, h.a.url, h.token).Upload(ctx, sb.Artifact); err != nil {
		t.Fatal(err)
	}
	return h
}

// start starts a run of version on r through the API.
func (h *ha) start(t testing.TB, r *replica, version string) api.Run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := client(t, r.url, h.token).CreateRun(ctx, api.CreateRun{Env: "staging", Version: version, SHA256: h.sha})
	if err != nil || res.Run == nil {
		t.Fatalf("start %s on %s: %+v %v", version, r.name, res, err)
	}
	return *res.Run
}

// deploy runs version on r to its end, following it there, and returns
// the run as it ended.
func (h *ha) deploy(t testing.TB, r *replica, version string) api.Run {
	t.Helper()
	run := h.start(t, r, version)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	end, err := follow(ctx, r.url, h.token, run.ID, 0, func(api.Event) {})
	if err != nil {
		t.Fatalf("follow %s on %s: %v", run.ID, r.name, err)
	}
	if end.Status != "succeeded" {
		t.Fatalf("run %s of %s ended %s: %s", run.ID, version, end.Status, end.Error)
	}
	return *end
}

// takeover is what one run killed with its executor shows.
type takeover struct {
	run     api.Run // as it ended
	killAt  time.Time
	lockAt  time.Time // B took the environment's lock (the journal's clock)
	firstB  time.Time // the first event B journaled
	events  []api.Event
	killOn  api.Event // the event that triggered the kill
	lastOnA int64     // the last event seq the stream through A delivered
}

func (k takeover) toLock() time.Duration  { return k.lockAt.Sub(k.killAt) }
func (k takeover) toFirst() time.Duration { return k.firstB.Sub(k.killAt) }
func (k takeover) toEnd() time.Duration   { return k.run.EndedAt.Sub(k.killAt) }
func (k takeover) took() time.Duration    { return k.run.EndedAt.Sub(k.run.StartedAt) }

// killOn starts a run of version on A, follows its events through A, and
// as soon as an event of type evType arrives stops A: with SIGKILL (it
// dies), or with SIGSTOP until B has taken the run's lock and SIGCONT then
// (it was paused, or cut off, past its lease). It follows the run to its
// end — through B from the last event seen (Last-Event-ID) when A died —
// while watching B take the environment's lock, and checks that the
// streams delivered every event exactly once, in order.
func (h *ha) killOn(t testing.TB, version, evType string, sig syscall.Signal) takeover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := h.start(t, h.a, version)
	if !h.a.ownsAs(run.Owner) {
		t.Fatalf("run %s is owned by %q, not replica A (pid %d)", run.ID, run.Owner, h.a.p.Pid())
	}
	var k takeover
	var seen []int64
	record := func(e api.Event) {
		seen = append(seen, e.Seq)
		k.events = append(k.events, e)
	}
	// Another client follows the run through B from the start: until the
	// takeover, what wakes it is A's writes, relayed by PostgreSQL.
	type observed struct {
		seqs []int64
		end  *api.Run
		err  error
	}
	watcher := make(chan observed, 1)
	go func() {
		var o observed
		o.end, o.err = follow(ctx, h.b.url, h.token, run.ID, 0, func(e api.Event) { o.seqs = append(o.seqs, e.Seq) })
		watcher <- o
	}()
	var lockSeen chan error
	end, err := follow(ctx, h.a.url, h.token, run.ID, 0, func(e api.Event) {
		record(e)
		if e.Type != evType || !k.killAt.IsZero() {
			return
		}
		k.killOn, k.killAt = e, time.Now()
		h.a.p.Signal(sig)
		lockSeen = make(chan error, 1)
		go func() {
			err := h.watchLock(ctx, run.ID, &k)
			if sig == syscall.SIGSTOP {
				h.a.p.Signal(syscall.SIGCONT)
			}
			lockSeen <- err
		}()
	})
	if k.killAt.IsZero() {
		t.Fatalf("run %s ended (%+v, %v) before any %s event: nothing was stopped", run.ID, end, err, evType)
	}
	switch {
	case sig == syscall.SIGKILL && err == nil:
		t.Fatalf("the stream through A went on to the end of run %s after A was killed", run.ID)
	case sig == syscall.SIGKILL:
		if len(seen) > 0 {
			k.lastOnA = seen[len(seen)-1]
		}
		// A client reconnects where it left off, to the replica that answers.
		end, err = follow(ctx, h.b.url, h.token, run.ID, k.lastOnA, record)
		if err != nil {
			t.Fatalf("following run %s through B after event %d: %v", run.ID, k.lastOnA, err)
		}
	case err != nil:
		t.Fatalf("following run %s through A, paused and woken: %v", run.ID, err)
	}
	k.run = *end
	if err := <-lockSeen; err != nil {
		t.Fatal(err)
	}
	if !contiguous(seen) {
		t.Fatalf("the streams delivered events %v: want 1 to %d, each once, in order", seen, len(seen))
	}
	if o := <-watcher; o.err != nil || o.end == nil || !contiguous(o.seqs) || len(o.seqs) != len(seen) {
		t.Fatalf("the stream through B from the start: %v, ended %+v, events %v; want 1 to %d", o.err, o.end, o.seqs, len(seen))
	}
	// ... and every event of the run.
	all, err := client(t, h.b.url, h.token).Events(ctx, run.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(seen) {
		t.Fatalf("the streams delivered %d events; the journal has %d", len(seen), len(all))
	}
	// B's first word on the run says it took it over from A; when A is
	// dead, nothing comes before it.
	by, from := fmt.Sprintf(" pid %d from where ", h.b.p.Pid()), fmt.Sprintf(" pid %d left it", h.a.p.Pid())
	for i, e := range k.events {
		if e.Type != "info" || !strings.HasPrefix(e.Message, "resumed by ") {
			continue
		}
		if !strings.Contains(e.Message, by) || !strings.HasSuffix(e.Message, from) {
			t.Errorf("the run was resumed by someone else than B, from someone else than A: %+v", e)
		}
		if sig == syscall.SIGKILL && i > 0 && !k.events[i-1].At.Before(k.lockAt) {
			t.Errorf("event %+v was written after B took the run over, before B said so", k.events[i-1])
		}
		k.firstB = e.At
		break
	}
	if k.firstB.IsZero() {
		t.Fatalf("no event of run %s says B resumed it", run.ID)
	}
	return k
}

// contiguous reports whether seqs are 1, 2, ... len(seqs).
func contiguous(seqs []int64) bool {
	for i, s := range seqs {
		if s != int64(i+1) {
			return false
		}
	}
	return true
}

// watchLock waits until B holds staging's lock for run id and records
// when it took it.
func (h *ha) watchLock(ctx context.Context, id string, k *takeover) error {
	deadline := time.Now().Add(h.lease + 30*time.Second)
	var envs []api.Environment
	for time.Now().Before(deadline) {
		envs = envs[:0]
		if err := getJSON(ctx, h.b.url, h.token, "/api/v1/environments", &envs); err != nil {
			return err
		}
		for _, e := range envs {
			if e.Name == "staging" && e.Lock != nil && e.Lock.Run == id && h.b.ownsAs(e.Lock.Owner) {
				k.lockAt = e.Lock.Since
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("replica B did not take the lock of run %s within %s of A's death: %+v", id, h.lease+30*time.Second, envs)
}

// TestHATakeover kills the replica executing a run, under GET and
// slow-POST load through the balancer: in the middle of a host's drain,
// and in the middle of a host's activation (which goes on on the host for
// the dead replica). Each time the other replica takes the run over within
// the lease, a client following the run resumes on it with Last-Event-ID
// and misses nothing, the run ends succeeded with every host on the new
// version, and no user request fails.
func TestHATakeover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		hosts  int
		killOn string
		// slowStart lengthens each activation past the lease, so the
		// host is still activating for the dead replica at the takeover.
		slowStart time.Duration
		// after is an event the takeover must lead to on the killed host.
		after string
		sig   syscall.Signal // SIGKILL, or SIGSTOP until B took the run over
		// leaseB is B's lease when not A's: B judges A's lock by the
		// lease A stored with it, not by its own.
		leaseB time.Duration
	}{
		{name: "killed while draining", hosts: 3, killOn: "draining", sig: syscall.SIGKILL, leaseB: 4 * testLease},
		// Killed once the host reports the activation under way (its
		// first progress event), which then outlasts the takeover.
		{name: "killed while activating", hosts: 2, killOn: "progress", sig: syscall.SIGKILL, slowStart: 7 * time.Second, after: "waiting"},
		// A replica paused (or cut off) past its lease must stop the run
		// it lost without undoing a thing: the run is B's.
		{name: "paused while draining", hosts: 3, killOn: "draining", sig: syscall.SIGSTOP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			leaseB := cmp.Or(tc.leaseB, testLease)
			h := startHA(t, tc.hosts, testLease, leaseB, tc.slowStart)
			h.deploy(t, h.a, "v1")
			// Slow POSTs keep requests in flight on every host, so each
			// drain waits for some.
			ld := startLoad(t, h.lb, 2, 2*tc.hosts, 1500*time.Millisecond, 3*time.Minute)
			k := h.killOn(t, "v2", tc.killOn, tc.sig)
			t.Cleanup(func() {
				if t.Failed() || os.Getenv("ZERODOWN_TEST_EVENTS") != "" {
					t.Logf("events of run %s:\n%s", k.run.ID, eventLines(k.events))
				}
			})
			how := map[syscall.Signal]string{syscall.SIGKILL: "killed", syscall.SIGSTOP: "paused"}[tc.sig]
			t.Logf("%s replica A on event %d (%s %s); B took the lock %s after it (A's lease %s, B's %s) and journaled its first event %s after it; the run ended %s after it, %s after the run started",
				how, k.killOn.Seq, k.killOn.Type, k.killOn.Host, ms(k.toLock()), h.lease, h.leaseB, ms(k.toFirst()), ms(k.toEnd()), ms(k.took()))

			if k.run.Status != "succeeded" {
				t.Fatalf("run %s ended %s: %s", k.run.ID, k.run.Status, k.run.Error)
			}
			if !h.b.ownsAs(k.run.Owner) {
				t.Errorf("run %s ended owned by %q, not replica B (pid %d)", k.run.ID, k.run.Owner, h.b.p.Pid())
			}
			// A heartbeat is at most lease/3 old at the kill, and replicas
			// look five times per lease: B must take the run when A's lease
			// has run out, and within one of B's looks after.
			if got, lo, hi := k.toLock(), testLease-testLease/3-100*time.Millisecond, testLease+leaseB/5+time.Second; got < lo || got > hi {
				t.Errorf("B took the lock %s after the kill; want from %s (A's lease, less a heartbeat) to %s (A's lease and one of B's looks)", got, lo, hi)
			}
			if tc.after != "" && !hasEvent(k.events, k.lastOnA, k.killOn.Host, tc.after) {
				t.Errorf("no %s event for %s after the takeover", tc.after, k.killOn.Host)
			}
			if hasEvent(k.events, 0, k.killOn.Host, "rolling-back") {
				t.Errorf("%s was rolled back: a replica undid what the run's new executor does", k.killOn.Host)
			}
			if tc.sig == syscall.SIGSTOP {
				proctest.Eventually(t, 10*time.Second, "A to say it stopped the run it lost", func() bool {
					return strings.Contains(h.a.p.Output(), "another replica took the run over")
				})
				if h.a.p.Exited() {
					t.Errorf("replica A exited after it was woken:\n%s", h.a.p.Output())
				}
				// B wrote the run's report; A serves it from the journal.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var page string
				if err := getJSON(ctx, h.a.url, h.token, "/api/v1/runs/"+k.run.ID+"/report", &page); err != nil || !strings.Contains(page, k.run.ID) {
					t.Errorf("run %s's report through A (B ran its end): %v, %.200q", k.run.ID, err, page)
				}
			}
			waitHosts(t, h.b.url, h.token, "v2", h.hosts)
			ld.check(t, 100, 10)
			h.checkTakeoverRecorded(t, k.run.ID)
		})
	}
}

// hasEvent reports whether events after seq include one of type typ for
// host.
func hasEvent(events []api.Event, after int64, host, typ string) bool {
	for _, e := range events {
		if e.Seq > after && e.Host == host && e.Type == typ {
			return true
		}
	}
	return false
}

// checkTakeoverRecorded checks that B counts the one takeover in its
// metrics and the audit log names it.
func (h *ha) checkTakeoverRecorded(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var metrics string
	if err := getJSON(ctx, h.b.url, h.token, "/metrics", &metrics); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(metrics, "\nzerodown_server_lease_takeovers_total 1\n") {
		t.Errorf("B's /metrics do not count one takeover:\n%s", grepLines(metrics, "zerodown_server_"))
	}
	var audit []api.AuditEntry
	if err := getJSON(ctx, h.b.url, h.token, "/api/v1/audit", &audit); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range audit {
		if e.Action == "run.takeover" && e.Target == id && e.Actor == "server" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the audit log has %d run.takeover entries for %s, want 1: %+v", n, id, audit)
	}
}

// eventLines is events, one a line, as a person reads them.
func eventLines(events []api.Event) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%4d %s %-10s %-16s %s\n", e.Seq, e.At.Local().Format("15:04:05.000"), e.Host, e.Type, e.Message)
	}
	return b.String()
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Package httpdiff sends raw HTTP/1.1 byte streams through zerodown lb and
// through HAProxy, each in front of the same kind of scripted backend, and
// checks the invariants of invariants_test.go. zerodown lb frames HTTP
// itself, so the classic request-smuggling and response-splitting inputs
// are its to get right; HAProxy is the reference its behaviour is compared
// with. Invariants are asserted for zerodown; HAProxy's behaviour is logged
// beside it, and asserted only on well-formed cases, where a failure means
// the harness itself is wrong.
//
// HAProxy (the Debian package haproxy) must be installed; without it the
// differential test is skipped, unless CI is set, where that is a failure.
package httpdiff

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	fuzzFixture.stop()
	os.Exit(code)
}

// newZerodownRig starts a backend and zerodown lb in front of it for t.
func newZerodownRig(t *testing.T) *rig {
	t.Helper()
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.stop)
	pl := &panicLog{}
	srv, stop, err := startZerodown(t.TempDir(), be.addr(), slog.New(pl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &rig{name: "zerodown", prefix: "z", addr: srv.ListenerAddrs()[0], be: be, panics: pl,
		flush: func() error { return flushPool(srv, be.addr()) }}
}

func newHAProxyRig(t *testing.T, bin string) *rig {
	t.Helper()
	be, err := startBackend()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(be.stop)
	addr, out := startHAProxy(t, bin, be.addr())
	return &rig{name: "haproxy", prefix: "h", addr: addr, be: be, output: out}
}

type row struct {
	name     string
	zerodown *result
	haproxy  *result
}

func (r row) String() string {
	return fmt.Sprintf("%-46s | zerodown: %-26s | haproxy: %-26s | zerodown %-9s | haproxy %s",
		r.name, r.zerodown.outcome, r.haproxy.outcome, r.zerodown.verdict(), r.haproxy.verdict())
}

// TestDifferential runs the corpus through both proxies at once, one case
// at a time, and prints a row per case: what each proxy's client saw (each
// answer's status, [id] when it was another request's, ~how it ended when
// cut short; bkN: requests of the case the backend parsed; fuN/M:
// follow-ups that got their own answer, when not all did) and which
// invariants held.
func TestDifferential(t *testing.T) {
	bin, err := findHAProxy()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("skipping the differential test: %v; install the Debian package haproxy (in CI this is a failure)", err)
		}
		t.Fatalf("%v: CI is set and the differential test needs the Debian package haproxy", err)
	}
	start := time.Now()
	zr := newZerodownRig(t)
	hr := newHAProxyRig(t, bin)

	cases := corpus()
	rows := make([]row, 0, len(cases))
	for i := range cases {
		c := &cases[i]
		t.Run(c.name, func(t *testing.T) {
			var z, h *result
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); z = zr.run(i, c) }()
			go func() { defer wg.Done(); h = hr.run(i, c) }()
			wg.Wait()
			r := row{c.name, z, h}
			rows = append(rows, r)
			t.Log(r)
			for _, v := range z.violations {
				t.Errorf("zerodown: %s", v)
			}
			for _, n := range z.notes {
				t.Logf("zerodown: %s", n)
			}
			harnessWrong := false
			for _, v := range h.violations {
				if c.plain || v.inv == 0 {
					harnessWrong = true
					t.Errorf("haproxy, on a case every proxy must pass (the harness is wrong): %s", v)
				} else {
					t.Logf("haproxy: %s", v)
				}
			}
			if harnessWrong {
				t.Logf("haproxy output:\n%s", hr.output)
			}
			for _, n := range h.notes {
				t.Logf("haproxy: %s", n)
			}
		})
	}

	var b strings.Builder
	differ, zfail, hfail := 0, 0, 0
	for _, r := range rows {
		fmt.Fprintln(&b, r)
		if r.zerodown.outcome != r.haproxy.outcome {
			differ++
		}
		if len(r.zerodown.violations) > 0 {
			zfail++
		}
		if len(r.haproxy.violations) > 0 {
			hfail++
		}
	}
	t.Logf("\n%s%d cases in %s; zerodown and HAProxy differ in %d; invariants broken by zerodown in %d, by HAProxy in %d",
		b.String(), len(rows), time.Since(start).Round(time.Millisecond), differ, zfail, hfail)
}

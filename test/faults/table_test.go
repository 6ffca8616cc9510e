package faults

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

// result is one row of the table.
type result struct {
	fault string
	// lossy is why the fault may cost POSTs in flight (see row).
	lossy string
	// what the fault did, when it has something to say (a restart's time).
	what   string
	tally  tally
	verify *verifySummary
	// exit is the deploy's exit code, and the resume's for the row that
	// has one.
	exit   string
	status string
	runErr string
	final  string
	// endProblems are how the hosts' end state differs from v2 on all.
	endProblems []string
	// failures are the row's failed checks; none when it passed.
	failures []string
}

const tableHead = "| fault | external failed | duplicated POSTs | verifier failed | exit code | final state | note |\n" +
	"| --- | --- | --- | --- | --- | --- | --- |\n"

func faultsTable(results []result) string {
	var b strings.Builder
	b.WriteString(tableHead)
	for _, r := range results {
		tl := r.tally
		failed := fmt.Sprintf("%d of %d", tl.failed(), tl.total())
		if tl.failed() > 0 {
			failed += fmt.Sprintf(" (%d POST, %d GET)", tl.postsFailed, tl.getsFailed)
		}
		verifier := "no report"
		if v := r.verify; v != nil {
			verifier = fmt.Sprintf("%d of %d", v.Failed, v.Requests)
			if v.Dropped > 0 {
				verifier += fmt.Sprintf(", %d dropped", v.Dropped)
			}
		}
		final := r.final
		if r.status != "" {
			final = r.status + ": " + final
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s |\n", cell(r.fault), failed, tl.duplicated, verifier,
			cell(r.exit), cell(final), cell(r.note()))
	}
	return b.String()
}

// note says what the fault did, why a request failed, what the balancer
// hid, and, for a row that failed, which check.
func (r result) note() string {
	var parts []string
	if r.what != "" {
		parts = append(parts, r.what)
	}
	if n := len(r.tally.lost); n > 0 {
		ran, none := 0, 0
		for _, lp := range r.tally.lost {
			if lp.ranOn != "" {
				ran++
			} else {
				none++
			}
		}
		parts = append(parts, fmt.Sprintf("%d POST(s) failed: %d ran once and lost the answer, %d never reached an app; first: %s",
			n, ran, none, r.tally.lost[0].err))
	}
	if r.lossy != "" {
		parts = append(parts, "failures allowed because "+r.lossy)
	}
	if v := r.verify; v != nil && v.LBRetries != nil && *v.LBRetries > 0 {
		parts = append(parts, fmt.Sprintf("the lb retried %d request(s) on another target", *v.LBRetries))
	}
	if r.runErr != "" {
		parts = append(parts, "run error: "+r.runErr)
	}
	if len(r.failures) > 0 {
		parts = append(parts, fmt.Sprintf("**FAILS** (%d check(s)); first: %s", len(r.failures), r.failures[0]))
	}
	return strings.Join(parts, "; ")
}

// cell makes s one Markdown table cell: one line, no bare pipe, not
// endless.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	if s == "" {
		return "–"
	}
	return s
}

const docIntro = `# Fault injection

` + "`test/faults`" + ` runs real rolling deploys of the sample app — ` + "`zerodown deploy`" + `, three
` + "`zerodown agent`" + ` processes that supervise it, ` + "`zerodown lb`" + ` in front — while
Toxiproxy, running in the test process, sits in the links: between the engine and each
agent's API (the hosts' ` + "`agent:`" + ` addresses), and between the balancer and each app (the
hosts' ` + "`target:`" + ` addresses, whose upstream is the port the agent gives the app). A row
that kills a process leaves the link to it direct: through a proxy, a dead process's refused
connections would become connections accepted and then closed, and the row would measure
the proxy. Each row deploys v1 to a fresh fleet, then v2 under one fault.

During every run an external client sends %d requests a second through the balancer,
alternately a GET and a POST that takes %s, each POST with a unique X-Request-Id. The
apps (` + "`--request-log`" + `) log every POST as they start running it, so each POST is
checked: answered 200 means it ran exactly once, and none ran twice, whatever the client
saw. The run's own verifier (` + "`verify:`" + `, 20 requests a second, half of them POSTs)
runs too.

A row passes with no failed request, no duplicated POST, exit 0 and every host on v2,
healthy in ` + "`zerodown lb targets list`" + ` and settled in its agent's status. A row whose
fault must cost the POSTs in flight (its note says why) allows a bounded number of them to
fail, each run at most once and only on the faulted host; the balancer killed outright
also costs the requests sent while it is down, GETs included, and none may run twice.

Produced by

    ZERODOWN_WRITE_FAULTS=1 go test -race -count=1 ./test/faults/

on %s, %s; the rows took %s%s.

`

func writeFaultsDoc(path, table string, took time.Duration) error {
	race := ""
	if proctest.RaceEnabled {
		race = ", the binaries built with -race"
	}
	intro := fmt.Sprintf(docIntro, trafficRate, postSleep, machine(), time.Now().UTC().Format("2006-01-02"), took.Round(time.Second), race)
	return os.WriteFile(path, []byte(intro+table), 0o644)
}

// machine describes where the table was measured.
func machine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s/%s, %s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, cpu, runtime.NumCPU(), runtime.Version())
}

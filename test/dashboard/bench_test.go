package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/server"
	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

// The dashboard's benchmarks run zerodown server in this process on a
// SQLite journal seeded beforehand, and Chromium against it on loopback.
// Every figure is set beside a peer measured in the same run: a page's
// first render beside the same data from the JSON API loaded in the same
// tab; the event stream's delay to the page beside the same stream read by
// the Go client.

const (
	benchHistory = 10_000 // runs in the journal
	benchLoads   = 40     // loads of each page, after two warm-ups
	benchEvents  = 600    // events timed from the journal to the page
	benchSpacing = 15 * time.Millisecond
)

// watchedStore is the journal with the change notice PostgreSQL gives
// replicas (LISTEN/NOTIFY): a change the benchmark writes outside the
// server wakes the server's followers exactly as another replica's write
// would.
type watchedStore struct {
	store.Store
	mu     sync.Mutex
	notify func(runID string, seq int64)
}

func (w *watchedStore) WatchRuns(ctx context.Context, fn func(runID string, seq int64)) error {
	w.mu.Lock()
	w.notify = fn
	w.mu.Unlock()
	fn("", 0)
	<-ctx.Done()
	return ctx.Err()
}

// appendEvent journals an event and announces it, as another replica's
// engine would.
func (w *watchedStore) appendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	e, err := w.Store.AppendEvent(ctx, e)
	if err != nil {
		return e, err
	}
	w.mu.Lock()
	fn := w.notify
	w.mu.Unlock()
	if fn != nil {
		fn(e.RunID, e.Seq)
	}
	return e, nil
}

// benchPlan is a rolling deploy of eight hosts: an upload stage, then a
// stage per pair of hosts: 40 tasks.
func benchPlan() pipeline.Pipeline {
	p := pipeline.Pipeline{Name: "rolling", Environment: "staging", Strategy: "rolling"}
	up := pipeline.Stage{Name: "upload"}
	for i := 1; i <= 8; i++ {
		h := fmt.Sprintf("web-%d", i)
		up.Jobs = append(up.Jobs, pipeline.Job{Name: "upload-" + h, Tasks: []pipeline.Task{{Kind: pipeline.KindUpload, Host: h}}})
	}
	p.Stages = append(p.Stages, up)
	for b := 0; b < 4; b++ {
		st := pipeline.Stage{Name: fmt.Sprintf("batch-%d", b+1)}
		for i := 2*b + 1; i <= 2*b+2; i++ {
			h := fmt.Sprintf("web-%d", i)
			st.Jobs = append(st.Jobs, pipeline.Job{Name: h, Tasks: []pipeline.Task{
				{Kind: pipeline.KindDetach, Host: h}, {Kind: pipeline.KindDeploy, Host: h}, {Kind: pipeline.KindAttach, Host: h}, {Kind: pipeline.KindWaitHealthy, Host: h}}})
		}
		p.Stages = append(p.Stages, st)
	}
	return p
}

// verifyRow is one second of the load verifier, as the journal keeps it.
func verifyRow(t int) []byte {
	return fmt.Appendf(nil, `{"t":%d,"seconds":1,"sent":200,"ok":200,"failed":0,"p50_ms":1.2,"p99_ms":%d.4,"max_ms":9.1,"versions":{"v41":%d,"v42":%d}}`,
		t, 3+t%4, 200-min(200, t*4), min(200, t*4))
}

// seedJournal writes the history and the run the pages show: n ended
// runs over four environments, then the newest, with the 40 tasks of
// benchPlan all passed and 300 events, 60 of them the verifier's.
func seedJournal(tb testing.TB, st store.Store, n int) (newest string) {
	tb.Helper()
	ctx := context.Background()
	envs := []string{"staging", "production", "qa", "canary"}
	statuses := []store.RunStatus{store.RunSucceeded, store.RunSucceeded, store.RunSucceeded, store.RunRolledBack, store.RunFailed}
	t0 := time.Now().Add(-time.Duration(n+10) * time.Minute)
	small, _ := json.Marshal(pipeline.Pipeline{Name: "rolling"})
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Minute)
		if _, err := st.CreateRun(ctx, store.Run{ID: store.NewRunID(at), Env: envs[i%len(envs)], Pipeline: "rolling", Version: fmt.Sprintf("v%d", i),
			Artifact: "/srv/a.tar.gz", SHA256: strings.Repeat("a", 64), Owner: "bench", Plan: small, Status: statuses[i%len(statuses)],
			StartedAt: at, EndedAt: at.Add(90 * time.Second)}); err != nil {
			tb.Fatal(err)
		}
	}
	id := journalRun(tb, st, time.Now().Add(-2*time.Minute), true)
	return id
}

// journalRun writes a run of benchPlan as an engine would; ended, it has
// every task passed and 300 events; running, it is half-way.
func journalRun(tb testing.TB, st store.Store, at time.Time, ended bool) string {
	tb.Helper()
	ctx := context.Background()
	p := benchPlan()
	plan, _ := json.Marshal(p)
	r, err := st.CreateRun(ctx, store.Run{ID: store.NewRunID(at), Env: "staging", Pipeline: p.Name, Version: "v42", Artifact: "/srv/a.tar.gz",
		SHA256: strings.Repeat("b", 64), Owner: "bench", Plan: plan, StartedAt: at})
	if err != nil {
		tb.Fatal(err)
	}
	k, total := 0, 40
	if !ended {
		total = 20
	}
	for _, s := range p.Stages {
		for _, j := range s.Jobs {
			for i, t := range j.Tasks {
				if k >= total {
					continue
				}
				k++
				rec := store.TaskRecord{RunID: r.ID, Stage: s.Name, Job: j.Name, Index: i, Kind: string(t.Kind), Host: t.Host}
				if _, err := st.StartTask(ctx, rec); err != nil {
					tb.Fatal(err)
				}
				rec.Status = store.TaskPassed
				if err := st.FinishTask(ctx, rec); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	if !ended {
		return r.ID
	}
	types := []string{"task", "detaching", "draining", "drained", "deploying", "activated", "attaching", "checking-health", "healthy", "info"}
	for i := range 300 {
		e := store.Event{RunID: r.ID, Type: types[i%len(types)], Host: fmt.Sprintf("web-%d", i%8+1), Message: fmt.Sprintf("step %d of the deploy", i)}
		if i%5 == 4 {
			e = store.Event{RunID: r.ID, Type: "verify", Data: verifyRow(i / 5), Message: "200 sent, 200 ok, 0 failed"}
		}
		if _, err := st.AppendEvent(ctx, e); err != nil {
			tb.Fatal(err)
		}
	}
	if err := st.UpdateRun(ctx, r.ID, store.RunUpdate{Status: store.RunSucceeded, EndedAt: at.Add(95 * time.Second)}); err != nil {
		tb.Fatal(err)
	}
	return r.ID
}

// benchServer is zerodown server in this process on a seeded journal.
type benchServer struct {
	url   string
	token string
	st    *watchedStore
	run   string // the seeded ended run
}

func startBenchServer(b *testing.B) *benchServer {
	b.Helper()
	dir := b.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
		return p
	}
	write("lb.token", "lb-token-0123456789abcdef\n")
	write("agent.token", "agent-token-0123456789abcdef\n")
	deployPath := write("zerodown.yaml", `app:
  name: hello
  run: ["./hello", "--listen", "127.0.0.1:${PORT}"]
environments:
  staging:
    lb: { driver: builtin, admin: "http://127.0.0.1:1", pool: hello, token_file: lb.token }
    hosts:
      - { name: web-1, agent: "http://127.0.0.1:1", target: "127.0.0.1:2", token_file: agent.token }
    strategy: { rolling: { batch: 1 } }
`)
	srvPath := write("server.yaml", "deploy: zerodown.yaml\ndata: data\n")
	cfg, err := config.LoadServer(srvPath)
	if err != nil {
		b.Fatal(err)
	}
	dcfg, err := config.LoadDeploy(deployPath)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		b.Fatal(err)
	}
	raw, err := sqlite.Open(context.Background(), filepath.Join(cfg.Data, "state.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close() })
	t0 := time.Now()
	bs := &benchServer{st: &watchedStore{Store: raw}}
	bs.run = seedJournal(b, raw, benchHistory)
	b.Logf("seeded %d runs in %s", benchHistory, time.Since(t0).Round(time.Millisecond))
	secret, _, err := server.CreateToken(context.Background(), raw, "bench", "approver", "bench")
	if err != nil {
		b.Fatal(err)
	}
	bs.token = secret
	srv, err := server.New(server.Options{Config: cfg, Deploy: dcfg, Store: bs.st})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("serve: %v", err)
		}
	})
	bs.url = "http://" + ln.Addr().String()
	return bs
}

// signedInTab opens a tab signed in through the form.
func signedInTab(b *testing.B, browser context.Context, bs *benchServer) context.Context {
	b.Helper()
	tab := newTab(b, browser)
	ctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(bs.url+"/login"), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", bs.token), chromedp.KeyEvent("\r"), chromedp.WaitVisible("#env-staging")); err != nil {
		b.Fatalf("sign in: %v", err)
	}
	return tab
}

// navTiming is what a page load took, in milliseconds from the
// navigation's start: to the first frame after the document was parsed
// (and its deferred script ran), and to the load event's end (Navigation
// Timing). Headless Chromium reports no paint timing entries (no first
// contentful paint), so the first frame is taken as a script sees it: the
// first animation frame after DOMContentLoaded, and the task after it.
type navTiming struct {
	Response, Frame, Load float64
}

// markFrame runs in every document before its own scripts.
const markFrame = `addEventListener('DOMContentLoaded', () => requestAnimationFrame(() => setTimeout(() => { window.zdFrame = performance.now(); })));`

const readTiming = `(() => {
	const n = performance.getEntriesByType('navigation')[0];
	if (!n || !n.loadEventEnd || !window.zdFrame) return false;
	return {Response: n.responseEnd - n.startTime, Frame: window.zdFrame - n.startTime, Load: n.loadEventEnd - n.startTime};
})()`

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}

// BenchmarkDashboard times, in Chromium, the first render of the run page
// (a finished run with 40 tasks and 300 events, 60 of them the verifier's;
// the page shows the last 100 of the others, and all with ?events=all)
// and of the history (10,000
// runs in the journal, unfiltered and filtered), each beside the JSON API
// of the same data loaded in the same tab; then the delay from an event's
// append to the journal to the run page's script taking it from the
// stream, beside the Go client on the same stream. It prints its tables;
// run it once (-benchtime 1x): bench/dashboard.sh does.
func BenchmarkDashboard(b *testing.B) {
	browser := startBrowser(b, context.Background())
	bs := startBenchServer(b)
	tab := signedInTab(b, browser, bs)
	var out strings.Builder
	for b.Loop() {
		out.Reset()
		firstRender(b, tab, bs, &out)
		eventDelay(b, tab, bs, &out)
	}
	fmt.Print(out.String())
}

func firstRender(b *testing.B, tab context.Context, bs *benchServer, out *strings.Builder) {
	cases := []struct{ name, page, peer string }{
		{"run page: 40 tasks, 60 samples charted, the last 100 of 240 events", "/runs/" + bs.run, "/api/v1/runs/" + bs.run},
		{"run page with its whole log (?events=all)", "/runs/" + bs.run + "?events=all", "/api/v1/runs/" + bs.run},
		{"history, first page of 50", "/runs", "/api/v1/runs"},
		{"history, env and status filtered", "/runs?env=production&status=failed", "/api/v1/runs?env=production&status=failed"},
	}
	if _, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: markFrame}); err != nil {
		b.Fatal(err)
	}
	type series struct{ response, frame, load []float64 }
	got := make([][2]series, len(cases))
	load := func(path string) navTiming {
		ctx, cancel := context.WithTimeout(tab, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(bs.url+path)); err != nil {
			b.Fatalf("load %s: %v", path, err)
		}
		// A document can swap its script context right after loading
		// (Chromium's JSON viewer does): the read is tried again then.
		var err error
		for range 3 {
			var t navTiming
			if t, err = chromedp.Run(ctx, chromedp.Poll[navTiming](readTiming, chromedp.WithPollingTimeout(10*time.Second))); err == nil {
				return t
			}
			if !strings.Contains(err.Error(), "Cannot find context") {
				break
			}
		}
		b.Fatalf("timing of %s: %v", path, err)
		return navTiming{}
	}
	for i := -2; i < benchLoads; i++ { // two rounds of warm-up
		for ci, c := range cases {
			for side, path := range []string{c.page, c.peer} {
				t := load(path)
				if i >= 0 {
					got[ci][side].response = append(got[ci][side].response, t.Response)
					got[ci][side].frame = append(got[ci][side].frame, t.Frame)
					got[ci][side].load = append(got[ci][side].load, t.Load)
				}
			}
		}
	}
	fmt.Fprintf(out, "\n### First render in Chromium (%d loads of each, interleaved, after two rounds of warm-up; ms from the navigation's start)\n\n", benchLoads)
	fmt.Fprintln(out, "| page | HTML received p50 | first frame p50 | p95 | load event p50 | p95 | its JSON API in the same tab: first frame p50 | p95 | page / JSON (first frame p50) |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for ci, c := range cases {
		pg, js := got[ci][0], got[ci][1]
		fmt.Fprintf(out, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f× |\n", c.name, quantile(pg.response, .5), quantile(pg.frame, .5), quantile(pg.frame, .95),
			quantile(pg.load, .5), quantile(pg.load, .95), quantile(js.frame, .5), quantile(js.frame, .95), quantile(pg.frame, .5)/quantile(js.frame, .5))
		b.ReportMetric(quantile(pg.frame, .5), fmt.Sprintf("render%d-p50-ms", ci))
	}
}

// eventDelay appends benchEvents events to a running run and times each
// from just before its append to the page's script taking it, and to the
// Go client reading it from its own stream.
func eventDelay(b *testing.B, tab context.Context, bs *benchServer, out *strings.Builder) {
	ctx := context.Background()
	id := journalRun(b, bs.st.Store, time.Now(), false)
	pctx, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(pctx, chromedp.Navigate(bs.url+"/runs/"+id), chromedp.WaitVisible("#pipeline"),
		chromedp.Evaluate[chromedp.Void](`window.zdArr = []; document.addEventListener('zerodown:event', e => zdArr.push([e.detail.seq, performance.timeOrigin + performance.now()])); true`)); err != nil {
		b.Fatal(err)
	}

	// The Go client: the API's SSE stream with a bearer token.
	var mu sync.Mutex
	goAt := map[int64]time.Time{}
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	req, _ := http.NewRequestWithContext(sctx, "GET", bs.url+"/api/v1/runs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+bs.token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("the Go client's stream: %v %v", err, resp)
	}
	go func() {
		defer resp.Body.Close()
		_ = api.ReadSSE(resp.Body, func(name, data string) error {
			now := time.Now()
			var e api.Event
			if json.Unmarshal([]byte(data), &e) == nil && e.Seq > 0 {
				mu.Lock()
				goAt[e.Seq] = now
				mu.Unlock()
			}
			return nil
		})
	}()

	// A first event shows both are listening.
	appended := map[int64]time.Time{}
	appendOne := func(i int) {
		e := store.Event{RunID: id, Type: "draining", Host: fmt.Sprintf("web-%d", i%8+1), Message: fmt.Sprintf("draining, %d in flight", i%7)}
		if i%5 == 4 {
			e = store.Event{RunID: id, Type: "verify", Data: verifyRow(i / 5), Message: "200 sent, 200 ok, 0 failed"}
		}
		at := time.Now()
		got, err := bs.st.appendEvent(ctx, e)
		if err != nil {
			b.Fatal(err)
		}
		appended[got.Seq] = at
	}
	appendOne(0)
	if _, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](`zdArr.length >= 1`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		b.Fatalf("the page never took the first event: %v", err)
	}
	first := int64(len(appended))
	tick := time.NewTicker(benchSpacing)
	for i := 1; i <= benchEvents; i++ {
		<-tick.C
		appendOne(i)
	}
	tick.Stop()
	last := first + benchEvents
	wctx, cancel2 := context.WithTimeout(tab, 30*time.Second)
	defer cancel2()
	if _, err := chromedp.Run(wctx, chromedp.Poll[chromedp.Void](`zdArr.length > 0 && zdArr[zdArr.length-1][0] >= `+strconv.FormatInt(last, 10),
		chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		b.Fatalf("the page did not take all %d events: %v", benchEvents, err)
	}
	arr, err := chromedp.Run(wctx, chromedp.Evaluate[[][2]float64](`zdArr`))
	if err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(goAt)
		mu.Unlock()
		if int64(n) >= last || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ms := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e6 }
	var page, goc []float64
	seen := map[int64]bool{}
	for _, a := range arr {
		seq := int64(a[0])
		if seq <= first || seen[seq] {
			continue
		}
		seen[seq] = true
		page = append(page, a[1]-ms(appended[seq]))
	}
	mu.Lock()
	for seq, at := range goAt {
		if seq > first {
			goc = append(goc, float64(at.Sub(appended[seq]).Microseconds())/1000)
		}
	}
	mu.Unlock()
	if len(page) != benchEvents || len(goc) != benchEvents {
		b.Fatalf("the page took %d events, the Go client %d; %d were appended", len(page), len(goc), benchEvents)
	}
	fmt.Fprintf(out, "\n### Event to browser (%d events, one every %s, a fifth of them the verifier's; ms from just before the append to the journal)\n\n", benchEvents, benchSpacing)
	fmt.Fprintln(out, "| reader | p50 | p90 | p99 | max |")
	fmt.Fprintln(out, "| --- | ---: | ---: | ---: | ---: |")
	for _, r := range []struct {
		name string
		xs   []float64
	}{{"Chromium: the run page's EventSource to its script", page}, {"Go client (api.ReadSSE) on the same stream", goc}} {
		fmt.Fprintf(out, "| %s | %.2f | %.2f | %.2f | %.2f |\n", r.name, quantile(r.xs, .5), quantile(r.xs, .9), quantile(r.xs, .99), quantile(r.xs, 1))
	}
	fmt.Fprintf(out, "\nChromium / Go client: %.2f× at p50, %.2f× at p99. Target: p99 under 100 ms in Chromium: %s.\n",
		quantile(page, .5)/quantile(goc, .5), quantile(page, .99)/quantile(goc, .99), map[bool]string{true: "met", false: "NOT met"}[quantile(page, .99) < 100])
	b.ReportMetric(quantile(page, .99), "event-p99-ms")
	b.ReportMetric(quantile(goc, .99), "event-go-p99-ms")
	if err := bs.st.UpdateRun(ctx, id, store.RunUpdate{Status: store.RunSucceeded, EndedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
}

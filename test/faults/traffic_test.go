package faults

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerodown/zerodown/internal/sampleapp"
)

// Traffic shape: an external client, not the verifier, as a shop's users
// would be. Every other request is a POST to an endpoint that takes a while,
// as a checkout does, so a host always has POSTs in flight when a fault
// strikes it; each carries a unique X-Request-Id that the apps log as they
// start running it.
const (
	trafficRate    = 30 // requests per second, GETs and POSTs alternating
	trafficWorkers = 64 // enough that a slow answer never delays the schedule
	postSleep      = 200 * time.Millisecond
	maxRequests    = 6000
	maxDuration    = 2 * time.Minute
)

// traffic fires GETs and POSTs at the balancer at a constant rate until
// stopped, bounded in count and time, and remembers how every request
// ended.
type traffic struct {
	prefix string
	ok     atomic.Int64

	mu       sync.Mutex
	gets     int
	getFails []string
	posts    map[string]postResult // by request id
	// late counts requests that could not start on schedule.
	late int

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// postResult is how the client saw one POST end.
type postResult struct {
	ok  bool
	err string
}

func startTraffic(url, prefix string) *traffic {
	tr := &traffic{prefix: prefix, posts: map[string]postResult{}, stop: make(chan struct{})}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: trafficWorkers, IdleConnTimeout: 30 * time.Second},
	}
	ticks := make(chan int, trafficWorkers)
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		defer close(ticks)
		tick := time.NewTicker(time.Second / trafficRate)
		defer tick.Stop()
		deadline := time.After(maxDuration)
		for i := 0; i < maxRequests; i++ {
			select {
			case <-tr.stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			select {
			case ticks <- i:
			default:
				tr.mu.Lock()
				tr.late++
				tr.mu.Unlock()
			}
		}
	}()
	for w := 0; w < trafficWorkers; w++ {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := range ticks {
				if i%2 == 0 {
					tr.get(client, url)
				} else {
					tr.post(client, url, fmt.Sprintf("%s-%d", prefix, i))
				}
			}
		}()
	}
	return tr
}

func (tr *traffic) get(client *http.Client, url string) {
	err := func() error {
		resp, err := client.Get(url + "/")
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("body: %w", err)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		case !strings.HasPrefix(string(body), "hello from "):
			return fmt.Errorf("unexpected body %q", body)
		}
		return nil
	}()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.gets++
	if err != nil {
		tr.getFails = append(tr.getFails, "GET: "+err.Error())
		return
	}
	tr.ok.Add(1)
}

func (tr *traffic) post(client *http.Client, url, id string) {
	err := func() error {
		req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/order?sleep=%s", url, postSleep), strings.NewReader(id))
		if err != nil {
			return err
		}
		req.Header.Set(sampleapp.RequestIDHeader, id)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			return fmt.Errorf("body: %w", err)
		case resp.StatusCode != http.StatusOK:
			return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
		case string(body) != id:
			return fmt.Errorf("echo %q, want %q", body, id)
		}
		return nil
	}()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.posts[id] = postResult{err: err.Error()}
		return
	}
	tr.posts[id] = postResult{ok: true}
	tr.ok.Add(1)
}

// finish stops the schedule and waits for the requests in flight.
func (tr *traffic) finish() {
	tr.stopOnce.Do(func() { close(tr.stop) })
	tr.wg.Wait()
}

// tally is the client's view checked against the apps' request log.
type tally struct {
	gets, getsFailed   int
	posts, postsFailed int
	late               int
	// duplicated counts POSTs the apps ran more than once.
	duplicated int
	// lost describes each failed POST: whether and where it ran.
	lost []lostPost
	// problems are breaches of the rules that hold under every fault:
	// a POST answered 2xx ran exactly once, no POST ran twice, the apps
	// ran nothing the client did not send.
	problems []string
	// getFailures are the first failed GETs, as the client saw them.
	getFailures []string
}

// lostPost is a POST the client saw fail.
type lostPost struct {
	id, err string
	// ranOn and ranPID name the app process that ran it; empty and 0 if
	// none did.
	ranOn  string
	ranPID int
}

func (tl tally) failed() int { return tl.getsFailed + tl.postsFailed }
func (tl tally) total() int  { return tl.gets + tl.posts }

// account reads the request log and checks every POST against it.
func (tr *traffic) account(requestLog string) (tally, error) {
	data, err := os.ReadFile(requestLog)
	if err != nil && !os.IsNotExist(err) {
		return tally{}, err
	}
	entries, err := sampleapp.ParseRequestLog(string(data))
	if err != nil {
		return tally{}, err
	}
	ran := map[string][]sampleapp.RequestLogEntry{} // by id
	for _, e := range entries {
		ran[e.ID] = append(ran[e.ID], e)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tl := tally{gets: tr.gets, getsFailed: len(tr.getFails), posts: len(tr.posts), late: tr.late}
	tl.getFailures = tr.getFails[:min(len(tr.getFails), 5)]
	if tr.late > 0 {
		tl.problems = append(tl.problems, fmt.Sprintf("%d requests could not start on schedule: the client was starved", tr.late))
	}
	ids := make([]string, 0, len(tr.posts))
	for id := range tr.posts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r, n := tr.posts[id], len(ran[id])
		if n > 1 {
			tl.duplicated++
			tl.problems = append(tl.problems, fmt.Sprintf("POST %s ran %d times (%v); the client saw %s", id, n, ran[id], outcome(r)))
		}
		if r.ok && n == 0 {
			tl.problems = append(tl.problems, fmt.Sprintf("POST %s was answered 200 but no app ran it", id))
		}
		if !r.ok {
			tl.postsFailed++
			lp := lostPost{id: id, err: r.err}
			if n > 0 {
				lp.ranOn, lp.ranPID = ran[id][0].Addr, ran[id][0].PID
			}
			tl.lost = append(tl.lost, lp)
		}
	}
	for id := range ran {
		if _, sent := tr.posts[id]; !sent {
			tl.problems = append(tl.problems, fmt.Sprintf("an app ran POST %s, which the client never sent", id))
		}
	}
	return tl, nil
}

func outcome(r postResult) string {
	if r.ok {
		return "200"
	}
	return "failure: " + r.err
}

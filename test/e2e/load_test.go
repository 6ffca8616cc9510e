package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// load fires GET and POST requests at a constant rate through the load
// balancer until stopped, bounded in count and time, and records every
// failure. POSTs matter: clients and proxies retry failed GETs silently.
type load struct {
	ok, failed atomic.Int64
	// failedGets counts the failures of GETs (every even request); the
	// others are POSTs or requests that could not start.
	failedGets atomic.Int64
	mu         sync.Mutex
	failures   []string
	stop       chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup
}

func startLoad(url string, rate int, maxRequests int64, maxDuration time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	client := &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second},
	}
	ticks := make(chan int64, 64)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(ticks)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		deadline := time.After(maxDuration)
		for i := int64(0); i < maxRequests; i++ {
			select {
			case <-l.stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			select {
			case ticks <- i:
			default:
				l.fail(fmt.Sprintf("request %d could not start: all workers busy", i))
			}
		}
	}()
	// Enough workers that a loaded machine's pauses do not run the pool
	// dry: "could not start" is the client's failure, not the system's.
	for w := 0; w < 32; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := range ticks {
				l.one(client, url, i)
			}
		}()
	}
	return l
}

func (l *load) one(client *http.Client, url string, i int64) {
	var resp *http.Response
	var err error
	payload := fmt.Sprintf("payload-%d", i)
	if i%2 == 0 {
		resp, err = client.Get(url + "/")
	} else {
		resp, err = client.Post(url+"/", "text/plain", strings.NewReader(payload))
	}
	if err != nil {
		l.failOne(i, fmt.Sprintf("request %d: %v", i, err))
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		l.failOne(i, fmt.Sprintf("request %d: body: %v", i, err))
	case resp.StatusCode != 200:
		l.failOne(i, fmt.Sprintf("request %d: status %d: %s", i, resp.StatusCode, body))
	case i%2 == 0 && !strings.HasPrefix(string(body), "hello from "):
		l.failOne(i, fmt.Sprintf("request %d: unexpected body %q", i, body))
	case i%2 == 1 && string(body) != payload:
		l.failOne(i, fmt.Sprintf("request %d: echo %q, want %q", i, body, payload))
	default:
		l.ok.Add(1)
	}
}

func (l *load) failOne(i int64, msg string) {
	if i%2 == 0 {
		l.failedGets.Add(1)
	}
	l.fail(msg)
}

func (l *load) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 20 {
		l.failures = append(l.failures, msg)
	}
	l.mu.Unlock()
}

// finish stops the load and waits for requests in flight.
func (l *load) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

func (l *load) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed; first failures:\n  %s", l.ok.Load(), l.failed.Load(), strings.Join(l.failures, "\n  "))
}

package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/proctest"
)

// lossyPath sits between a client and an agent and loses activation calls
// the way a partition does: dropRequest loses the request before the agent
// sees it, dropAnswer lets the agent run it and loses the answer.
type lossyPath struct {
	dropRequest, dropAnswer atomic.Int32 // how many more to lose
	posts                   atomic.Int32 // activation requests that reached the agent
	cutUpload               atomic.Int32 // uploads to cut halfway
}

func (l *lossyPath) start(t *testing.T, agentURL string) string {
	u, _ := url.Parse(agentURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && l.cutUpload.Add(-1) >= 0 {
			_, _ = io.CopyN(io.Discard, r.Body, r.ContentLength/2)
			hangUp(w)
			return
		}
		switchCall := r.Method == http.MethodPost && (r.URL.Path == "/v1/activate" || r.URL.Path == "/v1/rollback")
		if switchCall && l.dropRequest.Add(-1) >= 0 {
			hangUp(w)
			return
		}
		if switchCall {
			l.posts.Add(1)
		}
		if switchCall && l.dropAnswer.Add(-1) >= 0 {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			hangUp(w)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// hangUp closes the client's connection without an answer.
func hangUp(w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		c.Close()
	}
}

func (f *fixture) clientVia(t *testing.T, base string) *Client {
	c, err := NewClient(ClientConfig{URL: base, Token: f.agent.Token()})
	if err != nil {
		t.Fatal(err)
	}
	c.observeEvery = 50 * time.Millisecond
	return c
}

func TestActivationSurvivesALostAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.upload(helloRelease(t, "v2"))
	f.activate("v1")
	l := &lossyPath{}
	l.dropAnswer.Store(1)
	c := f.clientVia(t, l.start(t, f.url))

	res, err := c.ActivateWith(ctxFor(t, 30*time.Second), ActivateRequest{Version: "v2"})
	if err != nil {
		t.Fatalf("activation whose answer was lost: %v", err)
	}
	if res.Version != "v2" || res.From != "v1" || res.PID == 0 {
		t.Fatalf("result read from the status: %+v", res)
	}
	f.mustServe("v2")
	if n := l.posts.Load(); n != 1 {
		t.Fatalf("the agent got the activation %d times, want once", n)
	}
}

func TestActivationRequestLostIsSentAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	f.upload(helloRelease(t, "v2"))
	l := &lossyPath{}
	l.dropRequest.Store(2)
	c := f.clientVia(t, l.start(t, f.url))

	res, err := c.ActivateWith(ctxFor(t, 30*time.Second), ActivateRequest{Version: "v2"})
	if err != nil || res.Version != "v2" {
		t.Fatalf("activation whose request was lost twice: %+v %v", res, err)
	}
	f.mustServe("v2")
	if n := l.posts.Load(); n != 1 {
		t.Fatalf("the agent ran the activation %d times, want once", n)
	}
	// A failure whose answer was lost is reported as the failure it was.
	f.upload(helloRelease(t, "v3", "--fail-health"))
	l.dropAnswer.Store(1)
	_, err = c.ActivateWith(ctxFor(t, 60*time.Second), ActivateRequest{Version: "v3"})
	var ae *APIError
	if !errors.Is(err, host.ErrUnhealthy) || !errors.As(err, &ae) || ae.Failure == nil || ae.Failure.Restored != "v2" {
		t.Fatalf("failed activation with a lost answer: %v, want the failure with v2 restored", err)
	}
}

func TestSameRequestIDRunsOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	f.upload(helloRelease(t, "v2"))
	req := ActivateRequest{Version: "v2", ID: "deploy-42-host-1"}
	first, err := f.client.ActivateWith(ctxFor(t, 30*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.client.ActivateWith(ctxFor(t, 30*time.Second), req)
	if err != nil || again.PID != first.PID || again.Unchanged {
		t.Fatalf("same ID asked again: %+v %v, want the first answer %+v", again, err, first)
	}
	st := f.status()
	if st.LastActivation == nil || st.LastActivation.ID != req.ID || st.LastActivation.Result == nil {
		t.Fatalf("status last_activation %+v", st.LastActivation)
	}
}

// An activation reports its phase while it runs, and the caller can stop
// waiting at once; the agent finishes on its own.
func TestActivationProgressAndStopWaiting(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.upload(helloRelease(t, "v1"))
	f.activate("v1")
	gate := f.uploadGated(t, "v2")
	c := f.clientVia(t, f.url)

	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx = host.WithProgress(ctx, func(msg string) {
		mu.Lock()
		seen = append(seen, msg)
		mu.Unlock()
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.ActivateWith(ctx, ActivateRequest{Version: "v2"})
		done <- err
	}()
	proctest.Eventually(t, 10*time.Second, "progress naming the hooks phase", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && strings.Contains(seen[len(seen)-1], "activate: hooks")
	})
	aborted := errors.New("aborted by the operator")
	cancel(aborted)
	select {
	case err := <-done:
		if !errors.Is(err, aborted) || !strings.Contains(err.Error(), "finishes or rolls back on its own") {
			t.Fatalf("stopped wait: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("cancelling did not end the wait at once")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 30*time.Second, "the agent to finish the activation on its own", func() bool {
		st := f.status()
		return st.Activation == nil && st.Version == "v2" && st.Healthy
	})
}

// An upload cut halfway is sent again from the start: the agent kept
// nothing of it.
func TestUploadCutIsSentAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l := &lossyPath{}
	l.cutUpload.Store(1)
	c := f.clientVia(t, l.start(t, f.url))
	res, err := c.Put(ctxFor(t, 30*time.Second), helloRelease(t, "v1"))
	if err != nil || res.Unchanged || res.Release.Version != "v1" {
		t.Fatalf("upload cut once: %+v %v", res, err)
	}
	if l.cutUpload.Load() >= 0 {
		t.Fatal("the upload was never cut")
	}
}

// An agent that never answers fails the call once the client's RetryFor
// has passed without a word, saying the request may not have arrived.
func TestActivationAgainstUnreachableAgent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	c, err := NewClient(ClientConfig{URL: closed, Token: "0123456789abcdef", RetryFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.observeEvery = 50 * time.Millisecond
	start := time.Now()
	_, err = c.ActivateWith(ctxFor(t, 30*time.Second), ActivateRequest{Version: "v2"})
	if err == nil || !strings.Contains(err.Error(), "may never have reached the agent") {
		t.Fatalf("activation against a closed port: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("gave up after %s, want about the 300ms RetryFor", took)
	}
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

func closeNow(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPayloadAndHeaders(t *testing.T) {
	rc := newReceiver(t, nil)
	var w warnings
	n := New([]Webhook{{URL: rc.URL + "/hook", Secret: "s3cr3t"}}, fast(&w))
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	n.Send(Payload{Event: Succeeded, Run: "r-1", Environment: "production", Version: "v1.4.2", SHA256: "abc", At: at})
	closeNow(t, n)

	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	for k, want := range map[string]string{
		"Content-Type":     "application/json",
		"User-Agent":       "zerodown",
		"X-Zerodown-Event": Succeeded,
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if r.header.Get("X-Zerodown-Delivery") == "" {
		t.Error("no X-Zerodown-Delivery")
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"event": "succeeded", "run": "r-1", "environment": "production", "version": "v1.4.2",
		"sha256": "abc", "at": "2026-12-01T10:00:00Z",
		"text": "zerodown: v1.4.2 to production succeeded (run r-1)",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("body\n%v\nwant\n%v", got, want)
	}
	if w.String() != "" {
		t.Errorf("warned: %s", w.String())
	}
}

func TestSignature(t *testing.T) {
	signed, unsigned := newReceiver(t, nil), newReceiver(t, nil)
	var w warnings
	n := New([]Webhook{{URL: signed.URL, Secret: "s3cr3t"}, {URL: unsigned.URL}}, fast(&w))
	n.Send(Payload{Event: Failed, Run: "r-1", Message: "web-2 unhealthy"})
	closeNow(t, n)

	r := signed.requests()[0]
	sig := r.header.Get(SignatureHeader)
	if !Verify("s3cr3t", r.body, sig) {
		t.Fatalf("signature %q does not verify the body", sig)
	}
	changed := []byte(strings.Replace(string(r.body), "failed", "succeeded", 1))
	if Verify("s3cr3t", changed, sig) {
		t.Fatal("the signature verifies a changed body")
	}
	if got := unsigned.requests()[0].header.Get(SignatureHeader); got != "" {
		t.Fatalf("a webhook without a secret got a signature: %q", got)
	}
}

func TestEventsFilter(t *testing.T) {
	all, some := newReceiver(t, nil), newReceiver(t, nil)
	var w warnings
	n := New([]Webhook{{URL: all.URL}, {URL: some.URL, Events: []string{Succeeded, Failed}}}, fast(&w))
	for _, e := range []string{RunStarted, WaitingForApproval, Succeeded} {
		n.Send(Payload{Event: e, Run: "r-1"})
	}
	closeNow(t, n)
	if all.count() != 3 {
		t.Errorf("the webhook for all events got %d", all.count())
	}
	reqs := some.requests()
	if len(reqs) != 1 || reqs[0].header.Get("X-Zerodown-Event") != Succeeded {
		t.Errorf("the filtered webhook got %d requests", len(reqs))
	}
}

// A slow webhook holds up no other, and each gets a run's events in
// order.
func TestOrderAndIndependence(t *testing.T) {
	slow := newReceiver(t, block(t))
	var w warnings
	// The first request to flaky fails, so ordering holds across retries.
	flaky := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	n := New([]Webhook{{URL: slow.URL}, {URL: flaky.URL}}, fast(&w))
	const events = 20
	for i := range events {
		n.Send(Payload{Event: RunStarted, Run: fmt.Sprintf("r-%d", i)})
	}
	proctest.Eventually(t, 3*time.Second, "the fast webhook to get every event", func() bool { return flaky.count() == events+1 })
	var runs []string
	for _, r := range flaky.requests()[1:] {
		var p Payload
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, p.Run)
	}
	for i, run := range runs {
		if run != fmt.Sprintf("r-%d", i) {
			t.Fatalf("out of order: %v", runs)
		}
	}
	if slow.count() != 1 {
		t.Fatalf("the blocked webhook got %d requests", slow.count())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err == nil || !strings.Contains(err.Error(), "gave up on 20 undelivered") {
		t.Fatalf("Close: %v", err)
	}
}

// A webhook that never answers: Send does not wait, and Close returns by
// its deadline counting what was not delivered.
func TestNeverAnswers(t *testing.T) {
	rc := newReceiver(t, block(t))
	var w warnings
	opts := fast(&w)
	opts.Timeout = time.Minute
	n := New([]Webhook{{URL: rc.URL}}, opts)
	start := time.Now()
	for range 3 {
		n.Send(Payload{Event: RunStarted, Run: "r-1"})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Send took %s", d)
	}
	proctest.Eventually(t, 3*time.Second, "the first request", func() bool { return rc.count() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err := n.Close(ctx)
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Fatalf("Close took %s past a 200ms deadline", d)
	}
	if err == nil || !strings.Contains(err.Error(), "gave up on 3 undelivered") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	if !strings.Contains(w.String(), "gave up on 3 undelivered") {
		t.Fatalf("warnings: %s", w.String())
	}
	if err2 := n.Close(context.Background()); err2 != err {
		t.Fatalf("a second Close: %v", err2)
	}
	n.Send(Payload{Event: Succeeded, Run: "r-1"})
	if !strings.Contains(w.String(), "the notifier is closed") {
		t.Fatalf("Send after Close did not warn: %s", w.String())
	}
}

func TestQueueFullDropsOldest(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			<-release
		}
	})
	var w warnings
	opts := fast(&w)
	opts.QueueSize = 2
	n := New([]Webhook{{URL: rc.URL}}, opts)
	n.Send(Payload{Event: RunStarted, Run: "r-1"})
	proctest.Eventually(t, 3*time.Second, "the first request", func() bool { return rc.count() == 1 })
	for i := 2; i <= 5; i++ {
		n.Send(Payload{Event: RunStarted, Run: fmt.Sprintf("r-%d", i)})
	}
	close(release)
	closeNow(t, n)

	var runs []string
	for _, r := range rc.requests() {
		var p Payload
		_ = json.Unmarshal(r.body, &p)
		runs = append(runs, p.Run)
	}
	if fmt.Sprint(runs) != "[r-1 r-4 r-5]" {
		t.Fatalf("delivered %v, want r-1 r-4 r-5", runs)
	}
	warned := w.String()
	if !strings.Contains(warned, "dropped the oldest, run_started of run r-2") || !strings.Contains(warned, "run r-3") {
		t.Fatalf("warnings: %s", warned)
	}
}

func TestValidate(t *testing.T) {
	if err := (Webhook{URL: "https://hooks.example.com/x", Events: []string{Succeeded}}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []Webhook{
		{URL: "hooks.example.com/x"},
		{URL: "ftp://hooks.example.com/x"},
		{URL: "https://hooks.example.com/x", Events: []string{"success"}},
	} {
		if w.Validate() == nil {
			t.Errorf("%+v validated", w)
		}
	}
}

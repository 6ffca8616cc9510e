package notify

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

func TestRetryThenSuccess(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
		}
	})
	var w warnings
	n := New([]Webhook{{URL: rc.URL, Secret: "s3cr3t"}}, fast(&w))
	n.Send(Payload{Event: Succeeded, Run: "r-1"})
	closeNow(t, n)
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	id := reqs[0].header.Get("X-Zerodown-Delivery")
	for _, r := range reqs {
		if r.header.Get("X-Zerodown-Delivery") != id || string(r.body) != string(reqs[0].body) {
			t.Fatal("a retry changed the delivery ID or the body")
		}
		if !Verify("s3cr3t", r.body, r.header.Get(SignatureHeader)) {
			t.Fatal("a retry's signature does not verify")
		}
	}
	if w.String() != "" {
		t.Fatalf("warned: %s", w.String())
	}
}

// Retry-After is honoured, up to MaxBackoff.
func TestRetryAfter(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	var w warnings
	opts := fast(&w)
	opts.MaxBackoff = 300 * time.Millisecond
	n := New([]Webhook{{URL: rc.URL}}, opts)
	n.Send(Payload{Event: Succeeded, Run: "r-1"})
	closeNow(t, n)
	reqs := rc.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	// The backoff alone would be 1ms; Retry-After's 1s is capped at 300ms.
	if gap := reqs[1].at.Sub(reqs[0].at); gap < 290*time.Millisecond || gap > 900*time.Millisecond {
		t.Fatalf("retried after %s, want about 300ms", gap)
	}
	if got := parseRetryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); got < 59*time.Minute {
		t.Fatalf("an HTTP-date Retry-After read as %s", got)
	}
}

func TestClientErrorNotRetried(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
	})
	var w warnings
	n := New([]Webhook{{URL: rc.URL}}, fast(&w))
	n.Send(Payload{Event: Failed, Run: "r-1"})
	closeNow(t, n)
	if rc.count() != 1 {
		t.Fatalf("%d requests, want 1", rc.count())
	}
	if got := w.String(); !strings.Contains(got, "400 Bad Request: invalid_payload") || !strings.Contains(got, "not retried") {
		t.Fatalf("warning: %q", got)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target := newReceiver(t, nil)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	})
	var w warnings
	n := New([]Webhook{{URL: rc.URL}}, fast(&w))
	n.Send(Payload{Event: Failed, Run: "r-1"})
	closeNow(t, n)
	if target.count() != 0 || !strings.Contains(w.String(), "302 Found") {
		t.Fatalf("redirect followed (%d) or not warned: %s", target.count(), w.String())
	}
}

// A timed-out attempt is retried, with the same delivery.
func TestAttemptTimeout(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			<-r.Context().Done()
		}
	})
	var w warnings
	opts := fast(&w)
	opts.Timeout = 100 * time.Millisecond
	n := New([]Webhook{{URL: rc.URL}}, opts)
	n.Send(Payload{Event: Succeeded, Run: "r-1"})
	closeNow(t, n)
	if rc.count() != 2 || w.String() != "" {
		t.Fatalf("%d requests, warnings %q", rc.count(), w.String())
	}
}

// A refused connection is retried, then warned about; neither the secret
// nor the URL's path (Slack's is a credential) is in any warning.
func TestConnectionRefusedAndNoSecretInWarnings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	bad := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, "no", http.StatusForbidden)
	})
	down := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.WriteHeader(http.StatusBadGateway)
	})
	stuck := newReceiver(t, block(t))
	const secret, token = "s3cr3t-hmac-key", "T000/B000/XXXXtoken"
	var w warnings
	opts := fast(&w)
	opts.Retries = 2
	n := New([]Webhook{
		{URL: "http://" + addr + "/services/" + token, Secret: secret},
		{URL: bad.URL + "/services/" + token, Secret: secret},
		{URL: down.URL + "/services/" + token, Secret: secret},
		{URL: stuck.URL + "/services/" + token, Secret: secret},
		{URL: "http://user:" + secret + "@" + addr + "/" + token},
		{URL: "://" + token},
	}, opts)
	n.Send(Payload{Event: Failed, Run: "r-1"})
	for _, rc := range []*receiver{bad, down, stuck} {
		proctest.Eventually(t, 3*time.Second, "the requests", func() bool { return rc.count() > 0 })
	}
	proctest.Eventually(t, 3*time.Second, "5 warnings", func() bool { return strings.Count(w.String(), "\n") >= 4 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	closeErr := n.Close(ctx)
	if closeErr == nil {
		t.Fatal("Close gave up on the stuck webhook without an error")
	}
	all := w.String() + "\n" + closeErr.Error()
	t.Log(all)
	if !strings.Contains(all, "webhook 1 (http://"+addr+"): failed of run r-1 not delivered (after 3 attempts)") {
		t.Error("the refused connection was not retried twice")
	}
	if down.count() != 3 {
		t.Errorf("a 502 was tried %d times, want 3", down.count())
	}
	if strings.Contains(all, secret) || strings.Contains(all, token) {
		t.Fatal("a secret or a URL path in a warning")
	}
}

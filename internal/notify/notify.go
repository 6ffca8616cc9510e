// Package notify posts the outcome of deploy runs to webhooks: run
// started, waiting for approval, succeeded, failed, rolled back, needs
// attention. A deploy never waits for a webhook and never fails because of
// one: Send only queues, each webhook is delivered to by its own goroutine
// with retries, and what cannot be delivered is reported through Warn.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Event types, the payload's "event" field.
const (
	RunStarted         = "run_started"
	WaitingForApproval = "waiting_for_approval"
	Succeeded          = "succeeded"
	Failed             = "failed"
	RolledBack         = "rolled_back"
	NeedsAttention     = "needs_attention"
)

// Events lists every event type, for validating a webhook's filter.
var Events = []string{RunStarted, WaitingForApproval, Succeeded, Failed, RolledBack, NeedsAttention}

// Webhook is one receiver of notifications.
type Webhook struct {
	URL string
	// Secret is the HMAC-SHA256 key of X-Zerodown-Signature; empty: the
	// requests are not signed.
	Secret string
	// Events are the event types sent to this webhook; empty: all.
	Events []string
}

// Validate reports a URL that is not http(s) with a host, or an unknown
// event type. The URL itself is not repeated: its path may be a
// credential (Slack's is).
func (w Webhook) Validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook url must be http:// or https:// with a host")
	}
	for _, e := range w.Events {
		if !slices.Contains(Events, e) {
			return fmt.Errorf("webhook event %q is not one of %s", e, strings.Join(Events, ", "))
		}
	}
	return nil
}

// Payload is the JSON body of every request, documented in
// docs/notifications.md.
type Payload struct {
	Event       string    `json:"event"`
	Run         string    `json:"run"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
	SHA256      string    `json:"sha256,omitempty"`
	At          time.Time `json:"at"`
	Message     string    `json:"message,omitempty"`
	// Stage is the stage waiting, for waiting_for_approval.
	Stage string `json:"stage,omitempty"`
	// Text is one human line, the field Slack shows. Send fills it when
	// empty.
	Text string `json:"text"`
}

// Options tune delivery; the zero value gives the defaults.
type Options struct {
	// Client sends the requests; nil: a client that does not follow
	// redirects (a followed 301 or 302 turns the POST into a GET).
	Client *http.Client
	// Retries after the first attempt; 0: 5, negative: none.
	Retries int
	// Backoff is the first wait before a retry, doubled each time up to
	// MaxBackoff; 0: 500ms and 10s. MaxBackoff also caps Retry-After.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds each attempt; 0: 5s.
	Timeout time.Duration
	// QueueSize is how many notifications may wait for each webhook; past
	// it the oldest is dropped. 0: 100.
	QueueSize int
	// Warn reports what was not delivered and why; nil: nothing is
	// reported. Calls never overlap. Secrets are never in the text, and a
	// webhook is named by its number and host only.
	Warn func(string)
	// UserAgent of the requests; empty: "zerodown".
	UserAgent string
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Retries == 0 {
		o.Retries = 5
	}
	o.Retries = max(o.Retries, 0)
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 100
	}
	if o.UserAgent == "" {
		o.UserAgent = "zerodown"
	}
	return o
}

// Notifier delivers payloads to webhooks in the background.
type Notifier struct {
	opts  Options
	hooks []*hook
	// ctx ends the deliveries still going when Close gives up.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{} // closed when every hook's goroutine has returned

	warnMu    sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

// hook is one webhook with its queue and the goroutine that delivers it:
// one per webhook, so a slow receiver holds up no other, and one delivery
// at a time, so a run's events arrive in order.
type hook struct {
	Webhook
	n    *Notifier
	name string // for messages: number and host, never the path or secret

	mu     sync.Mutex
	queue  []delivery
	closed bool
	// abandoned counts deliveries cut off by Close's deadline.
	abandoned int
	wake      chan struct{}
}

// delivery is one payload for one webhook; its ID and body are the same
// on every attempt, so a receiver can drop repeats.
type delivery struct {
	id, event, run string
	body           []byte
}

// New starts delivering to hooks. Close ends it.
func New(hooks []Webhook, opts Options) *Notifier {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{opts: opts.withDefaults(), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	for i, w := range hooks {
		h := &hook{Webhook: w, n: n, name: hookName(i, w.URL), wake: make(chan struct{}, 1)}
		n.hooks = append(n.hooks, h)
		n.wg.Add(1)
		go h.run()
	}
	go func() { n.wg.Wait(); close(n.done) }()
	return n
}

// hookName names webhook i by its number and scheme://host: the path of a
// webhook URL is often its credential (Slack's is).
func hookName(i int, raw string) string {
	name := fmt.Sprintf("webhook %d", i+1)
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		name += " (" + u.Scheme + "://" + u.Host + ")"
	}
	return name
}

// Send queues p for every webhook that wants its event and returns at
// once. It fills Text when empty and At when zero.
func (n *Notifier) Send(p Payload) {
	if p.Text == "" {
		p.Text = text(p)
	}
	if p.At.IsZero() {
		p.At = time.Now().UTC()
	}
	// One body for every webhook and every attempt: the signature is over
	// these exact bytes.
	body, err := json.Marshal(p)
	if err != nil {
		n.warn(fmt.Sprintf("notify: %s of run %s not sent: %v", p.Event, p.Run, err))
		return
	}
	for _, h := range n.hooks {
		if len(h.Events) == 0 || slices.Contains(h.Events, p.Event) {
			h.enqueue(delivery{id: rand.Text(), event: p.Event, run: p.Run, body: body})
		}
	}
}

func (h *hook) enqueue(d delivery) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.n.warn(fmt.Sprintf("notify: %s: %s of run %s not sent: the notifier is closed", h.name, d.event, d.run))
		return
	}
	var dropped *delivery
	if len(h.queue) >= h.n.opts.QueueSize {
		// The newest notification (a run's outcome) matters more than the
		// oldest one waiting behind a slow receiver.
		old := h.queue[0]
		dropped = &old
		h.queue = h.queue[1:]
	}
	h.queue = append(h.queue, d)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	if dropped != nil {
		h.n.warn(fmt.Sprintf("notify: %s: %d notifications waiting, dropped the oldest, %s of run %s",
			h.name, h.n.opts.QueueSize, dropped.event, dropped.run))
	}
}

// run delivers the queue in order until the notifier is closed and the
// queue empty, or Close gives up.
func (h *hook) run() {
	defer h.n.wg.Done()
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			closed := h.closed
			h.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-h.wake:
			case <-h.n.ctx.Done():
				return
			}
			continue
		}
		d := h.queue[0]
		h.queue[0] = delivery{} // the body is not kept alive by the array
		h.queue = h.queue[1:]
		h.mu.Unlock()
		if h.n.ctx.Err() != nil {
			h.mu.Lock()
			h.abandoned++
			h.mu.Unlock()
			continue
		}
		h.deliver(h.n.ctx, d)
	}
}

// Close waits for the queued notifications to be delivered (or given up
// on) until ctx ends, then gives up on the rest. Its error, only ever for
// a ctx that ended first, says how many were not delivered; it is for
// printing, never a reason to fail a deploy. Send after Close only warns.
func (n *Notifier) Close(ctx context.Context) error {
	n.closeOnce.Do(func() { n.closeErr = n.close(ctx) })
	return n.closeErr
}

func (n *Notifier) close(ctx context.Context) error {
	for _, h := range n.hooks {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	select {
	case <-n.done:
		n.cancel()
		return nil
	case <-ctx.Done():
	}
	// Every wait and request of a delivery is under n.ctx, so the
	// goroutines return at once and the count below is exact.
	n.cancel()
	<-n.done
	total := 0
	var per []string
	for _, h := range n.hooks {
		h.mu.Lock()
		k := h.abandoned + len(h.queue)
		h.mu.Unlock()
		if k > 0 {
			total += k
			per = append(per, fmt.Sprintf("%s: %d", h.name, k))
		}
	}
	if total == 0 {
		return nil
	}
	noun := "notifications"
	if total == 1 {
		noun = "notification"
	}
	err := fmt.Errorf("notify: gave up on %d undelivered %s (%s): %w", total, noun, strings.Join(per, ", "), context.Cause(ctx))
	n.warn(err.Error())
	return err
}

func (n *Notifier) warn(msg string) {
	if n.opts.Warn == nil {
		return
	}
	n.warnMu.Lock()
	defer n.warnMu.Unlock()
	n.opts.Warn(msg)
}

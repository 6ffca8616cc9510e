package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/zerodown/zerodown/internal/host"
	"github.com/zerodown/zerodown/internal/retry"
)

// observeEvery is how often the agent's status is read while an
// activation runs.
const observeEvery = time.Second

// statusBound bounds one status read while observing; a read that takes
// longer is a sign of trouble, reported as such, not a wait.
const statusBound = 5 * time.Second

// defaultUnreachable is how long an activation is observed without a word
// from the agent before the call fails, when the client has no RetryFor:
// long enough for a partition or an agent restart, short enough that a
// dead host does not hold a run for the whole activation bound.
const defaultUnreachable = 2 * time.Minute

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type switchAnswer struct {
	res ActivateResult
	err error
}

// switchObserved runs an activation or rollback as a request plus
// observation. The request carries an ID; while it is out, the agent's
// status is read every second: its phase is reported as progress, an end
// the answer did not bring (the answer lost to a partition or a reset) is
// read from the status, and a request that never arrived is sent again
// with the same ID (the agent does not run an ID twice). When ctx ends the
// wait ends at once, saying what was last seen; the agent finishes or
// rolls back on its own.
func (c *Client) switchObserved(ctx context.Context, call, path string, body any, id string) (ActivateResult, error) {
	began := time.Now()
	answers := make(chan switchAnswer, 1)
	send := func() {
		go func() {
			var out ActivateResult
			err := c.do(ctx, call, http.MethodPost, path, body, 0, &out)
			answers <- switchAnswer{out, err}
		}()
	}
	send()
	sending := true
	tick := time.NewTicker(c.observeEvery)
	defer tick.Stop()
	seen := "the request was sent"
	lastContact := began
	received := false // the agent has shown it has the request
	unreachable := c.retryFor
	if unreachable <= 0 {
		unreachable = defaultUnreachable
	}
	for {
		select {
		case a := <-answers:
			sending = false
			if a.err == nil {
				return a.res, nil
			}
			if !lostAnswer(a.err, id) {
				return a.res, a.err
			}
			var ae *APIError
			if errors.As(a.err, &ae) {
				lastContact = time.Now()
				received = received || (ae.Activation != nil && ae.Activation.ID == id)
			}
			// No answer, or a busy answer about this very request: what
			// became of it is read from the status below.
		case <-tick.C:
			st, err := c.statusOnce(ctx)
			if err != nil {
				silent := time.Since(lastContact)
				seen = fmt.Sprintf("the agent has not answered for %s (%v)", silent.Round(time.Second), err)
				host.Progress(ctx, seen)
				if silent >= unreachable {
					fate := "it may never have reached the agent"
					if received {
						fate = "the agent goes on with it on its own"
					}
					return ActivateResult{}, fmt.Errorf("%s: the agent has not answered for %s: %w; %s", call, silent.Round(time.Second), err, fate)
				}
				continue
			}
			lastContact = time.Now()
			if act := st.Activation; act != nil && act.ID == id {
				received = true
				seen = fmt.Sprintf("%s: %s for %s", act.Kind, act.Phase, time.Since(began).Round(time.Second))
				host.Progress(ctx, seen)
				continue
			}
			if o := st.LastActivation; o != nil && o.ID == id {
				return o.answer(call)
			}
			if act := st.Activation; act != nil {
				seen = fmt.Sprintf("the agent is busy with %s of %q (phase %s)", act.Kind, act.Version, act.Phase)
				host.Progress(ctx, seen)
				continue
			}
			if !sending {
				// The agent is idle and never saw this request, or it ended
				// an activation that blocked it: ask (again).
				seen = "the request was sent again"
				send()
				sending = true
			}
		case <-ctx.Done():
			return ActivateResult{}, fmt.Errorf("%s: stopped waiting after %s (last seen: %s); the agent finishes or rolls back on its own: %w",
				call, time.Since(began).Round(time.Second), seen, context.Cause(ctx))
		}
	}
}

// lostAnswer reports whether an activation call's error leaves its fate
// unknown: no answer came (or a proxy's 502/503), the agent is busy with
// this very request (it was sent again), or it is still bringing the app
// back after its own start. Busy with another caller's activation is an
// answer: the caller decides whether to wait.
func lostAnswer(err error, id string) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Code == codeBusy {
			// No activation named: the agent is between taking the lock
			// and saying what it does, or between finishing and letting
			// go; which one it was, status tells.
			return ae.Activation == nil || ae.Activation.ID == id || ae.Activation.Kind == "recover"
		}
		return ae.Code == "" && retry.Status(ae.Status)
	}
	return retry.Transport(err)
}

// statusOnce reads the status once, within statusBound.
func (c *Client) statusOnce(ctx context.Context) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusBound)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	var s Status
	err = c.send("get status of "+c.base.Redacted(), req, &s)
	return s, err
}

// answer turns a recorded outcome into what the call would have answered.
func (o *ActivationOutcome) answer(call string) (ActivateResult, error) {
	if o.Result != nil {
		return *o.Result, nil
	}
	return ActivateResult{}, &APIError{Call: call, Status: o.Status, Code: o.Code, Message: o.Error, Failure: o.Failure}
}

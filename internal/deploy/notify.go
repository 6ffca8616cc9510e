package deploy

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/notify"
	"github.com/zerodown/zerodown/internal/store"
)

// NotifyCloseTimeout is how long the end of a run waits for its
// notifications to be delivered: a webhook that is down costs a deploy at
// most this, never its outcome.
const NotifyCloseTimeout = 5 * time.Second

// webhooks are cfg's webhooks with their secrets read: an unreadable
// secret_file is bad input, found before a run exists.
func webhooks(cfg *config.Deploy) ([]notify.Webhook, error) {
	var out []notify.Webhook
	for i, w := range cfg.Notify.Webhooks {
		secret, err := secret(w.Secret, w.SecretFile, fmt.Sprintf("webhook %d", i+1))
		if err != nil {
			return nil, badInput(err)
		}
		// The loader checked url and events, with file:line.
		out = append(out, notify.Webhook{URL: w.URL, Secret: secret, Events: w.Events})
	}
	return out, nil
}

// runNotifier tells the webhooks about one run; nil tells nobody.
type runNotifier struct {
	n    *notify.Notifier
	run  store.Run
	warn io.Writer
}

func newRunNotifier(hooks []notify.Webhook, run store.Run, warn io.Writer) *runNotifier {
	if len(hooks) == 0 {
		return nil
	}
	n := notify.New(hooks, notify.Options{Warn: func(msg string) { fmt.Fprintf(warn, "warning: %s\n", msg) }})
	return &runNotifier{n: n, run: run, warn: warn}
}

func (r *runNotifier) send(event, message string) { r.sendStage(event, message, "") }

func (r *runNotifier) sendStage(event, message, stage string) {
	if r == nil {
		return
	}
	r.n.Send(notify.Payload{Event: event, Run: r.run.ID, Environment: r.run.Env, Version: r.run.Version,
		SHA256: r.run.SHA256, At: time.Now(), Message: message, Stage: stage})
}

// event passes on what a person is waiting for.
func (r *runNotifier) event(e engine.Event) {
	if e.Type == engine.EvApproval {
		r.sendStage(notify.WaitingForApproval, e.Message, e.Stage)
	}
}

// ended sends how the run ended and waits, at most NotifyCloseTimeout,
// for every notification to be delivered.
func (r *runNotifier) ended(run store.Run) {
	if r == nil {
		return
	}
	event := notify.Failed
	switch run.Status {
	case store.RunSucceeded:
		event = notify.Succeeded
	case store.RunRolledBack, store.RunAborted:
		event = notify.RolledBack
	case store.RunNeedsAttention:
		event = notify.NeedsAttention
	}
	r.send(event, run.Error)
	ctx, cancel := context.WithTimeout(context.Background(), NotifyCloseTimeout)
	defer cancel()
	if err := r.n.Close(ctx); err != nil {
		fmt.Fprintf(r.warn, "warning: %v\n", err)
	}
}

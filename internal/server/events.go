package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// hub wakes whoever follows a run (an SSE stream, a dashboard page) when
// the run changes. It carries no data: followers read the journal, so a
// wake-up lost or repeated changes nothing, and a stream resumed on another
// replica sees exactly what this one would.
type hub struct {
	mu     sync.Mutex
	subs   map[string]map[chan struct{}]struct{} // by run ID; "" follows every run
	closed bool
	done   chan struct{}
}

func newHub() *hub {
	return &hub{subs: map[string]map[chan struct{}]struct{}{}, done: make(chan struct{})}
}

// subscribe follows runID ("" for every run). The channel receives after
// every change; cancel ends the subscription.
func (h *hub) subscribe(runID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[runID] == nil {
		h.subs[runID] = map[chan struct{}]struct{}{}
	}
	h.subs[runID][ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs[runID], ch)
		if len(h.subs[runID]) == 0 {
			delete(h.subs, runID)
		}
	}
}

// publish wakes the followers of runID and of every run.
func (h *hub) publish(runID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range []string{runID, ""} {
		for ch := range h.subs[id] {
			select {
			case ch <- struct{}{}:
			default: // a wake-up is pending already
			}
		}
	}
}

// closeAll ends every stream: the server is shutting down.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// notifyingStore is the journal with a wake-up of the hub after each
// change this replica makes; other replicas' changes arrive through
// watchReplicas.
type notifyingStore struct {
	store.Store
	hub     *hub
	metrics *metrics
}

func (n *notifyingStore) CreateRun(ctx context.Context, r store.Run) (store.Run, error) {
	r, err := n.Store.CreateRun(ctx, r)
	if err == nil {
		n.hub.publish(r.ID)
	}
	return r, err
}

func (n *notifyingStore) UpdateRun(ctx context.Context, id string, u store.RunUpdate) error {
	err := n.Store.UpdateRun(ctx, id, u)
	if err == nil {
		n.hub.publish(id)
	}
	return err
}

func (n *notifyingStore) RequestAbort(ctx context.Context, id, by string) error {
	err := n.Store.RequestAbort(ctx, id, by)
	if err == nil {
		n.hub.publish(id)
	}
	return err
}

func (n *notifyingStore) StartTask(ctx context.Context, t store.TaskRecord) (store.TaskRecord, error) {
	t, err := n.Store.StartTask(ctx, t)
	if err == nil {
		n.metrics.taskStarted(t)
		n.hub.publish(t.RunID)
	}
	return t, err
}

func (n *notifyingStore) FinishTask(ctx context.Context, t store.TaskRecord) error {
	err := n.Store.FinishTask(ctx, t)
	if err == nil {
		n.metrics.taskFinished(t, time.Now())
		n.hub.publish(t.RunID)
	}
	return err
}

func (n *notifyingStore) AppendEvent(ctx context.Context, e store.Event) (store.Event, error) {
	e, err := n.Store.AppendEvent(ctx, e)
	if err == nil {
		n.hub.publish(e.RunID)
	}
	return e, err
}

func (n *notifyingStore) Approve(ctx context.Context, runID, stage, by string) (store.Approval, error) {
	a, err := n.Store.Approve(ctx, runID, stage, by)
	if err == nil {
		n.hub.publish(runID)
	}
	return a, err
}

// runWatcher is a store that tells of changes other processes make to
// runs (PostgreSQL's LISTEN/NOTIFY).
type runWatcher interface {
	WatchRuns(ctx context.Context, fn func(runID string, seq int64)) error
}

// watchReplicas relays other replicas' changes to the hub until ctx ends,
// listening again after a lost connection.
func (s *Server) watchReplicas(ctx context.Context) {
	w, ok := s.raw.(runWatcher)
	if !ok {
		return
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.WatchRuns(ctx, func(runID string, _ int64) {
			backoff = 100 * time.Millisecond
			if runID == "" {
				// Listening (again): whatever changed while it was not
				// is read by every follower now.
				s.hub.publishAll()
				return
			}
			s.hub.publish(runID)
		})
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("listening for other replicas' changes", "err", err, "again in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// publishAll wakes every follower.
func (h *hub) publishAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.subs {
		for ch := range set {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// sseKeepAlive is how often an idle stream sends a comment, so proxies
// and clients know it is alive.
const sseKeepAlive = 15 * time.Second

// serveEvents streams a run's events as Server-Sent Events: each event's
// id is its Seq, so a client that reconnects with Last-Event-ID (to this
// replica or another) gets exactly the events after it. When the run has
// ended and every event is sent, an "end" event carries the run and the
// stream closes. Without Accept: text/event-stream it answers the events
// after ?after= as a JSON array.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	run, err := s.st.GetRun(r.Context(), id)
	if err != nil {
		return notFoundRun(id, err)
	}
	after, err := afterSeq(r)
	if err != nil {
		return err
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		evs, err := s.st.Events(r.Context(), run.ID, after)
		if err != nil {
			return err
		}
		out := make([]api.Event, 0, len(evs))
		for _, e := range evs {
			out = append(out, eventJSON(e))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errors.New("streaming unsupported by the connection")
	}
	wake, cancel := s.hub.subscribe(run.ID)
	defer cancel()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx in front: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n\n")
	flusher.Flush()
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	ctx := r.Context()
	rc := http.NewResponseController(w)
	for {
		// A client that stops reading frees its handler instead of
		// pinning it until the run ends.
		_ = rc.SetWriteDeadline(time.Now().Add(2 * sseKeepAlive))
		// The run's state first: events journaled before it ended are
		// then all in the read that follows.
		run, err := s.st.GetRun(ctx, run.ID)
		if err != nil {
			return nil // the client learns by reconnecting
		}
		evs, err := s.st.Events(ctx, run.ID, after)
		if err != nil {
			return nil
		}
		for _, e := range evs {
			b, _ := json.Marshal(eventJSON(e))
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, sseName(e.Type), b)
			after = e.Seq
		}
		if run.Status != store.RunRunning {
			b, _ := json.Marshal(runJSON(run))
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", api.SSEEnd, b)
			flusher.Flush()
			return nil
		}
		flusher.Flush()
		select {
		case <-ctx.Done():
			return nil
		case <-s.hub.done:
			return nil
		case <-keep.C:
			// A token revoked (or a session expired) since the stream
			// began ends it here, within a keep-alive.
			if _, err := s.authenticate(r); err != nil {
				return nil
			}
			fmt.Fprint(w, ": keep-alive\n\n")
		case <-wake:
		}
	}
}

// sseName keeps an event type usable as an SSE event name (one line).
func sseName(t string) string {
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return "message"
	}
	return t
}

// afterSeq is where a stream starts: Last-Event-ID (a reconnect), else
// ?after=, else the beginning.
func afterSeq(r *http.Request) (int64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("after")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(http.StatusBadRequest, api.CodeBadRequest, "Last-Event-ID or after must be an event number, got %q", v)
	}
	return n, nil
}

func eventJSON(e store.Event) api.Event {
	out := api.Event{Seq: e.Seq, At: e.At, Host: e.Host, Type: e.Type, Message: e.Message}
	if len(e.Data) > 0 && json.Valid(e.Data) {
		out.Data = json.RawMessage(e.Data)
	}
	return out
}

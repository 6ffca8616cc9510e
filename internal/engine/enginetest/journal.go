package enginetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/engine"
	"github.com/zerodown/zerodown/internal/pipeline"
)

// Journal records a run in memory.
type Journal struct {
	mu       sync.Mutex
	Started  []string // task keys in start order
	Finished map[string]engine.TaskStatus
	// FinishedAt is when each task ended.
	FinishedAt map[string]time.Time
	Events     []engine.Event
	abort      bool
	approved   map[string]bool
}

// NewJournal returns an empty journal.
func NewJournal() *Journal {
	return &Journal{Finished: map[string]engine.TaskStatus{}, FinishedAt: map[string]time.Time{}, approved: map[string]bool{}}
}

// TaskStarted implements engine.Journal.
func (j *Journal) TaskStarted(_ context.Context, k engine.TaskKey, t pipeline.Task) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.Started = append(j.Started, fmt.Sprintf("%s %s", k, t.Label()))
	return nil
}

// TaskFinished implements engine.Journal.
func (j *Journal) TaskFinished(_ context.Context, k engine.TaskKey, st engine.TaskStatus, _ error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.Finished[k.String()] = st
	j.FinishedAt[k.String()] = time.Now()
	return nil
}

// Event implements engine.Journal.
func (j *Journal) Event(_ context.Context, e engine.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.Events = append(j.Events, e)
	return nil
}

// AbortRequested implements engine.Journal.
func (j *Journal) AbortRequested(context.Context) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.abort, nil
}

// Approved implements engine.Journal.
func (j *Journal) Approved(_ context.Context, stage string) (string, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return "test", j.approved[stage], nil
}

// Abort asks the run to stop, as `zerodown abort` does.
func (j *Journal) Abort() {
	j.mu.Lock()
	j.abort = true
	j.mu.Unlock()
}

// Approve approves a stage, as `zerodown approve` does.
func (j *Journal) Approve(stage string) {
	j.mu.Lock()
	j.approved[stage] = true
	j.mu.Unlock()
}

// EventTypes returns "host:type" of every event, in order.
func (j *Journal) EventTypes() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]string, 0, len(j.Events))
	for _, e := range j.Events {
		out = append(out, e.Host+":"+e.Type)
	}
	return out
}

// HasEvent reports whether an event of that type was recorded for host.
func (j *Journal) HasEvent(host, typ string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.Events {
		if e.Host == host && e.Type == typ {
			return true
		}
	}
	return false
}

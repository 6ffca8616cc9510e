package engine

import (
	"context"
	"encoding/json"

	"github.com/zerodown/zerodown/internal/pipeline"
	"github.com/zerodown/zerodown/internal/store"
)

// StoreJournal journals one run in a store.
type StoreJournal struct {
	Store store.Store
	RunID string
}

// TaskStarted implements Journal.
func (j StoreJournal) TaskStarted(ctx context.Context, k TaskKey, t pipeline.Task) error {
	_, err := j.Store.StartTask(ctx, store.TaskRecord{RunID: j.RunID, Stage: k.Stage, Job: k.Job, Index: k.Index, Kind: string(t.Kind), Host: t.Host})
	return err
}

// TaskFinished implements Journal.
func (j StoreJournal) TaskFinished(ctx context.Context, k TaskKey, st TaskStatus, taskErr error) error {
	rec := store.TaskRecord{RunID: j.RunID, Stage: k.Stage, Job: k.Job, Index: k.Index, Status: store.TaskStatus(st)}
	if taskErr != nil {
		rec.Error = taskErr.Error()
	}
	return j.Store.FinishTask(ctx, rec)
}

// eventData is what an event carries beyond its message.
type eventData struct {
	InFlight int `json:"in_flight,omitempty"`
}

// Event implements Journal.
func (j StoreJournal) Event(ctx context.Context, e Event) error {
	var data []byte
	if e.InFlight != 0 {
		data, _ = json.Marshal(eventData{InFlight: e.InFlight})
	}
	_, err := j.Store.AppendEvent(ctx, store.Event{RunID: j.RunID, At: e.At, Host: e.Host, Type: e.Type, Message: e.Message, Data: data})
	return err
}

// AbortRequested implements Journal.
func (j StoreJournal) AbortRequested(ctx context.Context) (bool, error) {
	r, err := j.Store.GetRun(ctx, j.RunID)
	if err != nil {
		return false, err
	}
	return r.Abort, nil
}

// Approved implements Journal.
func (j StoreJournal) Approved(ctx context.Context, stage string) (string, bool, error) {
	a, ok, err := j.Store.Approved(ctx, j.RunID, stage)
	return a.By, ok, err
}

// EventFromStore turns a journaled event back into an engine event.
func EventFromStore(e store.Event) Event {
	out := Event{At: e.At, Host: e.Host, Type: e.Type, Message: e.Message}
	var d eventData
	if len(e.Data) > 0 && json.Unmarshal(e.Data, &d) == nil {
		out.InFlight = d.InFlight
	}
	return out
}

// PassedTasks returns the tasks of a run that passed, for a resume to skip.
func PassedTasks(ctx context.Context, s store.Store, runID string) (map[TaskKey]bool, error) {
	recs, err := s.Tasks(ctx, runID)
	if err != nil {
		return nil, err
	}
	out := map[TaskKey]bool{}
	for _, r := range recs {
		if r.Status == store.TaskPassed {
			out[TaskKey{Stage: r.Stage, Job: r.Job, Index: r.Index}] = true
		}
	}
	return out, nil
}

// TouchedHosts returns the hosts a run's journal shows it may have changed:
// those with a detach or deploy task that started. A rollback of a crashed
// run works from these.
func TouchedHosts(ctx context.Context, s store.Store, runID string) ([]string, error) {
	recs, err := s.Tasks(ctx, runID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range recs {
		k := pipeline.Kind(r.Kind)
		if r.Host == "" || seen[r.Host] || (k != pipeline.KindDetach && k != pipeline.KindDeploy && k != pipeline.KindAttach) {
			continue
		}
		if r.Status == store.TaskSkipped && r.Attempt == 0 {
			continue
		}
		seen[r.Host] = true
		out = append(out, r.Host)
	}
	return out, nil
}

var _ Journal = StoreJournal{}

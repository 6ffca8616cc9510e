// Package store is the deploy engine's journal: runs, the tasks and events of
// each run, manual approvals, and the one-run-per-environment lock.
//
// Store is the contract every backend satisfies (SQLite in store/sqlite, the
// default; PostgreSQL in store/postgres). store/storetest holds the contract
// tests that any backend runs against itself.
//
// Times are kept to the microsecond and returned in UTC. Times the caller
// leaves zero are filled in from the store's clock.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"
)

// Store is the journal of runs. Every method is safe for concurrent use, also
// by several processes sharing one database.
type Store interface {
	// CreateRun writes a new run. It assigns ID (NewRunID) when empty, Status
	// (running) when empty and StartedAt when zero, and returns the run as
	// stored. An ID already in use fails with ErrExists.
	CreateRun(ctx context.Context, r Run) (Run, error)
	// GetRun returns one run, or ErrNotFound.
	GetRun(ctx context.Context, id string) (Run, error)
	// ListRuns returns the runs of env (all environments when env is empty),
	// newest first, at most limit of them (all when limit <= 0).
	ListRuns(ctx context.Context, env string, limit int) ([]Run, error)
	// UpdateRun sets a run's status, end time and error message.
	UpdateRun(ctx context.Context, id string, u RunUpdate) error
	// RequestAbort sets the run's Abort flag, recording who asked and
	// when (the first request's); the engine reads it through GetRun.
	RequestAbort(ctx context.Context, id, by string) error

	// StartTask records that a task is about to act, before it acts. It
	// inserts the task, or, when it was started before (a retry or a resumed
	// run), marks it running again with the next Attempt. Status, EndedAt,
	// Error and Attempt of t are ignored; StartedAt is filled when zero.
	StartTask(ctx context.Context, t TaskRecord) (TaskRecord, error)
	// FinishTask records a task's outcome: t.Status is passed, failed, skipped
	// or cancelled; EndedAt is filled when zero. A passed or failed task must
	// have been started (else ErrNotFound); a skipped or cancelled one may
	// never have started, and is then recorded with Attempt 0.
	FinishTask(ctx context.Context, t TaskRecord) error
	// Tasks returns a run's tasks in the order they (last) started.
	Tasks(ctx context.Context, runID string) ([]TaskRecord, error)

	// AppendEvent adds an event to a run and returns it with its Seq: 1 for
	// the run's first event, then one more for each. At is filled when zero.
	AppendEvent(ctx context.Context, e Event) (Event, error)
	// Events returns a run's events with Seq > afterSeq, in order; tail a
	// run by passing the last Seq seen.
	Events(ctx context.Context, runID string, afterSeq int64) ([]Event, error)

	// Approve records that by approved stage of a run. The first approval
	// stands; approving again returns it unchanged.
	Approve(ctx context.Context, runID, stage, by string) (Approval, error)
	// Approved returns the approval of a stage, and whether there is one.
	Approved(ctx context.Context, runID, stage string) (Approval, bool, error)

	// AcquireLock takes the lock of env for a run, held with lease: the
	// holder beats its heartbeat well within the lease, and a lock whose
	// heartbeat is older than its holder's lease is stale (the holder is
	// gone). The lease is stored with the lock, so every reader judges it
	// by its holder's lease, not by its own. It succeeds when the lock is
	// free or already held by the same owner and run (then it refreshes the
	// heartbeat and the lease and keeps Since). Otherwise it fails with
	// *LockedError, whose Stale says whether the holder's lease ran out (by
	// lease, for a lock that stored none); a stale lock is never taken
	// silently: see TakeOverLock.
	AcquireLock(ctx context.Context, env, owner, runID string, lease time.Duration) (Lock, error)
	// TakeOverLock is AcquireLock that also takes a lock whose heartbeat is
	// older than staleAfter: the caller has found its holder gone (a stale
	// *LockedError, a dead process) and passes the age it saw, so that a
	// holder that beat since keeps its lock. A fresh lock held by another
	// owner or run still fails with *LockedError. The previous holder's
	// Heartbeat and ReleaseLock then fail with ErrLockLost.
	TakeOverLock(ctx context.Context, env, owner, runID string, lease, staleAfter time.Duration) (Lock, error)
	// Heartbeat tells that the holder is alive. It fails with ErrLockLost
	// when the lock is no longer held by this owner and run.
	Heartbeat(ctx context.Context, env, owner, runID string) error
	// ReleaseLock frees the lock held by this owner and run. Releasing a free
	// lock does nothing; a lock now held by someone else fails with
	// ErrLockLost and stays theirs.
	ReleaseLock(ctx context.Context, env, owner, runID string) error

	// Locks returns every held lock with the age of its heartbeat by the
	// store's clock, ordered by environment. A server replica reads it to
	// find runs whose executor is gone.
	Locks(ctx context.Context) ([]HeldLock, error)

	// QueryRuns returns the runs that match q, newest first (as ListRuns).
	QueryRuns(ctx context.Context, q RunQuery) ([]Run, error)

	// CreateToken writes an API token. ID and Name must be unique (else
	// ErrExists); CreatedAt is filled when zero.
	CreateToken(ctx context.Context, t Token) (Token, error)
	// GetToken returns the token with that ID, revoked or not, or
	// ErrNotFound.
	GetToken(ctx context.Context, id string) (Token, error)
	// ListTokens returns every token, revoked ones too, oldest first.
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken marks a token revoked now; revoking it again keeps the
	// first time. An unknown ID is ErrNotFound.
	RevokeToken(ctx context.Context, id string) (Token, error)

	// AppendAudit adds an entry to the audit log and returns it with its
	// Seq (1, 2, ... across the whole log). At is filled when zero.
	AppendAudit(ctx context.Context, a AuditEntry) (AuditEntry, error)
	// Audit returns entries newest first: those with Seq < beforeSeq (all
	// when beforeSeq <= 0), at most limit of them (all when limit <= 0).
	Audit(ctx context.Context, beforeSeq int64, limit int) ([]AuditEntry, error)

	// PruneRuns deletes the runs that ended before `before` (a run that
	// waited days for an approval goes once its end is that old),
	// with their tasks, events, approvals and reports, and returns their
	// IDs: at most limit of them, the oldest first, so that a large prune
	// is many short transactions that runs in progress can write between.
	// Whatever their age it keeps the newest keep runs of each
	// environment, and every run still running or needing attention (its
	// journal is what `zerodown rollback` and `resume` read).
	PruneRuns(ctx context.Context, before time.Time, keep, limit int) ([]string, error)

	// PutReport keeps the load verifier's HTML report of a run, replacing
	// the one kept before (a resumed run writes its own), so that whoever
	// reads the journal can serve it. An unknown run is ErrNotFound.
	PutReport(ctx context.Context, runID string, html []byte) error
	// Report returns a run's verifier report, or ErrNotFound.
	Report(ctx context.Context, runID string) (Report, error)
	// HasReport reports whether a run has a verifier report, without
	// reading it.
	HasReport(ctx context.Context, runID string) (bool, error)

	// Close releases the store's resources; it does not release locks.
	Close() error
}

// RunQuery selects runs for QueryRuns; empty fields match every run.
type RunQuery struct {
	Env     string
	Status  RunStatus
	Version string
	// Before, a run ID, keeps only the runs listed after it: the next page
	// after the last run of the previous one. An unknown ID is ErrNotFound.
	Before string
	// Limit is the most runs returned; <= 0 returns all.
	Limit int
	// Brief leaves Plan and Spec out, for lists.
	Brief bool
}

// HeldLock is a lock and how old its heartbeat is.
type HeldLock struct {
	Lock
	Age time.Duration
}

// Token is an API token of zerodown server. Only a hash of its secret is
// kept: the secret is shown once, when the token is created.
type Token struct {
	ID   string // public, unique; part of the token string
	Name string // unique, for people: "gocd", "alice"
	Role string // viewer, deployer, approver or admin (see internal/server)
	// Hash is the SHA-256 of the secret.
	Hash      []byte
	CreatedAt time.Time
	CreatedBy string
	// RevokedAt is zero while the token is valid.
	RevokedAt time.Time
}

// AuditEntry is one action taken through zerodown server: who did what to
// what, and when.
type AuditEntry struct {
	Seq    int64 // assigned by AppendAudit
	At     time.Time
	Actor  string // the token's name, or "server" for the server's own actions
	Action string // run.create, run.approve, run.abort, token.create, ...
	Target string // a run ID, an environment, a token ID
	Detail string
	Remote string // the client's address
}

// Errors a Store returns, wrapped in a message naming what was done to what.
var (
	// ErrNotFound: no such run (or task, for FinishTask).
	ErrNotFound = errors.New("not found")
	// ErrExists: CreateRun with an ID already in use.
	ErrExists = errors.New("already exists")
	// ErrLockLost: the lock was taken over by another owner, or released.
	ErrLockLost = errors.New("lock lost")
)

// RunStatus is the state of a run.
type RunStatus string

// Run states.
const (
	RunRunning        RunStatus = "running"
	RunSucceeded      RunStatus = "succeeded"
	RunFailed         RunStatus = "failed"
	RunRolledBack     RunStatus = "rolled_back"
	RunNeedsAttention RunStatus = "needs_attention" // left in a state that needs a person
	RunAborted        RunStatus = "aborted"
)

// Valid reports whether s is one of the run states.
func (s RunStatus) Valid() bool {
	switch s {
	case RunRunning, RunSucceeded, RunFailed, RunRolledBack, RunNeedsAttention, RunAborted:
		return true
	}
	return false
}

// TaskStatus is the state of a task.
type TaskStatus string

// Task states. Pending is never stored: it names the plan's tasks that have
// no record yet.
const (
	TaskPending   TaskStatus = "pending"
	TaskRunning   TaskStatus = "running"
	TaskPassed    TaskStatus = "passed"
	TaskFailed    TaskStatus = "failed"
	TaskSkipped   TaskStatus = "skipped"
	TaskCancelled TaskStatus = "cancelled"
)

// Valid reports whether s is one of the task states.
func (s TaskStatus) Valid() bool {
	return s == TaskPending || s == TaskRunning || s.Finished()
}

// Finished reports whether s is an outcome: passed, failed, skipped or cancelled.
func (s TaskStatus) Finished() bool {
	switch s {
	case TaskPassed, TaskFailed, TaskSkipped, TaskCancelled:
		return true
	}
	return false
}

// Run is one execution of a pipeline for one release.
type Run struct {
	ID       string // NewRunID: short and sortable by start time
	Env      string
	Pipeline string
	Version  string
	Artifact string
	SHA256   string
	Status   RunStatus
	// StartedAt is when the run started; EndedAt is zero while it has not ended.
	StartedAt, EndedAt time.Time
	Owner              string // who started it: ProcessOwner
	Plan               []byte // JSON of the pipeline as expanded; opaque to the store
	Error              string
	Abort              bool // an abort was requested
	// AbortBy and AbortAt say who first asked for the abort, and when.
	AbortBy string
	AbortAt time.Time
	// Spec is the JSON of the app spec the run deployed, so a promotion
	// deploys the same; opaque to the store.
	Spec []byte
	// PromotedFrom is the run of another environment whose artifact and
	// spec this run deployed (zerodown promote); empty otherwise.
	PromotedFrom string
}

// RunUpdate is what UpdateRun sets. A zero EndedAt clears the end time (a
// resumed run is running again).
type RunUpdate struct {
	Status  RunStatus
	EndedAt time.Time
	Error   string
	// Owner, when set, is the process that runs the run now (a resumed
	// run); empty leaves it.
	Owner string
}

// TaskRecord is the journal of one task of a run. A task is identified by
// RunID, Stage, Job and Index (its position within the job).
type TaskRecord struct {
	RunID string
	Stage string
	Job   string
	Index int
	Kind  string // detach, deploy, attach, ...
	Host  string // empty for tasks not about one host
	// Status is running from StartTask until FinishTask records the outcome.
	Status             TaskStatus
	StartedAt, EndedAt time.Time
	Error              string
	Attempt            int // 1 for the first start, +1 for each restart
}

// Event is one thing that happened during a run, for the live view, --output
// json and `zerodown show`.
type Event struct {
	RunID   string
	Seq     int64 // assigned by AppendEvent, from 1 within each run
	At      time.Time
	Host    string
	Type    string // detach, drained, activated, attached, rolled_back, wait, info, failed, ...
	Message string
	Data    []byte // JSON, or nil
}

// Report is the load verifier's HTML report of a run.
type Report struct {
	RunID string
	HTML  []byte
	At    time.Time // when it was kept
}

// Lock says which run holds an environment.
type Lock struct {
	Env, Owner, RunID string
	Since             time.Time // when this owner took it
	Heartbeat         time.Time // when the owner last said it is alive
	// Lease is the holder's: a heartbeat older than it means the holder is
	// gone. Zero in a lock written before leases were stored.
	Lease time.Duration
}

// Expired reports whether a heartbeat age old is past the holder's lease
// (past fallback, for a lock that stored none): the holder is gone.
func (l Lock) Expired(age, fallback time.Duration) bool {
	if l.Lease > 0 {
		return age > l.Lease
	}
	return age > fallback
}

// Approval is a person's go-ahead for a stage with a manual gate.
type Approval struct {
	RunID, Stage, By string
	At               time.Time
}

// LockedError is returned when an environment's lock is held by someone else.
type LockedError struct {
	Lock Lock
	// Age is how long ago the holder's last heartbeat was, by the store's clock.
	Age time.Duration
	// Stale: Age is beyond the holder's lease (the caller's, for a lock
	// that stored none), so the holder seems gone and TakeOverLock would
	// succeed.
	Stale bool
}

// Error says who holds the lock, for which run, since when, and how alive it
// is: "environment staging is locked by alice@ci-1 pid 4242 (run r-…) since
// 18:12:03 (heartbeat 2s ago)". Times are local; the date is added when the
// lock was taken on another day.
func (e *LockedError) Error() string {
	l := e.Lock
	since := l.Since.Local()
	now := l.Heartbeat.Add(e.Age).Local()
	layout := "15:04:05"
	if y, m, d := since.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "2006-01-02 15:04:05"
	}
	age := max(e.Age, 0).Round(time.Second)
	msg := fmt.Sprintf("environment %s is locked by %s (run %s) since %s (heartbeat %s ago",
		l.Env, l.Owner, l.RunID, since.Format(layout), age)
	if e.Stale {
		msg += "; stale: its owner seems gone, the lock can be taken over"
	}
	return msg + ")"
}

// NewRunID returns a run ID made of the start time (UTC, to the second) and
// a random suffix, e.g. "r-20261125-181200-ab12". IDs sort by start time.
func NewRunID(now time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "r-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// ProcessOwner names this process as a lock or run owner: "user@host pid N".
func ProcessOwner() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s@%s pid %d", name, host, os.Getpid())
}

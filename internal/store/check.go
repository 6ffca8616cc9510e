package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Every backend refuses the same bad input with the same words, before it
// writes anything.

// Check reports what makes r unfit to be created.
func (r Run) Check() error {
	switch {
	case r.Env == "":
		return errors.New("no environment")
	case !r.Status.Valid():
		return fmt.Errorf("unknown status %q", r.Status)
	case len(r.Plan) > 0 && !json.Valid(r.Plan):
		return errors.New("plan is not valid JSON")
	case len(r.Spec) > 0 && !json.Valid(r.Spec):
		return errors.New("app spec is not valid JSON")
	}
	return nil
}

// Check reports what makes t unfit to be started or finished.
func (t TaskRecord) Check() error {
	switch {
	case t.RunID == "":
		return errors.New("no run ID")
	case t.Index < 0:
		return fmt.Errorf("negative index %d", t.Index)
	}
	return nil
}

// Name names a task in errors: "r-…/stage/job/2 (deploy staging-1)".
func (t TaskRecord) Name() string {
	name := fmt.Sprintf("%s/%s/%s/%d", t.RunID, t.Stage, t.Job, t.Index)
	if t.Kind != "" || t.Host != "" {
		name += " (" + strings.TrimSpace(t.Kind+" "+t.Host) + ")"
	}
	return name
}

// Check reports what makes e unfit to be appended, naming the run.
func (e Event) Check() error {
	switch {
	case e.RunID == "":
		return errors.New("append event: no run ID")
	case e.Type == "":
		return fmt.Errorf("append event to run %s: no type", e.RunID)
	case len(e.Data) > 0 && !json.Valid(e.Data):
		return fmt.Errorf("append %s event to run %s: data is not valid JSON", e.Type, e.RunID)
	}
	return nil
}

// Micro is t as stores keep it: to the microsecond, in UTC; zero stays zero.
func Micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// CheckPrune reports what makes a PruneRuns request unfit.
func CheckPrune(before time.Time, keep, limit int) error {
	switch {
	case before.IsZero():
		return errors.New("prune runs: no time to prune before")
	case keep < 0:
		return fmt.Errorf("prune runs: keep %d is negative", keep)
	case limit < 1:
		return fmt.Errorf("prune runs: limit %d is not positive", limit)
	}
	return nil
}

// LockVerb names a lock request in errors: "acquire" or "take over".
func LockVerb(takeOver bool) string {
	if takeOver {
		return "take over"
	}
	return "acquire"
}

// CheckLock reports what makes a lock request unfit, before any backend
// reads the lock.
func CheckLock(env, owner, runID string, lease, staleAfter time.Duration, takeOver bool) error {
	switch {
	case env == "" || owner == "" || runID == "":
		return fmt.Errorf("%s lock: environment %q, owner %q and run %q must all be set", LockVerb(takeOver), env, owner, runID)
	case lease <= 0:
		return fmt.Errorf("%s lock of environment %s: lease %v is not positive", LockVerb(takeOver), env, lease)
	case takeOver && staleAfter <= 0:
		return fmt.Errorf("%s lock of environment %s: staleAfter %v is not positive", LockVerb(takeOver), env, staleAfter)
	}
	return nil
}

// Held decides a lock request with lease that found the lock held as cur,
// at now: refresh is true when the requester holds it already (it keeps
// Since); false with a nil error when it may take the lock over (takeOver
// asked for, and a heartbeat older than staleAfter); otherwise a
// *LockedError, stale when the holder's lease ran out.
func Held(cur Lock, owner, runID string, now time.Time, lease, staleAfter time.Duration, takeOver bool) (refresh bool, err error) {
	if cur.Owner == owner && cur.RunID == runID {
		return true, nil
	}
	age := now.Sub(cur.Heartbeat)
	if takeOver && age > staleAfter {
		return false, nil
	}
	return false, &LockedError{Lock: cur, Age: age, Stale: cur.Expired(age, lease)}
}

// ErrSchemaTooNew: the database was migrated by a newer zerodown.
var ErrSchemaTooNew = errors.New("database schema is newer than this zerodown")

// Migrate brings a schema at version from up to len(migrations): exec runs
// each migration still missing in order, record stores the new version.
// Both run inside the backend's one transaction; migrated is false when
// there was nothing to do (the caller commits only when it is true). A
// schema newer than this build is refused with ErrSchemaTooNew.
func Migrate(from int, migrations []string, exec func(stmt string) error, record func(version int) error) (migrated bool, err error) {
	to := len(migrations)
	if from > to {
		return false, fmt.Errorf("%w: it has schema version %d, this zerodown knows up to %d; use a newer zerodown", ErrSchemaTooNew, from, to)
	}
	if from == to {
		return false, nil
	}
	for v := from; v < to; v++ {
		if err := exec(migrations[v]); err != nil {
			return false, fmt.Errorf("migrate schema from version %d to %d: %w", v, v+1, err)
		}
	}
	return true, record(to)
}

// Check reports what makes q unfit to run: a status filter no run can
// have is a mistake, not an empty list.
func (q RunQuery) Check() error {
	if q.Status != "" && !q.Status.Valid() {
		return fmt.Errorf("query runs: unknown status %q", q.Status)
	}
	return nil
}

// BeforeNotFound is the error of QueryRuns when Before names no run.
func (q RunQuery) BeforeNotFound() error {
	return fmt.Errorf("query runs before run %s: %w", q.Before, ErrNotFound)
}

// Check reports what makes t unfit to be created, naming it.
func (t Token) Check() error {
	what := "create token"
	if t.Name != "" {
		what += " " + t.Name
	}
	switch {
	case t.Name == "":
		return fmt.Errorf("%s: no name", what)
	case t.ID == "":
		return fmt.Errorf("%s: no ID", what)
	case t.Role == "":
		return fmt.Errorf("%s: no role", what)
	case len(t.Hash) == 0:
		return fmt.Errorf("%s: no hash of its secret", what)
	}
	return nil
}

// IDInUse is the error of CreateToken for an ID in use: "create token gocd:
// ID k1 already exists". A name in use is "create token gocd: already
// exists".
func (t Token) IDInUse() error {
	return fmt.Errorf("create token %s: ID %s %w", t.Name, t.ID, ErrExists)
}

// Check reports what makes a unfit to be appended to the audit log.
func (a AuditEntry) Check() error {
	if a.Action == "" {
		return errors.New("append audit entry: no action")
	}
	return nil
}

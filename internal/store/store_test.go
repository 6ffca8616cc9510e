package store_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/store"
)

func TestLockedErrorMessage(t *testing.T) {
	since := time.Date(2026, 11, 25, 18, 12, 3, 0, time.Local)
	l := store.Lock{Env: "staging", Owner: "alice@ci-1 pid 4242", RunID: "r-20261125-181203-ab12", Since: since, Heartbeat: since.Add(time.Minute)}
	for _, tt := range []struct {
		name  string
		age   time.Duration
		stale bool
		want  string
	}{
		{"fresh", 2*time.Second + 400*time.Millisecond, false,
			"environment staging is locked by alice@ci-1 pid 4242 (run r-20261125-181203-ab12) since 18:12:03 (heartbeat 2s ago)"},
		{"clock of another process behind", -time.Second, false,
			"environment staging is locked by alice@ci-1 pid 4242 (run r-20261125-181203-ab12) since 18:12:03 (heartbeat 0s ago)"},
		{"stale", 10 * time.Minute, true,
			"environment staging is locked by alice@ci-1 pid 4242 (run r-20261125-181203-ab12) since 18:12:03 (heartbeat 10m0s ago; stale: its owner seems gone, the lock can be taken over)"},
		{"taken another day", 30 * time.Hour, true,
			"environment staging is locked by alice@ci-1 pid 4242 (run r-20261125-181203-ab12) since 2026-11-25 18:12:03 (heartbeat 30h0m0s ago; stale: its owner seems gone, the lock can be taken over)"},
	} {
		err := &store.LockedError{Lock: l, Age: tt.age, Stale: tt.stale}
		if got := err.Error(); got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestNewRunID(t *testing.T) {
	now := time.Date(2026, 11, 25, 19, 12, 0, 0, time.FixedZone("CET", 3600))
	id := store.NewRunID(now)
	if !regexp.MustCompile(`^r-20261125-181200-[0-9a-f]{4}$`).MatchString(id) {
		t.Errorf("NewRunID = %q, want r-20261125-181200-xxxx (UTC)", id)
	}
	if later := store.NewRunID(now.Add(time.Second)); later <= id[:len(id)-4]+"ffff" {
		t.Errorf("%q does not sort after %q", later, id)
	}
}

func TestStatuses(t *testing.T) {
	for _, s := range []store.RunStatus{store.RunRunning, store.RunSucceeded, store.RunFailed, store.RunRolledBack, store.RunNeedsAttention, store.RunAborted} {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
	}
	for _, s := range []store.RunStatus{"", "pending", "Running"} {
		if s.Valid() {
			t.Errorf("%q valid", s)
		}
	}
	for _, tt := range []struct {
		s               store.TaskStatus
		valid, finished bool
	}{
		{store.TaskPending, true, false},
		{store.TaskRunning, true, false},
		{store.TaskPassed, true, true},
		{store.TaskFailed, true, true},
		{store.TaskSkipped, true, true},
		{store.TaskCancelled, true, true},
		{"", false, false},
		{"succeeded", false, false},
	} {
		if tt.s.Valid() != tt.valid || tt.s.Finished() != tt.finished {
			t.Errorf("%q: valid %v finished %v, want %v %v", tt.s, tt.s.Valid(), tt.s.Finished(), tt.valid, tt.finished)
		}
	}
}

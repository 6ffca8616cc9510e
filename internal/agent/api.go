// Package agent is `zerodown agent`: it stores releases on a host, switches
// the app between them behind a health gate, supervises the app, and serves
// all of that over an HTTP API with a bearer token. The same package has the
// Go client of that API, which implements host.Deployer. See docs/agent.md.
package agent

import (
	"time"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/host"
)

// SpecHeader carries the app spec of an upload: base64 (standard, padded)
// of its JSON.
const SpecHeader = "Zerodown-Spec"

// ReleaseInfo is a stored release as the API reports it.
type ReleaseInfo struct {
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	Format  string `json:"format"`
	// Name is the file name of a "file" artifact.
	Name string `json:"name,omitempty"`
	// Size is the artifact's size; Unpacked what it takes on disk.
	Size       int64      `json:"size"`
	Unpacked   int64      `json:"unpacked"`
	UploadedAt time.Time  `json:"uploaded_at"`
	Spec       config.App `json:"spec"`
	Current    bool       `json:"current"`
	Previous   bool       `json:"previous"`
	// Error says why the release cannot be used: its metadata file is
	// damaged or unreadable. Only Version is known then, and UploadedAt is
	// the file's time.
	Error string `json:"error,omitempty"`
}

// UploadResult answers an upload.
type UploadResult struct {
	Release ReleaseInfo `json:"release"`
	// Unchanged is true when the version was stored already with the same
	// digest and spec, so nothing was done.
	Unchanged bool `json:"unchanged"`
	// Pruned lists releases deleted to keep keep_releases.
	Pruned []string `json:"pruned,omitempty"`
}

// ActivateRequest is the body of POST /v1/activate.
type ActivateRequest struct {
	Version string `json:"version"`
	// Timeout bounds getting the release healthy (hooks, preflight, stop,
	// start, health), in Go syntax such as "2m"; empty means the spec's
	// stop and health timeouts plus a minute for hooks. Putting the
	// previous release back after a failure has its own bound on top.
	Timeout string `json:"timeout,omitempty"`
	// ID names this request so it can be asked again safely: an agent
	// that already ran it answers with how it ended instead of running it
	// twice, and its status shows it in progress and ended. A caller that
	// lost the answer (a partition, a restarting proxy) observes status or
	// asks again with the same ID.
	ID string `json:"id,omitempty"`
	// Swap starts the release in the idle slot (swap_port) beside the
	// running one, which keeps running as the retiring release until
	// POST /v1/retire: the swap strategy.
	Swap bool `json:"swap,omitempty"`
}

// RollbackRequest is the body of POST /v1/rollback; it may be empty.
type RollbackRequest struct {
	Timeout string `json:"timeout,omitempty"`
	ID      string `json:"id,omitempty"`
	// Swap rolls back in the idle slot, as ActivateRequest.Swap; a
	// previous release still retiring there just trades places.
	Swap bool `json:"swap,omitempty"`
}

// Phase is one step of an activation and how long it took.
type Phase struct {
	Name   string  `json:"name"`
	Millis float64 `json:"ms"`
}

// ActivateResult answers a successful activation or rollback.
type ActivateResult struct {
	// Version runs now; From ran before.
	Version string `json:"version"`
	From    string `json:"from"`
	PID     int    `json:"pid"`
	// Unchanged is true when Version was current and healthy already.
	Unchanged bool    `json:"unchanged"`
	Millis    float64 `json:"ms"`
	Phases    []Phase `json:"phases"`
	// Port is the slot the release runs in; Retiring the release a swap
	// left running in the other one.
	Port     int           `json:"port,omitempty"`
	Retiring *RetiringInfo `json:"retiring,omitempty"`
}

// ActivationInfo describes an activation in progress.
type ActivationInfo struct {
	// Kind is activate, rollback or recover (finishing an activation the
	// agent was stopped in the middle of).
	Kind    string    `json:"kind"`
	Version string    `json:"version"`
	From    string    `json:"from"`
	Phase   string    `json:"phase"`
	Since   time.Time `json:"since"`
	// PhaseSince is when the current phase began.
	PhaseSince time.Time `json:"phase_since"`
	// ID is the request's ID, if it had one.
	ID string `json:"id,omitempty"`
}

// ActivationOutcome is how the agent's last activation or rollback ended,
// as its answer said: a caller that lost the answer reads it from status.
type ActivationOutcome struct {
	ID      string    `json:"id,omitempty"`
	Kind    string    `json:"kind"`
	Version string    `json:"version"`
	Ended   time.Time `json:"ended"`
	// Result is set when it succeeded; otherwise Status, Code, Error and
	// Failure are the error answer it got.
	Result  *ActivateResult    `json:"result,omitempty"`
	Status  int                `json:"status,omitempty"`
	Code    string             `json:"code,omitempty"`
	Error   string             `json:"error,omitempty"`
	Failure *ActivationFailure `json:"failure,omitempty"`
}

// ActivationFailure is what went wrong with an activation.
type ActivationFailure struct {
	Version string `json:"version"`
	// Phase is where it failed: hooks, preflight, stop, start or health.
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
	// Restored is the release running after the failure ("" when there
	// was none before), and RestoreError why it is not healthy, if not.
	Restored     string `json:"restored"`
	RestoreError string `json:"restore_error,omitempty"`
	// Touched is false when the running release was never stopped (the
	// failure came in hooks or preflight).
	Touched bool `json:"touched"`
	// Output is the last lines the failed release wrote.
	Output []string `json:"output"`
}

// Status is GET /v1/status.
type Status struct {
	Version  string `json:"version"`
	Previous string `json:"previous"`
	// Port is the slot the current release runs in.
	Port int `json:"port"`
	// Retiring is the release a swap left running in the other slot.
	Retiring *RetiringInfo `json:"retiring,omitempty"`
	// State is running, starting, backoff (waiting to restart after a
	// crash) or stopped.
	State         string     `json:"state"`
	PID           int        `json:"pid"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Healthy       bool       `json:"healthy"`
	HealthError   string     `json:"health_error,omitempty"`
	// Restarts counts restarts of the current release after it exited on
	// its own; LastExit says how it last exited.
	Restarts   int             `json:"restarts"`
	LastExit   string          `json:"last_exit,omitempty"`
	Adopted    bool            `json:"adopted"`
	Activation *ActivationInfo `json:"activation"`
	// LastActivation is how the last activation or rollback since the
	// agent started ended.
	LastActivation *ActivationOutcome `json:"last_activation,omitempty"`
	Releases       []ReleaseInfo      `json:"releases"`
	// Agent is the agent process itself: an upgrade is done when a new
	// pid answers.
	Agent AgentInfo `json:"agent"`
}

// AgentInfo describes the agent process.
type AgentInfo struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
}

// Host converts a status to the engine's view.
func (s Status) Host() host.Status {
	out := host.Status{
		Version:  s.Version,
		Previous: s.Previous,
		Running:  s.State == stateRunning,
		PID:      s.PID,
		Healthy:  s.Healthy,
		Uptime:   time.Duration(s.UptimeSeconds * float64(time.Second)),
		Restarts: s.Restarts,
	}
	for _, r := range s.Releases {
		out.Releases = append(out.Releases, r.Version)
	}
	if s.Activation != nil {
		out.Activating = s.Activation.Version
	}
	out.Port = s.Port
	if s.Retiring != nil {
		out.Retiring, out.RetiringPort = s.Retiring.Version, s.Retiring.Port
	}
	return out
}

// LogsResult is GET /v1/logs.
type LogsResult struct {
	Version string   `json:"version"`
	Lines   []string `json:"lines"`
}

// errorBody is every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
	// Code is machine-readable: bad_input, unauthorized, not_found,
	// conflict, busy, checksum, unsafe_archive, too_large,
	// activation_failed (the previous release runs), activation_broken
	// (the host is not serving), damaged (a release's file on the host)
	// or internal.
	Code       string             `json:"code"`
	Activation *ActivationInfo    `json:"activation,omitempty"`
	Failure    *ActivationFailure `json:"failure,omitempty"`
}

// App states.
const (
	stateRunning  = "running"
	stateStarting = "starting"
	stateBackoff  = "backoff"
	stateStopped  = "stopped"
)

// Package api is the wire format of zerodown server's HTTP API (/api/v1):
// the JSON types the server writes and the CLI reads, and the client the
// CLI uses. The OpenAPI document the server serves describes these types.
package api

import (
	"encoding/json"
	"time"
)

// Error codes: stable strings a client may branch on.
const (
	CodeUnauthorized = "unauthorized"  // no token, a wrong one, or a revoked one
	CodeForbidden    = "forbidden"     // the token's role is too low
	CodeCSRF         = "csrf"          // a signed-in browser request without its CSRF token
	CodeBadRequest   = "bad_request"   // the body, a parameter or the artifact is wrong
	CodeNotFound     = "not_found"     // no such run, environment, artifact or token
	CodeConflict     = "conflict"      // the environment is locked, the run ended...
	CodeTooLarge     = "too_large"     // an upload beyond max_artifact_bytes
	CodeUnavailable  = "unavailable"   // the server is shutting down
	CodeInternal     = "internal"      // anything else; the server logs it
	CodeNothingToDo  = "nothing_to_do" // not an error: see CreateRunResult
)

// Error is the body of every error answer.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody is an error's code and message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Run is a run as the API shows it.
type Run struct {
	ID           string     `json:"id"`
	Env          string     `json:"env"`
	Pipeline     string     `json:"pipeline"`
	Version      string     `json:"version"`
	SHA256       string     `json:"sha256"`
	Status       string     `json:"status"`
	StartedAt    time.Time  `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	Owner        string     `json:"owner"`
	Error        string     `json:"error,omitempty"`
	Abort        bool       `json:"abort,omitempty"`
	AbortBy      string     `json:"abort_by,omitempty"`
	PromotedFrom string     `json:"promoted_from,omitempty"`
	// ExitCode is what `zerodown deploy` exits with for this outcome: 0
	// succeeded, 1 failed or rolled back, 3 needs attention; absent while
	// running.
	ExitCode *int `json:"exit_code,omitempty"`
}

// RunDetail is one run with its plan and tasks.
type RunDetail struct {
	Run
	// Plan is the pipeline as expanded when the run started.
	Plan      json.RawMessage `json:"plan,omitempty"`
	Tasks     []Task          `json:"tasks"`
	Approvals []Approval      `json:"approvals,omitempty"`
	// Waiting names the stage whose approval the run waits for, if any.
	Waiting string `json:"waiting,omitempty"`
	// Report is the path of the verifier's HTML report, when there is one.
	Report string `json:"report,omitempty"`
}

// Task is one task of a run, as journaled.
type Task struct {
	Stage     string     `json:"stage"`
	Job       string     `json:"job"`
	Index     int        `json:"index"`
	Kind      string     `json:"kind"`
	Host      string     `json:"host,omitempty"`
	Status    string     `json:"status"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	Error     string     `json:"error,omitempty"`
	Attempt   int        `json:"attempt"`
}

// Approval is a stage's go-ahead.
type Approval struct {
	Stage string    `json:"stage"`
	By    string    `json:"by"`
	At    time.Time `json:"at"`
}

// RunList is a page of runs; Next, when set, is the `before` of the next
// page.
type RunList struct {
	Runs []Run  `json:"runs"`
	Next string `json:"next,omitempty"`
}

// Event is one event of a run; in the SSE stream its Seq is the event's id.
type Event struct {
	Seq     int64           `json:"seq"`
	At      time.Time       `json:"at"`
	Host    string          `json:"host,omitempty"`
	Type    string          `json:"type"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// SSE event names besides the journal's event types.
const (
	// SSEEnd is the last event of a stream: the run ended; its data is
	// the Run.
	SSEEnd = "end"
)

// CreateRun starts a run: a release (an artifact uploaded before, named
// by its sha256) for an environment.
type CreateRun struct {
	Env     string `json:"env"`
	Version string `json:"version"`
	SHA256  string `json:"sha256"`
	// Pipeline names a hand-written pipeline; empty runs the strategy.
	Pipeline string `json:"pipeline,omitempty"`
}

// Promote deploys to To the build that passed From (its last successful
// run, or the last of Version).
type Promote struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Version string `json:"version,omitempty"`
}

// CreateRunResult answers CreateRun and Promote: the run started, or
// NothingToDo when every host already runs the version and is healthy.
type CreateRunResult struct {
	Run         *Run `json:"run,omitempty"`
	NothingToDo bool `json:"nothing_to_do,omitempty"`
}

// ApproveRun approves a stage of a run; an empty Stage approves the one
// the run waits for.
type ApproveRun struct {
	Stage string `json:"stage,omitempty"`
}

// Artifact is an artifact the server holds.
type Artifact struct {
	SHA256 string `json:"sha256"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
}

// Environment is one environment of the server's zerodown.yaml.
type Environment struct {
	Name     string   `json:"name"`
	Driver   string   `json:"driver"`
	Strategy string   `json:"strategy"`
	Hosts    []string `json:"hosts"`
	// Lock is the run that holds the environment, if any.
	Lock *Lock `json:"lock,omitempty"`
	// Last is the environment's latest run.
	Last *Run `json:"last,omitempty"`
}

// Lock is who holds an environment.
type Lock struct {
	Run       string    `json:"run"`
	Owner     string    `json:"owner"`
	Since     time.Time `json:"since"`
	Heartbeat time.Time `json:"heartbeat"`
}

// Hosts is what an environment's hosts and load balancer report now.
type Hosts struct {
	Env   string `json:"env"`
	Hosts []Host `json:"hosts"`
	// Error says what could not be read (the balancer, a host), if anything.
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Host is one host: its version and health, and its target's state at the
// load balancer.
type Host struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Version  string `json:"version,omitempty"`
	Previous string `json:"previous,omitempty"`
	Running  bool   `json:"running"`
	Healthy  bool   `json:"healthy"`
	LBState  string `json:"lb_state"`
	InFlight int    `json:"in_flight"`
	// Error is why the host could not be asked.
	Error string `json:"error,omitempty"`
}

// Whoami is the caller's token.
type Whoami struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Token is an API token, without its secret.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// CreateToken asks for a new token.
type CreateToken struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// NewToken is a token just created: Secret is the whole token string, shown
// this once.
type NewToken struct {
	Token
	Secret string `json:"secret"`
}

// AuditEntry is one action in the audit log.
type AuditEntry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Detail string    `json:"detail,omitempty"`
	Remote string    `json:"remote,omitempty"`
}

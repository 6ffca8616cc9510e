// Package host declares what the deploy engine needs from a host: put a
// release on it, switch to it behind a health gate, roll back, and report.
// Drivers: the agent client (internal/agent), the same agent reached over
// SSH (internal/sshagent), and the user's own scripts (internal/exechost).
package host

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

// Artifact formats.
const (
	FormatTarGz = "tar.gz"
	FormatZip   = "zip"
	// FormatFile is a single file, such as an executable, stored under
	// Release.Name in the release directory.
	FormatFile = "file"
)

// Release is one version of the app as the engine hands it to a host.
type Release struct {
	Version string
	// SHA256 is the artifact's hex digest; the host refuses an artifact
	// that does not match it.
	SHA256 string
	// Format is FormatTarGz, FormatZip or FormatFile.
	Format string
	// Name is the file name of a FormatFile artifact, such as "hello".
	Name string
	// Size is the artifact's length in bytes, or -1 when unknown.
	Size int64
	// Open returns the artifact from its start; it is called once per
	// attempt to send it, and the caller closes what it returns.
	Open func() (io.ReadCloser, error)
	// Spec is how the release runs. It travels with the release, so a
	// rollback also restores the old start command.
	Spec config.App
}

// Status is what a host reports about its app.
type Status struct {
	// Version is the current release; empty before the first activation.
	Version string
	// Previous is the release a rollback would go back to.
	Previous string
	// Running is true while the app's process is up; PID is its process.
	Running bool
	PID     int
	// Healthy is the result of the last health check.
	Healthy bool
	Uptime  time.Duration
	// Restarts counts restarts after the app exited on its own.
	Restarts int
	// Releases are the versions stored on the host, oldest first.
	Releases []string
	// Activating is the version an activation in progress is switching to.
	Activating string
	// Port is the slot the current release runs in; Retiring and
	// RetiringPort the release a swap left running in the other slot.
	Port         int
	Retiring     string
	RetiringPort int
	// Assumed: the host cannot say what it runs (an exec host without a
	// status script), so Version and Previous are zerodown's own record
	// of what it last put there, empty when it has none. A deploy never
	// skips such a host, and a rollback of Version runs even when Previous
	// is unknown: the host's own rollback knows what to go back to.
	Assumed bool
}

// Deployer puts releases on one host and switches between them. Every call
// returns once the host has done it, or failed: Activate and Rollback
// return only after the app is healthy or the previous release is back.
type Deployer interface {
	// Upload stores a release on the host. Uploading a version the host
	// has with the same digest does nothing; with another digest it fails
	// with ErrConflict.
	Upload(ctx context.Context, r Release) error
	// Activate makes version the running release once it passes its health
	// check. If it does not, the host puts the previous release back and
	// the error wraps ErrUnhealthy.
	Activate(ctx context.Context, version string) error
	// Rollback activates the previous release.
	Rollback(ctx context.Context) error
	Status(ctx context.Context) (Status, error)
}

// Swapper is the optional capability of running a release in a second slot
// (the swap strategy): the new release starts beside the running one, and
// the old one runs until Retire.
type Swapper interface {
	// ActivateSwap starts version in the idle slot and makes it current
	// once healthy; the release it replaces keeps running, retiring.
	ActivateSwap(ctx context.Context, version string) error
	// RollbackSwap does the same with the previous release; one still
	// retiring just trades places with the current one.
	RollbackSwap(ctx context.Context) error
	// Retire stops the retiring release; without one it does nothing.
	Retire(ctx context.Context) error
}

// Bounder is the optional capability of a Deployer whose activations and
// rollbacks run under a deadline of their own (an exec host's script
// timeout): the engine waits for them at least that long.
type Bounder interface {
	Bound() time.Duration
}

// RollbackChecker is the optional capability of a Deployer that knows,
// before anything changes, that it cannot roll back (an exec host without
// a rollback script): the engine then leaves the host serving as it is,
// and says why, instead of taking it out of the load balancer first.
type RollbackChecker interface {
	CanRollBack() error
}

// Errors a Deployer's errors wrap, for errors.Is.
var (
	// ErrNotFound: the host does not have that release (or no previous).
	ErrNotFound = errors.New("no such release")
	// ErrConflict: the version exists with another digest or spec.
	ErrConflict = errors.New("release conflicts with the stored one")
	// ErrBusy: another activation is in progress on the host.
	ErrBusy = errors.New("another activation is in progress")
	// ErrUnhealthy: the release did not pass its health check; the host
	// went back to the previous release.
	ErrUnhealthy = errors.New("release did not become healthy")
	// ErrChecksum: the artifact the host received does not match SHA256.
	ErrChecksum = errors.New("artifact checksum mismatch")
)

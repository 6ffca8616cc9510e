// Package supervise keeps one child process running where there is no
// systemd to do it: `zerodown agent supervise`, which `zerodown hosts
// bootstrap` starts on hosts without systemd (or without root), runs the
// agent under it.
//
// The supervisor restarts the child when it exits on its own, with backoff;
// stops it on SIGTERM or SIGINT and exits; and on SIGHUP stops it and
// re-executes itself from Program, so that an upgrade which switched the
// Program symlink to a new binary replaces the supervisor as well as the
// child, under the same pid. It writes its own pid to a pid file and
// refuses to start while that file names another live supervisor, so a
// second bootstrap never starts a second agent.
//
// It does not detach itself from the caller's session unless asked
// (Options.Setsid): bootstrap starts it with setsid(1) and /dev/null as
// stdin, stdout and stderr, so that the SSH session ending does not send it
// SIGHUP and nothing of the session is held open.
package supervise

import (
	"errors"
	"time"
)

// Defaults of Options.
const (
	DefaultBackoff     = time.Second
	DefaultMaxBackoff  = 30 * time.Second
	DefaultStopTimeout = 60 * time.Second
)

// ErrRunning is returned by Run when the pid file names another supervisor
// that is alive.
var ErrRunning = errors.New("another supervisor is running")

// Options say what to supervise and how.
type Options struct {
	// Program is the path of the child's executable, and of the supervisor's
	// own on SIGHUP. It is looked up anew at every start, so a symlink
	// switched to another binary takes effect at the next start; a name
	// without a slash is looked up on PATH.
	Program string
	// Args are the child's arguments after its argv[0] (which is Program).
	Args []string
	// PidFile gets the supervisor's own pid, written atomically, and is
	// removed when the supervisor exits if it still holds that pid. Empty:
	// no pid file, and no check for another supervisor.
	PidFile string
	// Log is the file the child's stdout and stderr are appended to, and
	// the supervisor's own lines, prefixed "zerodown-supervise" and
	// timestamped. Empty: the supervisor's own stdout and stderr.
	Log string
	// Backoff is the first wait before a restart; it doubles at every exit
	// up to MaxBackoff and is back to Backoff once the child stayed up
	// MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// StopTimeout bounds the wait for the child to exit after SIGTERM;
	// then it gets SIGKILL.
	StopTimeout time.Duration
	// Setsid makes the supervisor the leader of a new session first, as
	// setsid(1) would, so a hangup of the terminal or SSH session it was
	// started from does not reach it or its child.
	Setsid bool
}

//go:build linux

package supervise_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/atomicfile"
	"github.com/zerodown/zerodown/internal/supervise"
)

// roleEnv makes the test binary a program of the tests instead of running
// them: "supervise ..." is a supervisor like `zerodown agent supervise`,
// "child ..." the child it keeps running. The tests start copies of this
// binary, so no program is built for them, and two copies are two builds
// as far as a switched symlink goes (the child reports which one it is).
const roleEnv = "ZERODOWN_SUPERVISE_TEST_PROGRAM"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) != "" && len(os.Args) > 1 {
		switch os.Args[1] {
		case "supervise":
			os.Exit(supervisorMain(os.Args[2:]))
		case "child":
			os.Exit(childMain(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

// supervisorMain is what `zerodown agent supervise` does: Program is the
// path it was started as, made absolute, not the binary it resolves to.
func supervisorMain(args []string) int {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	pidFile := fs.String("pid-file", "", "")
	logFile := fs.String("log", "", "")
	dir := fs.String("dir", "", "where the child reports")
	backoff := fs.Duration("backoff", 0, "")
	maxBackoff := fs.Duration("max-backoff", 0, "")
	stopTimeout := fs.Duration("stop-timeout", 0, "")
	ignoreTerm := fs.Bool("child-ignores-term", false, "")
	setsid := fs.Bool("setsid", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	program, err := filepath.Abs(os.Args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	childArgs := []string{"child", "--dir", *dir}
	if *ignoreTerm {
		childArgs = append(childArgs, "--ignore-term")
	}
	err = supervise.Run(context.Background(), supervise.Options{
		Program:     program,
		Args:        childArgs,
		PidFile:     *pidFile,
		Log:         *logFile,
		Backoff:     *backoff,
		MaxBackoff:  *maxBackoff,
		StopTimeout: *stopTimeout,
		Setsid:      *setsid,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "supervise:", err)
		return 1
	}
	return 0
}

// childMain reports its pid and executable in <dir>/child, writes what
// happens to it on stdout (the supervisor's log), crashes (exit 3) on
// SIGUSR1 and exits on SIGTERM, unless told to ignore it.
func childMain(args []string) int {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	ignoreTerm := fs.Bool("ignore-term", false, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGUSR1)
	exe, err := os.Executable() // the file, through the symlink
	if err != nil {
		fmt.Println(err)
		return 1
	}
	pid := os.Getpid()
	fmt.Printf("child %d started from %s\n", pid, exe)
	report := fmt.Sprintf("%d %s %d\n", pid, exe, time.Now().UnixNano())
	if err := atomicfile.Write(filepath.Join(*dir, "child"), []byte(report), 0o644); err != nil {
		fmt.Println(err)
		return 1
	}
	for sig := range signals {
		switch sig {
		case syscall.SIGUSR1:
			fmt.Printf("child %d crashing\n", pid)
			return 3
		case syscall.SIGTERM:
			fmt.Printf("child %d got SIGTERM\n", pid)
			if !*ignoreTerm {
				return 0
			}
		}
	}
	return 0
}

// childReport is what the running child wrote about itself.
type childReport struct {
	pid     int
	exe     string
	started time.Time
}

func readChild(dir string) (childReport, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "child"))
	if err != nil {
		return childReport{}, false
	}
	var r childReport
	var nanos int64
	if _, err := fmt.Sscan(string(b), &r.pid, &r.exe, &nanos); err != nil {
		return childReport{}, false
	}
	r.started = time.Unix(0, nanos)
	return r, true
}

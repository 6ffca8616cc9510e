package script

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		cmd     Command
		want    string // the output, trimmed
		wantErr string // the error's text; empty: none
	}{
		{"success", Command{Argv: []string{"sh", "-c", "echo one; echo two >&2"}}, "one\ntwo", ""},
		{"exit status", Command{Argv: []string{"sh", "-c", "echo refusing; exit 3"}}, "refusing", "exit status 3"},
		{"environment added to zerodown's", Command{Argv: []string{"sh", "-c", `echo "$HOST $VERSION ${PATH:+has-path}"`}, Env: []string{"HOST=web-1", "VERSION=v2"}}, "web-1 v2 has-path", ""},
		{"directory", Command{Argv: []string{"sh", "-c", "pwd"}, Dir: "/"}, "/", ""},
		{"a program that does not exist", Command{Argv: []string{"./no-such-script.sh"}, Dir: t.TempDir()}, "", "no such file or directory"},
		{"no program", Command{}, "", "no program to run"},
		{"tail keeps the end, from a line's start", Command{Argv: []string{"sh", "-c", "i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); done"}, Tail: 30}, "line-97\nline-98\nline-99", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Run(context.Background(), tc.cmd)
			if got := strings.TrimSpace(res.Output); got != tc.want {
				t.Errorf("output %q, want %q", got, tc.want)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one saying %q", err, tc.wantErr)
			}
		})
	}
}

func TestRunExitCode(t *testing.T) {
	_, err := Run(context.Background(), Command{Argv: []string{"sh", "-c", "exit 3"}})
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("error %v, want exit code 3", err)
	}
}

// TestRunStdoutApart: a status script's answer is its stdout alone; what
// it says on stderr stays in the tail for an error message.
func TestRunStdoutApart(t *testing.T) {
	var stdout strings.Builder
	res, err := Run(context.Background(), Command{Argv: []string{"sh", "-c", "echo warning >&2; echo v2"}, Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "v2\n" || strings.TrimSpace(res.Output) != "warning" {
		t.Fatalf("stdout %q, tail %q", stdout.String(), res.Output)
	}
}

// TestRunCancelled: ctx ending stops the script, and says so rather than
// calling it a timeout.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("run aborted")
	started := filepath.Join(t.TempDir(), "started")
	go func() {
		// Once the script runs, within a bound.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(started); err == nil {
				break
			}
		}
		cancel(cause)
	}()
	res, err := Run(ctx, Command{Argv: []string{"sh", "-c", "touch " + started + "; sleep 60"}, Timeout: time.Minute})
	var te *TimeoutError
	if !errors.Is(err, cause) || errors.As(err, &te) {
		t.Fatalf("error %v, want the cause", err)
	}
	if res.Took > 30*time.Second {
		t.Fatalf("took %s", res.Took)
	}
}

func TestShort(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Second: "1m30s", 2 * time.Second: "2s",
		1500 * time.Millisecond: "1.5s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := Short(d); got != want {
			t.Errorf("Short(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestLastLines(t *testing.T) {
	cases := []struct {
		output string
		n, w   int
		want   string
	}{
		{"a\nb\nc\n", 2, 80, "\n    b\n    c"},
		{"only\n", 5, 80, "\n    only"},
		{"a very long line\r\n", 5, 8, "\n    a very …"},
	}
	for _, tc := range cases {
		if got := LastLines(tc.output, tc.n, tc.w); got != tc.want {
			t.Errorf("LastLines(%q, %d, %d) = %q, want %q", tc.output, tc.n, tc.w, got, tc.want)
		}
	}
}

package proctest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildGo builds the Go package at pkg (a path the go command understands,
// such as ../../examples/hello) into out. When the tests run with the race
// detector, so does the program: the processes a test starts are checked
// as much as the test itself.
func BuildGo(out, pkg string) error {
	args := []string{"build", "-o", out}
	if RaceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build %s: %w", pkg, err)
	}
	return nil
}

// Binaries are the programs the end-to-end suites start as processes.
type Binaries struct {
	Dir      string // a temporary directory holding them; Remove deletes it
	Zerodown string // cmd/zerodown
	Hello    string // examples/hello, the sample app
}

// BuildBinaries builds zerodown and the sample app (with BuildGo, so
// with the race detector when the tests have it) into a new temporary
// directory named after prefix.
func BuildBinaries(prefix string) (Binaries, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir, Zerodown: filepath.Join(dir, "zerodown"), Hello: filepath.Join(dir, "hello")}
	for out, pkg := range map[string]string{b.Zerodown: "github.com/zerodown/zerodown/cmd/zerodown", b.Hello: "github.com/zerodown/zerodown/examples/hello"} {
		if err := BuildGo(out, pkg); err != nil {
			os.RemoveAll(dir)
			return Binaries{}, err
		}
	}
	return b, nil
}

// Remove deletes the binaries' directory.
func (b Binaries) Remove() { os.RemoveAll(b.Dir) }

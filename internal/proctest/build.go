package proctest

import (
	"fmt"
	"os"
	"os/exec"
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

//go:build !linux

package agent

import (
	"os/exec"
	"time"
)

// newContainment: cgroups are Linux's; elsewhere the app's process group
// (its job object's tree on Windows) is all there is.
func newContainment(string) *containment {
	return &containment{why: "cgroups are Linux's"}
}

func (c *containment) start(cmd *exec.Cmd, _ string) (string, error) { return "", cmd.Start() }

func cgroupPids(string) ([]int, error) { return nil, nil }

func signalCgroup(string, string) error { return nil }

func killCgroup(string) error { return nil }

func whoListens(int) string { return "" }

func (c *containment) sweep(map[string]bool) (removed, killed int, err error) { return 0, 0, nil }

// groupIsApp: without /proc a group's members cannot be told from a
// stranger that took the leader's pid; none is killed on a guess.
func groupIsApp(int, pidRecord) bool { return false }

func cgroupEmpty(string) bool { return true }

func waitCgroupEmpty(string, time.Time) bool { return true }

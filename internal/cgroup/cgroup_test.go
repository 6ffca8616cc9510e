//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`:          "/sys/fs/cgroup",
		`/mnt/with\040space`:      "/mnt/with space",
		`/tab\011and\134slash`:    "/tab\tand\\slash",
		`/not\0an\escape\9999end`: `/not\0an\escape\9999end`,
		`/trailing\04`:            `/trailing\04`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// The calling process's cgroup maps to a directory under the mount that
// lists it; a cgroup made there is removed by Kill once empty, and Kill
// of one already gone is no error.
func TestOfDirKill(t *testing.T) {
	own, err := Of(0)
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	dir, err := Dir(own)
	if err != nil {
		t.Skipf("this process's cgroup is not under the mount: %v", err)
	}
	pids, err := Pids(dir)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range pids {
		found = found || p == os.Getpid()
	}
	if !found {
		t.Fatalf("cgroup %s (%s) lists %v, not this process (%d)", own, dir, pids, os.Getpid())
	}
	child := filepath.Join(dir, fmt.Sprintf("zerodown-cgroup-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(child) })
	if !Empty(child) {
		t.Fatal("a fresh cgroup is not empty")
	}
	deadline := time.Now().Add(5 * time.Second)
	if err := Kill(child, deadline); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(child); !os.IsNotExist(err) {
		t.Fatalf("the cgroup is still there: %v", err)
	}
	if err := Kill(child, deadline); err != nil {
		t.Fatalf("Kill of a cgroup already gone: %v", err)
	}
}

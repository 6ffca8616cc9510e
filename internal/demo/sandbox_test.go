package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartFailsCleanly starts a sandbox whose processes cannot start: Start
// says why and returns, with nothing to close (it closed what it had).
func TestStartFailsCleanly(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "hello")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sb, err := Start(context.Background(), Options{Hosts: 2, Rate: 10, Zerodown: filepath.Join(dir, "no-such-zerodown"),
		App: HelloApp(exe), Dir: dir})
	if err == nil || sb != nil || !strings.Contains(err.Error(), "start staging-1-agent") {
		t.Fatalf("Start with no zerodown binary: %v, %v", sb, err)
	}
}

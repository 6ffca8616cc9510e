package bootstrap

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/sshagent"
)

func TestBinaryFor(t *testing.T) {
	self := runtime.GOOS + "/" + runtime.GOARCH
	b, err := binaryFor(self, nil)
	if err != nil || len(b.sha) != 64 || b.size == 0 {
		t.Fatalf("the running executable for %s: %+v, %v", self, b, err)
	}
	// This test binary's header says what platform it is for.
	exe, _ := os.Executable()
	if p, err := platformOf(exe); err != nil || (runtime.GOOS == "linux" && p != self) {
		t.Errorf("platformOf(test binary) = %q, %v", p, err)
	}
	text := filepath.Join(t.TempDir(), "zerodown")
	if err := os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		platform string
		extra    []string
		want     string
	}{
		{"linux/riscv64", nil, "GOOS=linux GOARCH=riscv64 go build"},
		{"linux/riscv64", []string{text}, "not an ELF or Mach-O executable"},
		{"linux/riscv64", []string{filepath.Join(t.TempDir(), "missing")}, "no such file"},
	} {
		if _, err := binaryFor(tt.platform, tt.extra); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %v: got %v, want %q", tt.platform, tt.extra, err, tt.want)
		}
	}
}

func TestAgentYAML(t *testing.T) {
	l := sshagent.Layout{Dir: "/home/deploy/my apps", Port: 7102}
	for _, tt := range []struct {
		name string
		h    Host
		f    facts
	}{
		{"plain", Host{AppPort: 8080}, facts{uid: 1000}},
		{"root with a swap slot", Host{AppPort: 8080, SwapPort: 8081, AllowRoot: true}, facts{uid: 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := agentYAML(l, tt.h, tt.f)
			cfg, err := config.ParseAgent("agent.yaml", []byte(text))
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if cfg.Listen != "127.0.0.1:7102" || cfg.Root != "/home/deploy/my apps/agent-7102/root" || cfg.Port != 8080 ||
				cfg.SwapPort != tt.h.SwapPort || cfg.AllowRoot != (tt.f.uid == 0) {
				t.Errorf("%+v from\n%s", cfg, text)
			}
		})
	}
}

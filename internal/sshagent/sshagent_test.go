package sshagent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proctest"
	"github.com/zerodown/zerodown/internal/sshhost"
)

func TestLayout(t *testing.T) {
	l := Layout{Dir: ".zerodown", Port: 7101}
	for got, want := range map[string]string{
		l.AgentDir(): ".zerodown/agent-7101", l.BinDir(): ".zerodown/bin", l.Binary(): ".zerodown/agent-7101/zerodown",
		l.Config(): ".zerodown/agent-7101/agent.yaml", l.Token(): ".zerodown/agent-7101/root/agent.token", l.URL(): "http://127.0.0.1:7101",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestAgentOverSSH: the Deployer reads the agent's token on the host and
// calls its API through a channel to the host's loopback; without a token
// file it says to bootstrap.
func TestAgentOverSSH(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	s := proctest.StartSSHD(t, filepath.Join(dir, "sshd"), filepath.Join(dir, "id"))
	// A stand-in for the agent's status endpoint, on this machine's loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const token = "a-token-of-at-least-16-chars"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(agent.Status{Version: "v7", State: "running", Healthy: true, Agent: agent.AgentInfo{Version: "dev", PID: 42}})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	h := sshhost.New(sshhost.Config{Name: "web-1", Dest: config.Destination{User: s.User, Host: s.Host, Port: s.Port}, Identity: s.ClientKey, KnownHosts: s.KnownHosts})
	defer h.Close()
	l := Layout{Dir: filepath.Join(dir, "host"), Port: port}
	d := New(h, l, l.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := d.Status(ctx); err == nil || !strings.Contains(err.Error(), "zerodown hosts bootstrap") {
		t.Fatalf("without a token file: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(l.Token()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.Token(), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := d.AgentStatus(ctx)
	if err != nil || st.Version != "v7" || st.Agent.PID != 42 {
		t.Fatalf("status over SSH: %+v, %v", st, err)
	}
	hs, err := d.Status(ctx)
	if err != nil || hs.Version != "v7" || !hs.Healthy {
		t.Fatalf("host status: %+v, %v", hs, err)
	}
	if gen, _ := h.Connect(ctx); gen != 1 {
		t.Errorf("%d connections for three calls", gen)
	}
}

package sshhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/proctest"
)

func hostFor(s *proctest.SSHD, knownHosts string) *Host {
	return New(Config{
		Name:       "web-1",
		Dest:       config.Destination{User: s.User, Host: s.Host, Port: s.Port},
		Identity:   s.ClientKey,
		KnownHosts: knownHosts,
		KeepAlive:  200 * time.Millisecond,
		Timeout:    10 * time.Second,
	})
}

// connected starts an sshd and connects to it with the test's key, not an
// ssh-agent's.
func connected(t *testing.T) (dir string, s *proctest.SSHD, h *Host, gen uint64) {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	dir = t.TempDir()
	s = proctest.StartSSHD(t, filepath.Join(dir, "sshd"), filepath.Join(dir, "id"))
	h = hostFor(s, s.KnownHosts)
	t.Cleanup(func() { h.Close() })
	gen, err := h.Connect(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return dir, s, h, gen
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRunAndChannel(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	s := proctest.StartSSHD(t, filepath.Join(dir, "sshd"), filepath.Join(dir, "id"))
	h := hostFor(s, s.KnownHosts)
	defer h.Close()

	out, err := h.Run(ctxFor(t, 10*time.Second), "echo hi; echo "+Quote("it's")+"; cat", strings.NewReader("from stdin"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "hi\nit's\nfrom stdin" {
		t.Errorf("output %q", got)
	}
	_, err = h.Run(ctxFor(t, 10*time.Second), "echo oops >&2; exit 3", nil)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || !strings.Contains(err.Error(), "oops") {
		t.Errorf("exit 3: got %v", err)
	}

	// A channel reaches the host's loopback: here the test's own server.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "through ssh") }))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: h.DialContext}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "through ssh" {
		t.Errorf("body %q", body)
	}
	gen, err := h.Connect(ctxFor(t, 5*time.Second))
	if err != nil || gen != 1 {
		t.Errorf("one connection for every call: generation %d, %v", gen, err)
	}
}

func TestHostKeys(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	s := proctest.StartSSHD(t, filepath.Join(dir, "sshd"), filepath.Join(dir, "id"))
	other := proctest.StartSSHD(t, filepath.Join(dir, "other"), filepath.Join(dir, "id"))
	// A known_hosts with the other server's key under this one's address.
	changed := filepath.Join(dir, "changed_known_hosts")
	b, err := os.ReadFile(other.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Replace(string(b), strconv.Itoa(other.Port), strconv.Itoa(s.Port), 1)
	if err := os.WriteFile(changed, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty_known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(s.HostKey)
	for _, tt := range []struct {
		name, file string
		want       []string
	}{
		{"unknown", empty, []string{"not a known host", fp, fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1 >> %s", s.Port, empty)}},
		{"no file", filepath.Join(dir, "missing"), []string{"not a known host", fp}},
		{"changed", changed, []string{"CHANGED", fp, ssh.FingerprintSHA256(other.HostKey), changed + ":1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := hostFor(s, tt.file)
			defer h.Close()
			_, err := h.Run(ctxFor(t, 10*time.Second), "touch "+filepath.Join(dir, "ran-"+tt.name), nil)
			if err == nil || !IsHostKeyError(err) {
				t.Fatalf("got %v, want a refused host key", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "ran-"+tt.name)); err == nil {
				t.Error("the command ran on a host whose key was refused")
			}
		})
	}
}

// TestLost: a call in progress on a connection that drops fails with a
// LostError; the next call connects again.
func TestLost(t *testing.T) {
	dir, s, h, gen := connected(t)
	ctx := h.Pin(ctxFor(t, 30*time.Second), gen)
	done := make(chan error, 1)
	started := filepath.Join(dir, "started")
	go func() {
		_, err := h.Run(ctx, "touch "+started+"; sleep 20", nil)
		done <- err
	}()
	proctest.Eventually(t, 10*time.Second, "the command to run", func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	if s.KillSessions() == 0 {
		t.Fatal("no connection to kill")
	}
	select {
	case err := <-done:
		var lost *LostError
		if !errors.As(err, &lost) || !strings.Contains(err.Error(), "web-1") {
			t.Errorf("got %v, want a LostError naming the host", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not end when its connection dropped")
	}
	if _, err := h.DialContext(ctx, "tcp", s.Addr); !errors.As(err, new(*LostError)) {
		t.Errorf("a channel pinned to the lost connection: got %v", err)
	}
	out, err := h.Run(ctxFor(t, 10*time.Second), "echo again", nil)
	if err != nil || string(out) != "again\n" {
		t.Fatalf("the next call: %q, %v", out, err)
	}
	if g, _ := h.Connect(ctxFor(t, time.Second)); g != gen+1 {
		t.Errorf("generation %d after a reconnect, want %d", g, gen+1)
	}
}

// TestKeepAlive: a host that stops answering is noticed by the keep-alives
// while nothing else is sent.
func TestKeepAlive(t *testing.T) {
	_, s, h, gen := connected(t)
	var stopped []int
	for _, pid := range s.Sessions() {
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			stopped = append(stopped, pid)
		}
	}
	if len(stopped) == 0 {
		t.Fatal("no session process to stop")
	}
	t.Cleanup(func() {
		for _, pid := range stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	proctest.Eventually(t, 5*time.Second, "the silent connection to count as lost", func() bool {
		return h.Lost(gen) != nil
	})
}

func TestJumpHost(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := t.TempDir()
	jump := proctest.StartSSHD(t, filepath.Join(dir, "jump"), filepath.Join(dir, "id"))
	target := proctest.StartSSHD(t, filepath.Join(dir, "target"), filepath.Join(dir, "id"))
	known := filepath.Join(dir, "known_hosts")
	var both []byte
	for _, f := range []string{jump.KnownHosts, target.KnownHosts} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, b...)
	}
	if err := os.WriteFile(known, both, 0o600); err != nil {
		t.Fatal(err)
	}
	h := hostFor(target, known)
	h.cfg.Jump = &config.Destination{User: jump.User, Host: jump.Host, Port: jump.Port}
	defer h.Close()
	out, err := h.Run(ctxFor(t, 10*time.Second), "echo $SSH_CONNECTION", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The target sees the connection come from the jump host's sshd, not
	// from this process.
	if f := strings.Fields(string(out)); len(f) != 4 || f[3] != strconv.Itoa(target.Port) {
		t.Errorf("SSH_CONNECTION %q", out)
	}
	if got := len(jump.Sessions()); got != 1 {
		t.Errorf("%d connections on the jump host, want 1", got)
	}
}

// TestHostKeyAlgorithms: the server is asked for the kind of key
// known_hosts holds for it, on port 22 (written without a port) as on
// others, so a host with several keys is not refused as changed.
func TestHostKeyAlgorithms(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	s := proctest.WriteKey(t, keyFile)
	known := filepath.Join(dir, "known_hosts")
	lines := knownhosts.Line([]string{knownhosts.Normalize("10.0.1.11:22")}, s) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize("10.0.1.12:2222")}, s) + "\n"
	if err := os.WriteFile(known, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	h := New(Config{Name: "web-1", KnownHosts: known})
	for _, d := range []config.Destination{{Host: "10.0.1.11", Port: 22}, {Host: "10.0.1.12", Port: 2222}} {
		_, algos, err := h.hostKeyCheck(d)
		if err != nil || len(algos) != 1 || algos[0] != ssh.KeyAlgoED25519 {
			t.Errorf("%s: algorithms %v, %v", d.Addr(), algos, err)
		}
	}
	if _, algos, _ := h.hostKeyCheck(config.Destination{Host: "10.0.1.13", Port: 22}); len(algos) != 0 {
		t.Errorf("an unknown host: algorithms %v", algos)
	}
}

// TestKeysFromSSHAgent: with no identity file, the keys of the ssh-agent
// at SSH_AUTH_SOCK (OpenSSH's own) log in.
func TestKeysFromSSHAgent(t *testing.T) {
	agentBin := proctest.NeedProgram(t, "ssh-agent")
	addBin := proctest.NeedProgram(t, "ssh-add")
	dir := t.TempDir()
	s := proctest.StartSSHD(t, filepath.Join(dir, "sshd"), filepath.Join(dir, "id"))
	sock := filepath.Join(dir, "agent.sock")
	proctest.Start(t, "ssh-agent", agentBin, "-D", "-a", sock)
	proctest.Eventually(t, 10*time.Second, "the ssh-agent's socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	t.Setenv("SSH_AUTH_SOCK", sock)
	if out, err := exec.Command(addBin, s.ClientKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	h := New(Config{Name: "web-1", Dest: config.Destination{User: s.User, Host: s.Host, Port: s.Port}, KnownHosts: s.KnownHosts})
	defer h.Close()
	if out, err := h.Run(ctxFor(t, 10*time.Second), "echo in", nil); err != nil || string(out) != "in\n" {
		t.Fatalf("%q, %v", out, err)
	}
	// Without the agent's keys and without an identity there is nothing to
	// log in with, and the error says what to set.
	t.Setenv("SSH_AUTH_SOCK", "")
	h2 := New(Config{Name: "web-1", Dest: config.Destination{User: s.User, Host: s.Host, Port: s.Port}, KnownHosts: s.KnownHosts})
	defer h2.Close()
	if _, err := h2.Run(ctxFor(t, 10*time.Second), "true", nil); err == nil || !strings.Contains(err.Error(), "ssh.identity") {
		t.Errorf("no keys: %v", err)
	}
}

package proctest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a real OpenSSH server (Debian's openssh-server) on a loopback
// port, for the tests of hosts reached over SSH. It lets in the current
// user with ClientKey; KnownHosts vouches for its host key.
type SSHD struct {
	Proc *Proc
	Addr string
	Host string
	Port int
	// User is who logs in: the user running the tests.
	User string
	// ClientKey is the private key file that logs in.
	ClientKey string
	// KnownHosts is a known_hosts file holding the server's key.
	KnownHosts string
	// HostKey is the server's public key.
	HostKey ssh.PublicKey
}

// StartSSHD runs sshd -D with a config, host key and authorized key made
// in dir. The key pair for logging in is shared when clientKey names an
// existing file, so one ssh: block reaches several servers.
func StartSSHD(t testing.TB, dir, clientKey string) *SSHD {
	t.Helper()
	sshd := NeedProgram(t, "sshd", "/usr/sbin/sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// sshd refuses to start without its privilege separation directory,
	// which Debian makes at boot, not at install.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	hostPub := WriteKey(t, filepath.Join(dir, "host_ed25519"))
	if _, err := os.Stat(clientKey); err != nil {
		WriteKey(t, clientKey)
	}
	clientPub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, clientPub, 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	s := &SSHD{Host: "127.0.0.1", Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), ClientKey: clientKey, HostKey: hostPub}
	s.User = os.Getenv("USER")
	if s.User == "" {
		s.User = "root"
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, hostPub)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_ed25519"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authorized,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"AllowTcpForwarding yes",
		"ClientAliveInterval 0",
		"LogLevel VERBOSE",
	}, "\n") + "\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Proc = Start(t, "sshd "+s.Addr, sshd, "-D", "-e", "-f", cfg)
	// Runs before Start's cleanup: the connections' processes are in
	// sessions of their own, out of reach of killing sshd's group.
	t.Cleanup(func() { s.KillSessions() })
	WaitListening(t, s.Addr, 10*time.Second)
	return s
}

// Sessions are the processes sshd forked for its connections, one each.
func (s *SSHD) Sessions() []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.Proc.Pid(), s.Proc.Pid()))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillSessions kills the processes sshd forked for its connections, which
// drops every SSH connection to it; sshd itself goes on listening.
func (s *SSHD) KillSessions() int {
	n := 0
	for _, pid := range s.Sessions() {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// WriteKey writes a new ed25519 key pair at path and path.pub.
func WriteKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return sp
}

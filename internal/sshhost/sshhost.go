// Package sshhost is one SSH connection to one host, kept for a whole run:
// host keys checked against known_hosts (never skipped), keys from the
// ssh-agent or an identity file, an optional jump host, keep-alives, and
// commands and TCP channels over it. A connection that drops is reported
// as lost to the calls that were using it; the next call connects again.
package sshhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/zerodown/zerodown/internal/config"
)

// Config says how to reach one host.
type Config struct {
	// Name is the host's name in the config, for messages.
	Name string
	Dest config.Destination
	// Identity is a private key file; empty, only the ssh-agent's keys.
	Identity string
	// KnownHosts is the known_hosts file host keys are checked against.
	KnownHosts string
	// Jump is a jump host to connect through; nil for none.
	Jump *config.Destination
	// KeepAlive is how often the connection is checked; it counts as lost
	// after three checks go unanswered. 0: 5s.
	KeepAlive time.Duration
	// Timeout bounds connecting and logging in. 0: 15s.
	Timeout time.Duration
}

// Host is a connection to one host, made when first needed and made again
// after it was lost. It is safe for concurrent use.
type Host struct {
	cfg Config

	mu   sync.Mutex
	cur  *conn
	gen  uint64
	shut bool
	// dialing is closed when the connection being made is up or failed;
	// nil when none is being made.
	dialing chan struct{}
}

// conn is one SSH connection (and the jump host's, if any).
type conn struct {
	gen    uint64
	client *ssh.Client
	jump   *ssh.Client
	done   chan struct{} // closed when the connection ends
	err    error         // why it ended; set before done closes
}

// LostError is the error of a call whose SSH connection dropped while it
// was in progress.
type LostError struct {
	Host string
	Dest string
	Err  error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("host %s: the SSH connection to %s was lost: %v", e.Host, e.Dest, e.Err)
}

func (e *LostError) Unwrap() error { return e.Err }

// New returns a Host; it connects on first use.
func New(cfg Config) *Host {
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = config.DefaultSSHKeepAlive
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.DefaultSSHTimeout
	}
	return &Host{cfg: cfg}
}

// Config returns what h was made with.
func (h *Host) Config() Config { return h.cfg }

// Connect returns the live connection's generation, connecting first if
// there is none. Calls that must not silently continue on a new connection
// pin the generation with Pin.
func (h *Host) Connect(ctx context.Context) (uint64, error) {
	c, err := h.live(ctx)
	if err != nil {
		return 0, err
	}
	return c.gen, nil
}

type pinKey struct{ h *Host }

// Pin makes the channels opened with ctx use connection gen only: once it
// is lost they fail with a LostError instead of connecting again, so a
// call in progress sees the drop.
func (h *Host) Pin(ctx context.Context, gen uint64) context.Context {
	return context.WithValue(ctx, pinKey{h}, gen)
}

// Lost returns the LostError of connection gen if it has ended, else nil.
func (h *Host) Lost(gen uint64) error {
	h.mu.Lock()
	c := h.cur
	h.mu.Unlock()
	if c != nil && c.gen == gen {
		select {
		case <-c.done:
		default:
			return nil
		}
		return &LostError{Host: h.cfg.Name, Dest: h.cfg.Dest.String(), Err: c.err}
	}
	// A newer connection replaced it, which happens only after it ended.
	return &LostError{Host: h.cfg.Name, Dest: h.cfg.Dest.String(), Err: errors.New("connection replaced")}
}

// lostOn returns the LostError of c when err came from its end: a failed
// channel is often seen just before the connection's end is.
func (h *Host) lostOn(c *conn) error {
	select {
	case <-c.done:
	case <-time.After(time.Second):
		return nil
	}
	return h.Lost(c.gen)
}

// Done is closed when connection gen has ended.
func (h *Host) Done(gen uint64) <-chan struct{} {
	h.mu.Lock()
	c := h.cur
	h.mu.Unlock()
	if c != nil && c.gen == gen {
		return c.done
	}
	ended := make(chan struct{})
	close(ended)
	return ended
}

// live returns the current connection, or a new one.
func (h *Host) live(ctx context.Context) (*conn, error) {
	for {
		h.mu.Lock()
		if h.shut {
			h.mu.Unlock()
			return nil, fmt.Errorf("host %s: SSH connection closed", h.cfg.Name)
		}
		if c := h.cur; c != nil && c.alive() {
			h.mu.Unlock()
			return c, nil
		}
		if wait := h.dialing; wait != nil {
			// One connection per host: wait for the one being made, as
			// long as this caller may.
			h.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("host %s: waiting for the SSH connection: %w", h.cfg.Name, context.Cause(ctx))
			}
		}
		done := make(chan struct{})
		h.dialing = done
		h.mu.Unlock()

		c, err := h.dial(ctx)
		h.mu.Lock()
		h.dialing = nil
		close(done)
		if err == nil && h.shut {
			c.client.Close()
			err = fmt.Errorf("host %s: SSH connection closed", h.cfg.Name)
		}
		if err != nil {
			h.mu.Unlock()
			return nil, err
		}
		h.gen++
		c.gen = h.gen
		h.cur = c
		h.mu.Unlock()
		go h.keepAlive(c)
		return c, nil
	}
}

func (c *conn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// pinned returns the connection a channel may use under ctx.
func (h *Host) pinned(ctx context.Context) (*conn, error) {
	gen, ok := ctx.Value(pinKey{h}).(uint64)
	if !ok {
		return h.live(ctx)
	}
	h.mu.Lock()
	c := h.cur
	h.mu.Unlock()
	if c == nil || c.gen != gen || !c.alive() {
		return nil, h.Lost(gen)
	}
	return c, nil
}

// DialContext opens a TCP channel through the connection to addr as the
// host sees it, such as the agent's 127.0.0.1:7101: the host's loopback,
// reached without anything listening beyond it.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := h.pinned(ctx)
	if err != nil {
		return nil, err
	}
	nc, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		if lost := h.lostOn(c); lost != nil {
			return nil, lost
		}
		return nil, fmt.Errorf("host %s: open a channel to %s over SSH: %w", h.cfg.Name, addr, err)
	}
	return nc, nil
}

// Close ends the connection; later calls fail.
func (h *Host) Close() error {
	h.mu.Lock()
	c := h.cur
	h.shut = true
	h.mu.Unlock()
	if c != nil {
		c.client.Close()
		<-c.done
	}
	return nil
}

// keepAlive asks the server for an answer every KeepAlive; three missed
// answers close the connection, so a host that went away is noticed even
// when nothing is being sent.
func (h *Host) keepAlive(c *conn) {
	every := h.cfg.KeepAlive
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case <-c.done:
			return
		case err := <-answered:
			if err != nil {
				c.client.Close()
			}
		case <-time.After(3 * every):
			c.client.Close()
		}
	}
}

// dial connects and logs in, through the jump host if there is one.
func (h *Host) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	auth, closeAgent, err := h.auth()
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	c := &conn{done: make(chan struct{})}
	var raw net.Conn
	if j := h.cfg.Jump; j != nil {
		jc, err := h.handshake(ctx, nil, *j, auth, "jump host "+j.String())
		if err != nil {
			return nil, err
		}
		c.jump = jc
		raw, err = jc.DialContext(ctx, "tcp", h.cfg.Dest.Addr())
		if err != nil {
			jc.Close()
			return nil, fmt.Errorf("host %s: reach %s through jump host %s: %w", h.cfg.Name, h.cfg.Dest.Addr(), j, err)
		}
	}
	c.client, err = h.handshake(ctx, raw, h.cfg.Dest, auth, h.cfg.Dest.String())
	if err != nil {
		if c.jump != nil {
			c.jump.Close()
		}
		return nil, err
	}
	go func() {
		err := c.client.Wait()
		if err == nil {
			err = errors.New("the server closed it")
		}
		c.err = err
		if c.jump != nil {
			c.jump.Close()
		}
		close(c.done)
	}()
	return c, nil
}

// handshake logs in to d over raw, or over a new TCP connection when raw
// is nil, checking the host key.
func (h *Host) handshake(ctx context.Context, raw net.Conn, d config.Destination, auth []ssh.AuthMethod, what string) (*ssh.Client, error) {
	check, algos, err := h.hostKeyCheck(d)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{
		User:              d.User,
		Auth:              auth,
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
		Timeout:           h.cfg.Timeout,
	}
	if raw == nil {
		var dialer net.Dialer
		raw, err = dialer.DialContext(ctx, "tcp", d.Addr())
		if err != nil {
			return nil, fmt.Errorf("host %s: connect to %s: %w", h.cfg.Name, what, err)
		}
	}
	// The handshake has no context: closing the connection when ctx ends
	// bounds it, also through a jump host, whose channels have no deadlines.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(raw, d.Addr(), cfg)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		raw.Close()
		return nil, fmt.Errorf("host %s: log in to %s: no answer within %s: %w", h.cfg.Name, what, h.cfg.Timeout, context.Cause(ctx))
	}
	if err != nil {
		raw.Close()
		var ke *hostKeyError
		if errors.As(err, &ke) {
			return nil, ke
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("host %s: log in to %s: %w (keys tried: %s)", h.cfg.Name, what, err, h.keysTried())
		}
		return nil, fmt.Errorf("host %s: log in to %s: %w", h.cfg.Name, what, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func (h *Host) keysTried() string {
	var s []string
	if os.Getenv("SSH_AUTH_SOCK") != "" {
		s = append(s, "the ssh-agent's")
	}
	if h.cfg.Identity != "" {
		s = append(s, h.cfg.Identity)
	}
	if len(s) == 0 {
		return "none: set ssh.identity or start an ssh-agent"
	}
	return strings.Join(s, ", ")
}

// auth is the keys to log in with: the ssh-agent's, then the identity
// file's.
func (h *Host) auth() ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	closeAgent := func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := net.Dial("unix", sock); err == nil {
			closeAgent = func() { ac.Close() }
			methods = append(methods, ssh.PublicKeysCallback(sshagent.NewClient(ac).Signers))
		}
	}
	if h.cfg.Identity != "" {
		signer, err := loadIdentity(h.cfg.Identity)
		if err != nil {
			closeAgent()
			return nil, nil, fmt.Errorf("host %s: %w", h.cfg.Name, err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if len(methods) == 0 {
		return nil, nil, fmt.Errorf("host %s: no SSH key: set ssh.identity to a private key file, or start an ssh-agent (SSH_AUTH_SOCK)", h.cfg.Name)
	}
	return methods, closeAgent, nil
}

func loadIdentity(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh.identity: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pm *ssh.PassphraseMissingError
	if errors.As(err, &pm) {
		return nil, fmt.Errorf("ssh.identity %s is protected by a passphrase: add it to an ssh-agent (ssh-add %s) instead", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh.identity %s: %w", path, err)
	}
	return s, nil
}

// hostKeyError refuses a host key that known_hosts does not vouch for,
// saying how to check it and trust it.
type hostKeyError struct{ msg string }

func (e *hostKeyError) Error() string { return e.msg }

// IsHostKeyError reports whether err is a refused host key.
func IsHostKeyError(err error) bool {
	var ke *hostKeyError
	return errors.As(err, &ke)
}

// hostKeyCheck checks d's key against known_hosts, and returns the key
// algorithms known_hosts has for d, so the server offers a key that can be
// checked rather than another one of its keys.
func (h *Host) hostKeyCheck(d config.Destination) (ssh.HostKeyCallback, []string, error) {
	file := h.cfg.KnownHosts
	if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
		// An empty file: every host is unknown, and says how to trust it.
		file = os.DevNull
	}
	db, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("host %s: ssh.known_hosts: %w", h.cfg.Name, err)
	}
	var algos []string
	probe := &net.TCPAddr{IP: net.IPv4zero}
	var ke *knownhosts.KeyError
	// As ssh calls it: host:port, which the check normalizes itself.
	if err := db(d.Addr(), probe, probeKey{}); errors.As(err, &ke) {
		for _, k := range ke.Want {
			algos = append(algos, algorithmsFor(k.Key.Type())...)
		}
	}
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		if err == nil {
			return nil
		}
		fp := ssh.FingerprintSHA256(key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &re):
			return &hostKeyError{fmt.Sprintf("host %s: %s's host key %s %s is marked revoked in %s: refusing to connect", h.cfg.Name, d.Addr(), key.Type(), fp, re.Revoked.Filename)}
		case errors.As(err, &ke) && len(ke.Want) > 0:
			w := ke.Want[0]
			return &hostKeyError{fmt.Sprintf("host %s: %s's host key has CHANGED: it is %s %s, but %s:%d says %s %s. Someone may be intercepting the connection, or the host was reinstalled: check with its owner; refusing to connect",
				h.cfg.Name, d.Addr(), key.Type(), fp, w.Filename, w.Line, w.Key.Type(), ssh.FingerprintSHA256(w.Key))}
		case errors.As(err, &ke):
			scan := "ssh-keyscan " + d.Host
			if d.Port != 22 {
				scan = fmt.Sprintf("ssh-keyscan -p %d %s", d.Port, d.Host)
			}
			return &hostKeyError{fmt.Sprintf("host %s: %s is not a known host: its key is %s %s and %s has no key for it. Compare the fingerprint with `ssh-keygen -lf` of the host's key on the host itself, then trust it with: %s >> %s",
				h.cfg.Name, d.Addr(), key.Type(), fp, h.cfg.KnownHosts, scan, h.cfg.KnownHosts)}
		}
		return fmt.Errorf("host %s: check the host key of %s: %w", h.cfg.Name, d.Addr(), err)
	}
	return check, algos, nil
}

// algorithmsFor is the signature algorithms a host key of type t is
// presented with.
func algorithmsFor(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// probeKey matches no known key, so the known_hosts callback says which
// keys it has for a host.
type probeKey struct{}

func (probeKey) Type() string                        { return "zerodown-probe" }
func (probeKey) Marshal() []byte                     { return []byte("zerodown-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe") }

// ExitError is a command that ran and exited non-zero.
type ExitError struct {
	Host    string
	Command string
	Status  int
	Stderr  string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("host %s: %s exited with status %d", e.Host, e.Command, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + lastLines(s, 5)
	}
	return msg
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " / ")
}

// Run runs command (a shell command line) on the host with stdin, and
// returns its standard output. A non-zero exit is an *ExitError with its
// standard error. ctx ending closes the session, which ends the command.
func (h *Host) Run(ctx context.Context, command string, stdin io.Reader) ([]byte, error) {
	c, err := h.pinned(ctx)
	if err != nil {
		return nil, err
	}
	s, err := c.client.NewSession()
	if err != nil {
		if lost := h.lostOn(c); lost != nil {
			return nil, lost
		}
		return nil, fmt.Errorf("host %s: open an SSH session: %w", h.cfg.Name, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	if stdin != nil {
		s.Stdin = stdin
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	// The login shell may be fish or csh: the command is sh's.
	err = s.Run("exec /bin/sh -c " + Quote(command))
	stopped := !stop()
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case stopped:
		return stdout.Bytes(), fmt.Errorf("host %s: %s: %w", h.cfg.Name, command, ctx.Err())
	case errors.As(err, &ee):
		return stdout.Bytes(), &ExitError{Host: h.cfg.Name, Command: command, Status: ee.ExitStatus(), Stderr: stderr.String()}
	}
	if lost := h.lostOn(c); lost != nil {
		return nil, lost
	}
	return nil, fmt.Errorf("host %s: %s: %w", h.cfg.Name, command, err)
}

// Quote makes s one word of a POSIX shell command line.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

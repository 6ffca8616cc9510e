// Package bootstrap installs zerodown's agent on a host over SSH: the
// binary for the host's OS and architecture (checked by sha256 on the
// host), agent.yaml, and the agent started as a systemd unit where systemd
// runs and the login is root, else under `zerodown agent supervise` with a
// pid file. Doing it again changes nothing; an upgrade replaces the agent
// and leaves the app running, since a new agent adopts it.
package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/sshagent"
	"github.com/zerodown/zerodown/internal/sshhost"
)

// Host is one host to install the agent on.
type Host struct {
	Name   string
	SSH    *sshhost.Host
	Layout sshagent.Layout
	// AppPort and SwapPort are the app's ports: the host's target's port,
	// and its swap_target's (0: none).
	AppPort  int
	SwapPort int
	// AllowRoot lets the agent run the app as root when the login is root.
	AllowRoot bool
}

// Options apply to every host of a bootstrap.
type Options struct {
	// Binaries are zerodown builds for other OSes and architectures; the
	// running executable serves hosts like this machine.
	Binaries []string
	// Upgrade replaces an installed agent whose binary or config differs.
	Upgrade bool
	// Version is this zerodown's version, reported for the agent.
	Version string
	// WaitFor bounds the wait for the agent to answer after a start.
	WaitFor time.Duration
}

// Result is what bootstrap found and did on one host.
type Result struct {
	Host string `json:"host"`
	// Platform is the host's OS/arch.
	Platform string `json:"platform"`
	// Mode is how the agent runs: "systemd" or "supervised".
	Mode string `json:"mode"`
	// Binary is the sha256 of the binary the agent runs.
	Binary string `json:"binary_sha256"`
	// Done lists what was changed, in order; empty when nothing was.
	Done []string `json:"done"`
	// Pending says what differs and is left alone without --upgrade.
	Pending []string `json:"pending,omitempty"`
	// AgentPID and AgentVersion are the running agent's.
	AgentPID     int           `json:"agent_pid"`
	AgentVersion string        `json:"agent_version"`
	Took         time.Duration `json:"took_ns"`
}

// facts are what one command tells about the host.
type facts struct {
	platform string
	home     string
	uid      int
	systemd  bool
	user     string
}

// Run installs or upgrades the agent on h.
func Run(ctx context.Context, h Host, o Options) (Result, error) {
	start := time.Now()
	res := Result{Host: h.Name}
	if o.WaitFor <= 0 {
		o.WaitFor = 30 * time.Second
	}
	f, err := hostFacts(ctx, h)
	if err != nil {
		return res, err
	}
	res.Platform = f.platform
	if f.uid == 0 && !h.AllowRoot {
		return res, fmt.Errorf("host %s: the SSH login is root, so the agent would run the app as root: log in as the account the app runs as, or set ssh.allow_root: true", h.Name)
	}
	bin, err := binaryFor(f.platform, o.Binaries)
	if err != nil {
		return res, fmt.Errorf("host %s: %w", h.Name, err)
	}
	res.Binary = bin.sha
	l := h.Layout
	if !path.IsAbs(l.Dir) {
		l.Dir = path.Join(f.home, l.Dir)
	}
	res.Mode = "supervised"
	if f.systemd && f.uid == 0 {
		res.Mode = "systemd"
	}

	var unitName, unit string
	if res.Mode == "systemd" {
		u := Unit{Binary: l.Binary(), Config: l.Config(), WorkingDirectory: l.AgentDir()}
		if err := u.Check(); err != nil {
			return res, fmt.Errorf("host %s: %w", h.Name, err)
		}
		unitName, unit = UnitName(l.Port), SystemdUnit(u)
	}

	// What is there now: the link (marks the agent installed), the
	// record of what the running agent was started from, and the config.
	out, err := h.SSH.Run(ctx, `printf '%s\n' "$(readlink `+q(l.Binary())+` 2>/dev/null)" "$(cat `+q(startedFile(l))+` 2>/dev/null)"; cat `+q(l.Config())+" 2>/dev/null; true", nil)
	if err != nil {
		return res, err
	}
	curLink, rest, _ := strings.Cut(string(out), "\n")
	curStarted, curConfig, _ := strings.Cut(rest, "\n")
	curLink = strings.TrimSpace(curLink)
	wantLink := path.Join(l.BinDir(), "zerodown-"+bin.sha[:16])
	wantConfig := agentYAML(l, h, f)
	wantStarted := startedFrom(wantLink, wantConfig, unit)
	installed := curLink != ""
	change := !installed || o.Upgrade
	if installed && curLink != wantLink {
		if change {
			res.Done = append(res.Done, "replaced the binary "+path.Base(curLink)+" with "+path.Base(wantLink))
		} else {
			res.Pending = append(res.Pending, "the agent runs "+path.Base(curLink)+", this zerodown is "+path.Base(wantLink))
		}
	}
	if installed && curConfig != wantConfig {
		if change {
			res.Done = append(res.Done, "rewrote "+l.Config())
		} else {
			res.Pending = append(res.Pending, l.Config()+" differs from what bootstrap writes")
		}
	}
	if change {
		copied, err := putBinary(ctx, h, bin, wantLink)
		if err != nil {
			return res, err
		}
		if copied {
			res.Done = append([]string{"copied the " + f.platform + " binary (sha256 " + bin.sha[:16] + "…) and checked it on the host"}, res.Done...)
		}
		if err := writeFiles(ctx, h, l, wantLink, curLink, wantConfig, curConfig); err != nil {
			return res, err
		}
		if !installed {
			res.Done = append(res.Done, "wrote "+l.Config())
		}
		if unit != "" {
			wrote, err := putUnit(ctx, h, unitName, unit)
			if err != nil {
				return res, err
			}
			if wrote {
				res.Done = append(res.Done, "wrote /etc/systemd/system/"+unitName)
			}
		}
	}

	running, pid, err := isRunning(ctx, h, l, res.Mode, unitName)
	if err != nil {
		return res, err
	}
	// The running agent is restarted when it was started from other files
	// than this bootstrap wants: changed now, or by an upgrade that was
	// cut short before its restart.
	stale := running && strings.TrimSpace(curStarted) != wantStarted
	if stale && !change {
		res.Pending = append(res.Pending, "the running agent was started from other files than these (an upgrade cut short?)")
	}
	var before agent.Status
	restart := stale && change
	if restart {
		before, err = agentStatus(ctx, h, l)
		if err != nil {
			return res, fmt.Errorf("host %s: the agent to upgrade does not answer: %w", h.Name, err)
		}
	}
	switch {
	case !running:
		if err := startAgent(ctx, h, l, res.Mode, unitName); err != nil {
			return res, err
		}
		res.Done = append(res.Done, "started the agent ("+res.Mode+")")
	case restart:
		if err := restartAgent(ctx, h, l, res.Mode, unitName, pid); err != nil {
			return res, err
		}
		res.Done = append(res.Done, "restarted the agent ("+res.Mode+"); the app kept running")
	}
	st, err := waitAgent(ctx, h, l, o.WaitFor, before.Agent.PID)
	if err != nil {
		return res, err
	}
	if restart && before.PID != 0 && st.PID != before.PID {
		return res, fmt.Errorf("host %s: the app's process changed from %d to %d across the agent's restart", h.Name, before.PID, st.PID)
	}
	if !running || restart {
		if err := writeStarted(ctx, h, l, wantStarted); err != nil {
			return res, err
		}
	}
	res.AgentPID, res.AgentVersion = st.Agent.PID, st.Agent.Version
	res.Took = time.Since(start)
	return res, nil
}

// startedFile records what the running agent was started from.
func startedFile(l sshagent.Layout) string { return path.Join(l.AgentDir(), "started") }

// startedFrom names what an agent starts from: its binary, and digests of
// its config and unit.
func startedFrom(link, config, unit string) string {
	c, u := sha256.Sum256([]byte(config)), sha256.Sum256([]byte(unit))
	return fmt.Sprintf("%s config:%x unit:%x", path.Base(link), c[:8], u[:8])
}

func writeStarted(ctx context.Context, h Host, l sshagent.Layout, started string) error {
	if _, err := h.SSH.Run(ctx, "printf '%s\\n' "+q(started)+" > "+q(startedFile(l)), nil); err != nil {
		return fmt.Errorf("host %s: record the agent's start: %w", h.Name, err)
	}
	return nil
}

func q(s string) string { return sshhost.Quote(s) }

// hostFacts asks the host its platform, home, uid and whether systemd
// runs it (the check sd_booted(3) makes).
func hostFacts(ctx context.Context, h Host) (facts, error) {
	out, err := h.SSH.Run(ctx, `uname -s; uname -m; echo "$HOME"; id -u; id -un; if test -d /run/systemd/system; then echo systemd; else echo none; fi`, nil)
	if err != nil {
		return facts{}, err
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != 6 {
		return facts{}, fmt.Errorf("host %s: unexpected answer to uname/id: %q", h.Name, out)
	}
	var f facts
	goos, ok := map[string]string{"Linux": "linux", "Darwin": "darwin", "FreeBSD": "freebsd"}[lines[0]]
	if !ok {
		return f, fmt.Errorf("host %s: unsupported OS %q (uname -s)", h.Name, lines[0])
	}
	arch, ok := map[string]string{"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386", "i386": "386", "riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x"}[lines[1]]
	if !ok {
		return f, fmt.Errorf("host %s: unsupported architecture %q (uname -m)", h.Name, lines[1])
	}
	f.platform = goos + "/" + arch
	f.home = lines[2]
	if !path.IsAbs(f.home) {
		return f, fmt.Errorf("host %s: the login has no home directory ($HOME is %q): set ssh.dir to an absolute path", h.Name, f.home)
	}
	if f.uid, err = strconv.Atoi(lines[3]); err != nil {
		return f, fmt.Errorf("host %s: unexpected answer to id -u: %q", h.Name, lines[3])
	}
	f.user = lines[4]
	f.systemd = lines[5] == "systemd"
	return f, nil
}

// agentYAML is the agent.yaml bootstrap writes: the API on loopback only,
// since deploys come through SSH.
func agentYAML(l sshagent.Layout, h Host, f facts) string {
	var b strings.Builder
	b.WriteString("# Written by `zerodown hosts bootstrap`; `--upgrade` rewrites it.\n")
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", l.Port)
	fmt.Fprintf(&b, "root: %s\n", yamlString(l.Root()))
	fmt.Fprintf(&b, "port: %d\n", h.AppPort)
	if h.SwapPort != 0 {
		fmt.Fprintf(&b, "swap_port: %d\n", h.SwapPort)
	}
	if f.uid == 0 {
		b.WriteString("allow_root: true\n")
	}
	return b.String()
}

// yamlString quotes s for YAML.
func yamlString(s string) string { return strconv.Quote(s) }

// localBinary is a zerodown build on this machine.
type localBinary struct {
	path, platform, sha string
	size                int64
}

var (
	binMu    sync.Mutex
	binCache = map[string]localBinary{}
)

// binaryFor picks the build for platform: the running executable when it
// matches, else one of extra.
func binaryFor(platform string, extra []string) (localBinary, error) {
	self, err := os.Executable()
	if err != nil {
		return localBinary{}, err
	}
	candidates := append([]string{self}, extra...)
	var seen []string
	for _, p := range candidates {
		b, err := inspect(p, p == self)
		if err != nil {
			return localBinary{}, err
		}
		if b.platform == platform {
			return b, nil
		}
		seen = append(seen, b.platform+" ("+p+")")
	}
	goos, goarch, _ := strings.Cut(platform, "/")
	return localBinary{}, fmt.Errorf("the host is %s and no zerodown build for it was given (have %s): build one with `GOOS=%s GOARCH=%s go build -o zerodown-%s-%s ./cmd/zerodown` and pass it with --binary",
		platform, strings.Join(seen, ", "), goos, goarch, goos, goarch)
}

// inspect hashes a build and reads its platform from its header.
func inspect(p string, self bool) (localBinary, error) {
	binMu.Lock()
	defer binMu.Unlock()
	if b, ok := binCache[p]; ok {
		return b, nil
	}
	b := localBinary{path: p}
	if _, err := os.Stat(p); err != nil {
		return b, fmt.Errorf("--binary: %w", err)
	}
	if self {
		b.platform = runtime.GOOS + "/" + runtime.GOARCH
	} else {
		var err error
		if b.platform, err = platformOf(p); err != nil {
			return b, fmt.Errorf("--binary %s: %w", p, err)
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return b, fmt.Errorf("--binary: %w", err)
	}
	defer f.Close()
	hash := sha256.New()
	if b.size, err = io.Copy(hash, f); err != nil {
		return b, fmt.Errorf("--binary %s: %w", p, err)
	}
	b.sha = hex.EncodeToString(hash.Sum(nil))
	binCache[p] = b
	return b, nil
}

// platformOf reads OS and architecture from an ELF or Mach-O header.
func platformOf(p string) (string, error) {
	if f, err := elf.Open(p); err == nil {
		defer f.Close()
		arch, ok := map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_ARM: "arm", elf.EM_386: "386", elf.EM_RISCV: "riscv64", elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x"}[f.Machine]
		if !ok {
			return "", fmt.Errorf("an ELF executable for %s, which zerodown does not know", f.Machine)
		}
		goos := "linux"
		if f.OSABI == elf.ELFOSABI_FREEBSD {
			goos = "freebsd"
		}
		return goos + "/" + arch, nil
	}
	if f, err := macho.Open(p); err == nil {
		defer f.Close()
		arch, ok := map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
		if !ok {
			return "", fmt.Errorf("a Mach-O executable for %s, which zerodown does not know", f.Cpu)
		}
		return "darwin/" + arch, nil
	}
	return "", errors.New("not an ELF or Mach-O executable")
}

// sumCmd prints a file's sha256, with GNU's or BSD's tool.
func sumCmd(file string) string {
	return "{ sha256sum " + q(file) + " 2>/dev/null || shasum -a 256 " + q(file) + "; } | cut -d' ' -f1"
}

// putBinary copies bin to dst on the host unless it is there already; the
// copy is checked by sha256 on the host before it takes dst's name.
func putBinary(ctx context.Context, h Host, bin localBinary, dst string) (bool, error) {
	out, err := h.SSH.Run(ctx, "test -x "+q(dst)+" && "+sumCmd(dst)+" || true", nil)
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(string(out)) == bin.sha {
		return false, nil
	}
	f, err := os.Open(bin.path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// Several agents of one host may copy the same binary at once.
	tmp := fmt.Sprintf("%s.tmp-%d", dst, h.Layout.Port)
	out, err = h.SSH.Run(ctx, "mkdir -p "+q(path.Dir(dst))+" && chmod 755 "+q(path.Dir(dst))+" && cat > "+q(tmp)+" && "+sumCmd(tmp), f)
	if err != nil {
		return false, fmt.Errorf("host %s: copy the binary: %w", h.Name, err)
	}
	if got := strings.TrimSpace(string(out)); got != bin.sha {
		_, _ = h.SSH.Run(ctx, "rm -f "+q(tmp), nil)
		return false, fmt.Errorf("host %s: the binary copied to %s has sha256 %s, want %s: removed it", h.Name, tmp, got, bin.sha)
	}
	if _, err := h.SSH.Run(ctx, "chmod 755 "+q(tmp)+" && mv -f "+q(tmp)+" "+q(dst), nil); err != nil {
		return false, fmt.Errorf("host %s: install the binary: %w", h.Name, err)
	}
	return true, nil
}

// writeFiles points the agent's link at the binary and writes agent.yaml,
// each replaced whole (a new name, then rename) and only when it changes.
func writeFiles(ctx context.Context, h Host, l sshagent.Layout, link, curLink, config, curConfig string) error {
	cmd := "mkdir -p " + q(l.AgentDir()) + " " + q(l.Root()) + " && chmod 700 " + q(l.AgentDir())
	var stdin io.Reader
	if config != curConfig {
		cmd += " && " + writeCmd(l.Config(), len(config))
		stdin = strings.NewReader(config)
	}
	// The link last: it marks the agent installed.
	if link != curLink {
		tmp := l.Binary() + ".new"
		cmd += " && ln -sfn " + q(link) + " " + q(tmp) + " && mv -f " + q(tmp) + " " + q(l.Binary())
	}
	if _, err := h.SSH.Run(ctx, cmd, stdin); err != nil {
		return fmt.Errorf("host %s: write the agent's files: %w", h.Name, err)
	}
	return nil
}

// writeCmd writes stdin to file whole: a session cut short leaves cat a
// short file, which the length check keeps from taking file's name.
func writeCmd(file string, n int) string {
	tmp := q(file + ".tmp")
	return "cat > " + tmp + " && test $(( $(wc -c < " + tmp + ") )) -eq " + strconv.Itoa(n) + " && mv -f " + tmp + " " + q(file)
}

// putUnit writes the systemd unit when it differs and reloads systemd.
func putUnit(ctx context.Context, h Host, name, unit string) (bool, error) {
	file := "/etc/systemd/system/" + name
	out, err := h.SSH.Run(ctx, "cat "+q(file)+" 2>/dev/null || true", nil)
	if err != nil {
		return false, err
	}
	if string(out) == unit {
		return false, nil
	}
	if _, err := h.SSH.Run(ctx, writeCmd(file, len(unit))+" && systemctl daemon-reload", strings.NewReader(unit)); err != nil {
		return false, fmt.Errorf("host %s: install the systemd unit: %w", h.Name, err)
	}
	return true, nil
}

// isRunning reports whether the agent runs: its unit is active, or its
// supervisor's pid file names a live supervisor.
func isRunning(ctx context.Context, h Host, l sshagent.Layout, mode, unit string) (bool, int, error) {
	if mode == "systemd" {
		out, err := h.SSH.Run(ctx, "systemctl is-active "+q(unit)+" || true", nil)
		return strings.TrimSpace(string(out)) == "active", 0, err
	}
	// A pid file outlives a reboot: the pid must be this agent's
	// supervisor, not whatever process got the number since.
	out, err := h.SSH.Run(ctx, "pid=$(cat "+q(l.PidFile())+" 2>/dev/null) && ps -o args= -p \"$pid\" 2>/dev/null | grep -qF -- "+q("--pid-file "+l.PidFile())+" && echo \"$pid\"; true", nil)
	if err != nil {
		return false, 0, err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return pid > 0, pid, nil
}

// startAgent starts the agent: its unit, or its supervisor detached from
// the SSH session, so it outlives the connection.
func startAgent(ctx context.Context, h Host, l sshagent.Layout, mode, unit string) error {
	cmd := "systemctl enable --now " + q(unit)
	if mode != "systemd" {
		run := q(l.Binary()) + " agent supervise --config " + q(l.Config()) + " --pid-file " + q(l.PidFile()) + " --log " + q(l.Log())
		cmd = "cd " + q(l.AgentDir()) + " && if command -v setsid >/dev/null; then setsid " + run + " </dev/null >/dev/null 2>&1 & else nohup " + run + " --setsid </dev/null >/dev/null 2>&1 & fi"
	}
	if _, err := h.SSH.Run(ctx, cmd, nil); err != nil {
		return fmt.Errorf("host %s: start the agent: %w", h.Name, err)
	}
	return nil
}

// restartAgent restarts the agent on its new binary and config. systemd's
// KillMode=process and the supervisor both stop the agent alone; the app
// runs on and the new agent adopts it.
func restartAgent(ctx context.Context, h Host, l sshagent.Layout, mode, unit string, pid int) error {
	cmd := "systemctl restart " + q(unit)
	if mode != "systemd" {
		// The supervisor stops the agent and runs itself again from the
		// switched link, which starts the new agent.
		cmd = "kill -HUP " + strconv.Itoa(pid)
	}
	if _, err := h.SSH.Run(ctx, cmd, nil); err != nil {
		return fmt.Errorf("host %s: restart the agent: %w", h.Name, err)
	}
	return nil
}

// agentStatus asks the agent over the connection.
func agentStatus(ctx context.Context, h Host, l sshagent.Layout) (agent.Status, error) {
	c, pinned, _, err := sshagent.New(h.SSH, l, l.URL()).Agent(ctx)
	if err != nil {
		return agent.Status{}, err
	}
	return c.AgentStatus(pinned)
}

// waitAgent waits until an agent other than oldPID answers.
func waitAgent(ctx context.Context, h Host, l sshagent.Layout, within time.Duration, oldPID int) (agent.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	// The token appears at the agent's first start; a Deployer caches it
	// only once read.
	d := sshagent.New(h.SSH, l, l.URL())
	for {
		c, pinned, _, err := d.Agent(ctx)
		if err == nil {
			var st agent.Status
			st, err = c.AgentStatus(pinned)
			if err == nil && st.Agent.PID != 0 && st.Agent.PID != oldPID {
				return st, nil
			}
			if err == nil {
				err = fmt.Errorf("the old agent (pid %d) still answers", oldPID)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
			tail, _ := h.SSH.Run(tctx, "tail -n 20 "+q(l.Log())+" 2>/dev/null || true", nil)
			tcancel()
			msg := fmt.Sprintf("host %s: the agent did not answer on %s within %s: %v", h.Name, l.URL(), within, last)
			if t := bytes.TrimSpace(tail); len(t) > 0 {
				msg += "\nlast lines of " + l.Log() + ":\n  " + strings.ReplaceAll(string(t), "\n", "\n  ")
			}
			return agent.Status{}, errors.New(msg)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

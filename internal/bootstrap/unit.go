package bootstrap

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Unit is the systemd unit of one agent: where its files are on the host.
type Unit struct {
	// Binary is the link to the zerodown binary the agent runs, which an
	// upgrade switches: <dir>/agent-<port>/zerodown.
	Binary string
	// Config is the agent's agent.yaml.
	Config string
	// WorkingDirectory is the agent's directory, <dir>/agent-<port>.
	WorkingDirectory string
	// User is who the agent runs as; empty, root (systemd's default).
	User string
}

// UnitName is the name of the unit of the agent on port.
func UnitName(port int) string { return fmt.Sprintf("zerodown-agent-%d.service", port) }

// userName is what User may be: a POSIX-style name or a numeric uid, which
// systemd accepts without relaxing its checks.
var userName = regexp.MustCompile(`^(?:[A-Za-z_][A-Za-z0-9_.-]*|[0-9]+)$`)

// Check reports paths (or a user) that no unit file can express. Paths
// are the host's: absolute, POSIX, UTF-8. Command lines can quote any
// such path, though systemd refuses some as a program; WorkingDirectory=
// (and the Description= made of it) takes its value as written: a control
// character would end the line, trailing blanks are dropped, and a
// trailing backslash continues the line.
func (u Unit) Check() error {
	var errs []error
	for _, p := range []struct{ name, value string }{
		{"the binary", u.Binary}, {"the config", u.Config}, {"the working directory", u.WorkingDirectory},
	} {
		switch {
		case !strings.HasPrefix(p.value, "/"):
			errs = append(errs, fmt.Errorf("systemd unit: %s %q is not an absolute path", p.name, p.value))
		case !utf8.ValidString(p.value):
			errs = append(errs, fmt.Errorf("systemd unit: %s %q is not UTF-8", p.name, p.value))
		}
	}
	// systemd quotes and unescapes the program's path like any word, then
	// refuses it if it holds quotes, backslashes or control characters.
	if strings.ContainsFunc(u.Binary, func(r rune) bool { return isControl(r) || strings.ContainsRune(`"'\`, r) }) {
		errs = append(errs, fmt.Errorf("systemd unit: systemd runs no program whose path holds quotes, backslashes or control characters: %q", u.Binary))
	}
	switch wd := u.WorkingDirectory; {
	case strings.ContainsFunc(wd, isControl):
		errs = append(errs, fmt.Errorf("systemd unit: the working directory %q holds a control character", wd))
	case strings.HasSuffix(wd, "\\") || strings.TrimRight(wd, " \t") != wd:
		errs = append(errs, fmt.Errorf("systemd unit: the working directory %q ends with a backslash or a blank", wd))
	}
	if u.User != "" && !userName.MatchString(u.User) {
		errs = append(errs, fmt.Errorf("systemd unit: %q is not a user name systemd accepts", u.User))
	}
	return errors.Join(errs...)
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// SystemdUnit renders the system unit of an agent (for
// /etc/systemd/system/UnitName(port)), with its paths escaped as systemd
// requires; u should pass Check. Its settings are the ones docs/agent.md
// asks of any unit that runs the agent.
func SystemdUnit(u Unit) string {
	dir := path.Clean(u.WorkingDirectory)
	var b strings.Builder
	b.WriteString("# Written by `zerodown hosts bootstrap`; `--upgrade` rewrites it.\n")
	b.WriteString("[Unit]\n")
	fmt.Fprintf(&b, "Description=zerodown agent in %s\n", escapeSpecifiers(dir))
	// network-online.target only orders what pulls it in: the agent may
	// listen on an address that is not there before the network is up.
	b.WriteString("Wants=network-online.target\n")
	b.WriteString("After=network-online.target\n")
	// Deploys reach the hosts through their agents: keep restarting it, as
	// `zerodown agent supervise` does, rather than give up after five
	// failed starts in ten seconds (systemd's default start limit).
	b.WriteString("StartLimitIntervalSec=0\n")
	b.WriteString("\n[Service]\n")
	fmt.Fprintf(&b, "ExecStart=%s agent --config %s\n", execArg(path.Clean(u.Binary), true), execArg(path.Clean(u.Config), false))
	fmt.Fprintf(&b, "WorkingDirectory=%s\n", escapeSpecifiers(dir))
	if u.User != "" {
		fmt.Fprintf(&b, "User=%s\n", escapeSpecifiers(u.User))
	}
	b.WriteString("Restart=always\n")
	b.WriteString("RestartSec=1\n")
	// Comments on lines of their own: systemd takes the rest of a line,
	// a "# ..." too, as the value.
	b.WriteString("# The agent makes a cgroup per app instance below its own.\n")
	b.WriteString("Delegate=yes\n")
	b.WriteString("# Stopping or restarting the agent leaves the app running; the next agent adopts it.\n")
	b.WriteString("KillMode=process\n")
	b.WriteString("\n[Install]\n")
	b.WriteString("WantedBy=multi-user.target\n")
	return b.String()
}

// escapeSpecifiers keeps a value's % from being read as a specifier (%h,
// %n, ...): systemd expands them in almost every setting (systemd.unit,
// "Specifiers").
func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// execArg writes one word of a command line (systemd.service, "Command
// lines"): plain when it holds nothing systemd would read, else in double
// quotes with C escapes for \ " and control characters, %% for % (a
// specifier) and, in an argument, $$ for $ (which would name an environment
// variable; the program's path is not searched for variables).
func execArg(s string, program bool) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return !plainExecRune(r) }) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '$' && !program:
			b.WriteString("$$")
		case r == '%':
			b.WriteString("%%")
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case isControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// plainExecRune: characters that mean nothing to systemd's command line
// parser anywhere in a word.
func plainExecRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+,:@=", r)
}

package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Paths in zerodown.yaml are of two kinds.
//
// Files of the machine that runs zerodown — state, every token_file, and
// the dir of an exec task — are read or run there, by whoever happens to
// run the command from wherever. A relative one is relative to the
// directory of zerodown.yaml, so `zerodown deploy -c deploy/zerodown.yaml`
// from the repository root and `zerodown deploy` from deploy/ use the same
// journal and the same tokens. They are made absolute when the file is
// loaded, so they stay right in a plan that is journaled and resumed from
// another directory. An exec task without a dir runs in the directory of
// zerodown.yaml, so `command: [./smoke.sh]` finds the script beside it.
//
// Everything of the app — run, hooks, env, the health path — travels to
// the agent as written: run[0] and hooks are relative to the release
// directory on the host, not to anything on this machine. URLs (lb.admin,
// hosts[].agent, verify.url, smoke.url) are not paths. The load balancer's
// files (an HAProxy stats socket, nginx's upstream_file and pid_file) are
// of this machine: the haproxy and nginx drivers reach them here.

// tokenFileRef is a token_file written in zerodown.yaml: where, and the
// file it names.
type tokenFileRef struct {
	env  string // the environment it belongs to
	key  string // key path, such as environments.staging.lb.token_file
	at   position
	path string // resolved
}

// pathResolver makes paths relative to the file's directory.
type pathResolver struct {
	dir string
}

func newPathResolver(file string) pathResolver {
	dir := filepath.Dir(file)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return pathResolver{dir: dir}
}

// resolve returns p relative to the file's directory; an empty or absolute
// p stays as written. A path that starts with a separator is absolute
// enough: on Windows "/etc/x" is on the current drive, not under dir.
func (r pathResolver) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || os.IsPathSeparator(p[0]) || filepath.VolumeName(p) != "" {
		return p
	}
	return filepath.Join(r.dir, p)
}

// resolveEnvPaths resolves the token files of environment e and records
// each with its position. It runs before hosts inherit agents.token_file,
// so each file is recorded once, where it is written.
func (d *deployValidator) resolveEnvPaths(r pathResolver, e *Environment, ep string) {
	c := d.c
	ref := func(key string, p *string) {
		if *p == "" {
			return
		}
		*p = r.resolve(*p)
		d.cfg.tokenFiles = append(d.cfg.tokenFiles, tokenFileRef{env: e.Name, key: key, at: c.where(key), path: *p})
	}
	ref(c.key(c.key(ep, "lb"), "token_file"), &e.LB.TokenFile)
	e.LB.UpstreamFile = r.resolve(e.LB.UpstreamFile)
	e.LB.PidFile = r.resolve(e.LB.PidFile)
	if strings.Contains(e.LB.Socket, "/") {
		e.LB.Socket = r.resolve(e.LB.Socket) // a unix socket, not host:port
	}
	ref(c.key(c.key(ep, "agents"), "token_file"), &e.Agents.TokenFile)
	hsp := c.key(ep, "hosts")
	for i := range e.Hosts {
		ref(c.key(c.item(hsp, i), "token_file"), &e.Hosts[i].TokenFile)
		if x := e.Hosts[i].Exec; x != nil {
			if x.Dir == "" {
				x.Dir = r.dir
			} else {
				x.Dir = r.resolve(x.Dir)
			}
		}
	}
	resolveSSHPaths(r, e)
}

// resolveTaskPaths gives an exec task, also one of an on_cancel, its
// resolved dir: the file's directory when it has none.
func resolveTaskPaths(r pathResolver, t *Task) {
	if t.Exec != nil {
		if t.Exec.Dir == "" {
			t.Exec.Dir = r.dir
		} else {
			t.Exec.Dir = r.resolve(t.Exec.Dir)
		}
	}
	if t.OnCancel != nil {
		resolveTaskPaths(r, t.OnCancel)
	}
}

// CheckTokenFiles reports every token_file of environment env (all of
// them when env is "") that cannot be read or holds no token, at the place
// it is written and with the path it resolved to. It knows the token files
// of a config from LoadDeploy or ParseDeploy only. The loader does not do
// this: a token file may exist only on the machine that deploys, and
// `zerodown validate` in CI should still check the rest.
func (d *Deploy) CheckTokenFiles(env string) Errors {
	var errs Errors
	for _, ref := range d.tokenFiles {
		if env != "" && ref.env != env {
			continue
		}
		if msg := tokenFileProblem(ref.path); msg != "" {
			errs = append(errs, &Error{File: d.Path, Line: ref.at.Line, Column: ref.at.Column, Path: ref.key, Msg: msg})
		}
	}
	return errs.sorted()
}

// tokenFileProblem says what is wrong with a token file, or "" when it
// holds a token. It never quotes the content.
func tokenFileProblem(path string) string {
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		return path + " is a directory, not a token file"
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(path)
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path + " does not exist"
	case errors.Is(err, fs.ErrPermission):
		return path + " cannot be read: permission denied"
	case errors.As(err, &pe):
		return fmt.Sprintf("%s cannot be read: %v", path, pe.Err)
	case err != nil:
		return fmt.Sprintf("%s cannot be read: %v", path, err)
	case strings.TrimSpace(string(data)) == "":
		return path + " is empty"
	}
	return ""
}

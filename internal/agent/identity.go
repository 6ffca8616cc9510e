package agent

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
)

// runAs is who an app process runs as.
type runAs struct {
	name     string // for messages: "user nobody, uid 65534"
	user     string // the user's name; "" for the agent's own
	uid, gid uint32
	groups   []uint32
	home     string
	// self: the agent's own user and group, no change of credentials.
	self bool
}

// root: uid 0, or gid 0 as its group or one of its groups, which reaches
// root's files as much.
func (r *runAs) root() bool { return r.uid == 0 || r.gid == 0 || slices.Contains(r.groups, 0) }

// rootRefusal is the refusal to run an app as root without allow_root.
const rootRefusal = "the app would run as root (%s): a hole in it would then be a hole in the whole machine. " +
	"Set user: (and group:) in agent.yaml or the app spec to an unprivileged user, or allow_root: true in agent.yaml to run it as root anyway"

// resolveRunAs finds the user and group named (a name or a numeric ID;
// empty: the agent's own), and refuses root unless allowRoot.
func resolveRunAs(userName, groupName string, allowRoot bool) (*runAs, error) {
	r := &runAs{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), self: true}
	r.name = fmt.Sprintf("the agent's own user, uid %d", r.uid)
	if userName != "" {
		u, err := lookupUser(userName)
		if err != nil {
			return nil, err
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("user %s: uid %q and gid %q are not numbers: this platform cannot run an app as another user", userName, u.Uid, u.Gid)
		}
		r.uid, r.gid, r.home, r.user, r.self = uint32(uid), uint32(gid), u.HomeDir, u.Username, false
		r.name = fmt.Sprintf("user %s, uid %d", u.Username, uid)
		ids, _ := u.GroupIds()
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				r.groups = append(r.groups, uint32(n))
			}
		}
	}
	if groupName != "" {
		g, err := lookupGroup(groupName)
		if err != nil {
			return nil, err
		}
		gid, err := strconv.ParseUint(g.Gid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("group %s: gid %q is not a number", groupName, g.Gid)
		}
		r.gid, r.self = uint32(gid), false
		if userName == "" {
			r.groups = nil // the agent's user in another group, that group alone
		}
	}
	if !r.self && os.Geteuid() != 0 {
		if r.uid != uint32(os.Geteuid()) || r.gid != uint32(os.Getegid()) {
			return nil, fmt.Errorf("the agent runs as uid %d and cannot start the app as %s: only an agent running as root can change the app's user or group", os.Geteuid(), r.name)
		}
		// Its own user and group by name: nothing to change, and a
		// process that is not root may not even set its groups again.
		r.self, r.groups = true, nil
	}
	if r.root() && !allowRoot {
		return nil, fmt.Errorf(rootRefusal, r.name)
	}
	return r, nil
}

func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			if u, err = user.LookupId(name); err == nil {
				return u, nil
			}
		}
		return nil, fmt.Errorf("no user %q on this machine: %w", name, err)
	}
	return u, nil
}

func lookupGroup(name string) (*user.Group, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 32); nerr == nil {
			if g, err = user.LookupGroupId(name); err == nil {
				return g, nil
			}
		}
		return nil, fmt.Errorf("no group %q on this machine: %w", name, err)
	}
	return g, nil
}

// env adds HOME, USER and LOGNAME of the user the app runs as, where the
// spec sets none of them.
func (r *runAs) env(env []string, spec map[string]string) []string {
	if r.user == "" {
		return env
	}
	for k, v := range map[string]string{"HOME": r.home, "USER": r.user, "LOGNAME": r.user} {
		if _, set := spec[k]; !set && v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

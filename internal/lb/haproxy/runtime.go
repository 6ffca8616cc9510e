// Package haproxy drives an HAProxy backend through its Runtime API (the
// stats socket), as the deploy engine's lb.Balancer: servers are taken out
// with `set server B/S state drain` and put back with `state ready`, and
// their state, sessions and checks are read from `show stat`.
package haproxy

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Runtime is a client of HAProxy's Runtime API. Each command opens a
// connection, sends one line and reads the answer until HAProxy closes
// it (the API's non-interactive mode).
type Runtime struct {
	network, address string
}

// NewRuntime returns a client of the stats socket at socket: a path to a
// unix socket, or host:port for `stats socket ipv4@...`.
func NewRuntime(socket string) (*Runtime, error) {
	if socket == "" {
		return nil, errors.New("haproxy: the stats socket is empty")
	}
	if strings.HasPrefix(socket, "/") || strings.HasPrefix(socket, "./") {
		return &Runtime{network: "unix", address: socket}, nil
	}
	if _, _, err := net.SplitHostPort(socket); err != nil {
		return nil, fmt.Errorf("haproxy: stats socket %q is neither a path nor host:port: %w", socket, err)
	}
	return &Runtime{network: "tcp", address: socket}, nil
}

// maxAnswer bounds what one command's answer may be.
const maxAnswer = 16 << 20

// Command sends one command and returns HAProxy's answer, within ctx.
func (r *Runtime) Command(ctx context.Context, cmd string) (string, error) {
	if strings.ContainsAny(cmd, "\r\n;") {
		return "", fmt.Errorf("haproxy: command %q holds a line break or ';'", cmd)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, r.network, r.address)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: %w", r.address, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: send %q: %w", r.address, cmd, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, maxAnswer+1))
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API at %s: %q: %w", r.address, cmd, err)
	}
	if len(b) > maxAnswer {
		return "", fmt.Errorf("haproxy runtime API at %s: the answer to %q is over %d bytes", r.address, cmd, maxAnswer)
	}
	return string(b), nil
}

// Server is one server of a backend as `show stat` reports it.
type Server struct {
	Backend, Name string
	// Address is ip:port, as configured.
	Address string
	// Status is HAProxy's: UP, DOWN, DRAIN, MAINT, NOLB, "UP 1/2" (going
	// down), "DOWN 1/2" (going up), "no check".
	Status string
	// Sessions are the connections in use now (scur), Queued the requests
	// waiting for one (qcur).
	Sessions, Queued int
	Weight           int
	// CheckStatus and CheckDesc are the last health check's result, such
	// as L7OK or L4CON, and its explanation.
	CheckStatus, CheckDesc string
	// Rise and Fall are the check's thresholds (0 without a check).
	Rise, Fall int
	// Retries and Redispatches count requests HAProxy tried again on the
	// same or another server; ConnErrors and RespErrors failures toward it.
	Retries, Redispatches, ConnErrors, RespErrors uint64
	// Answers counts the server's HTTP answers (hrsp_1xx to hrsp_other),
	// Answers5xx those with a 5xx status.
	Answers, Answers5xx uint64
	// Detached is set when an administrator (or zerodown) put the server
	// in drain or maintenance: `show stat` then still says DOWN for a
	// server whose checks fail, so it comes from `show servers state`.
	Detached bool
	// CheckConfigured is set for a server with `check`, also while its
	// checks pause in maintenance.
	CheckConfigured bool
}

// Admin state bits of `show servers state` (srv_admin_state): forced,
// inherited, configured, resolver and hostname maintenance, forced and
// inherited drain.
const adminDetached = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20 | 0x40

// Servers reads the servers of backend from `show stat`, with their
// administrative state from `show servers state`.
func (r *Runtime) Servers(ctx context.Context, backend string) ([]Server, error) {
	// -1 4 -1: every proxy, servers only, every server id.
	out, err := r.Command(ctx, "show stat -1 4 -1")
	if err != nil {
		return nil, err
	}
	servers, err := parseStat(out, backend)
	if err != nil {
		return nil, err
	}
	out, err = r.Command(ctx, "show servers state "+backend)
	if err != nil {
		return nil, err
	}
	states, err := parseServersState(out)
	if err != nil {
		return nil, err
	}
	for i := range servers {
		st := states[servers[i].Name]
		servers[i].Detached = st.admin&adminDetached != 0
		servers[i].CheckConfigured = st.check&checkConfigured != 0
	}
	return servers, nil
}

// checkConfigured is srv_check_state's bit for a server configured with
// `check` (CHK_ST_CONFIGURED): `show stat` leaves the check columns empty
// while the server is in maintenance, so this is what tells.
const checkConfigured = 0x02

// serverState is what `show servers state` adds to `show stat`.
type serverState struct {
	admin, check int
}

// parseServersState reads srv_admin_state and srv_check_state by server
// name from `show servers state`: a version line, a header naming the
// columns, then one line of space-separated fields per server.
func parseServersState(out string) (map[string]serverState, error) {
	lines := strings.Split(out, "\n")
	col := map[string]int{}
	states := map[string]serverState{}
	for _, line := range lines {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "# "):
			for i, h := range strings.Fields(strings.TrimPrefix(line, "# ")) {
				col[h] = i
			}
		case len(col) == 0:
			// The version line comes before the header.
		default:
			f := strings.Fields(line)
			num := func(name string) (int, error) {
				i, ok := col[name]
				if !ok || i >= len(f) {
					return 0, fmt.Errorf("haproxy: show servers state line %q has no %s", firstLine(line), name)
				}
				n, err := strconv.Atoi(f[i])
				if err != nil {
					return 0, fmt.Errorf("haproxy: show servers state: %s %q is not a number", name, f[i])
				}
				return n, nil
			}
			ni, ok := col["srv_name"]
			if !ok || ni >= len(f) {
				return nil, fmt.Errorf("haproxy: show servers state line %q has no srv_name", firstLine(line))
			}
			admin, err := num("srv_admin_state")
			if err != nil {
				return nil, err
			}
			check, err := num("srv_check_state")
			if err != nil {
				return nil, err
			}
			states[f[ni]] = serverState{admin: admin, check: check}
		}
	}
	if len(col) == 0 {
		return nil, fmt.Errorf("haproxy: show servers state answered %q, not its table", firstLine(out))
	}
	return states, nil
}

// parseStat reads the CSV of `show stat` and keeps backend's servers. The
// header names the columns, so fields HAProxy versions add or move are
// found by name.
func parseStat(out, backend string) ([]Server, error) {
	if !strings.HasPrefix(out, "# ") {
		return nil, fmt.Errorf("haproxy: show stat answered %q, not its CSV", firstLine(out))
	}
	rd := csv.NewReader(bufio.NewReader(strings.NewReader(strings.TrimPrefix(out, "# "))))
	rd.FieldsPerRecord = -1
	header, err := rd.Read()
	if err != nil {
		return nil, fmt.Errorf("haproxy: show stat header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[h] = i
	}
	for _, need := range []string{"pxname", "svname", "status", "scur", "qcur", "weight"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("haproxy: show stat has no %q column", need)
		}
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	num := func(rec []string, name string) int {
		n, _ := strconv.Atoi(get(rec, name))
		return n
	}
	unum := func(rec []string, name string) uint64 {
		n, _ := strconv.ParseUint(get(rec, name), 10, 64)
		return n
	}
	var servers []Server
	found := false
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("haproxy: show stat: %w", err)
		}
		if len(rec) == 0 || get(rec, "pxname") != backend {
			continue
		}
		found = true
		sv := get(rec, "svname")
		if sv == "BACKEND" || sv == "FRONTEND" {
			continue
		}
		servers = append(servers, Server{
			Backend: backend, Name: sv, Address: get(rec, "addr"), Status: get(rec, "status"),
			Sessions: num(rec, "scur"), Queued: num(rec, "qcur"), Weight: num(rec, "weight"),
			CheckStatus: get(rec, "check_status"), CheckDesc: get(rec, "check_desc"),
			Rise: num(rec, "check_rise"), Fall: num(rec, "check_fall"),
			Retries: unum(rec, "wretr"), Redispatches: unum(rec, "wredis"),
			ConnErrors: unum(rec, "econ"), RespErrors: unum(rec, "eresp"),
			Answers: unum(rec, "hrsp_1xx") + unum(rec, "hrsp_2xx") + unum(rec, "hrsp_3xx") + unum(rec, "hrsp_4xx") +
				unum(rec, "hrsp_5xx") + unum(rec, "hrsp_other"),
			Answers5xx: unum(rec, "hrsp_5xx"),
		})
	}
	if !found && len(servers) == 0 {
		return nil, fmt.Errorf("haproxy: no backend %q with servers in show stat", backend)
	}
	return servers, nil
}

// SetState sets a server's administrative state: ready, drain or maint.
func (r *Runtime) SetState(ctx context.Context, backend, server, state string) error {
	switch state {
	case "ready", "drain", "maint":
	default:
		return fmt.Errorf("haproxy: server state %q: want ready, drain or maint", state)
	}
	return r.set(ctx, fmt.Sprintf("set server %s/%s state %s", backend, server, state))
}

// SetHealth forces the health of a server's checks: up, stopping or down.
func (r *Runtime) SetHealth(ctx context.Context, backend, server, health string) error {
	switch health {
	case "up", "stopping", "down":
	default:
		return fmt.Errorf("haproxy: server health %q: want up, stopping or down", health)
	}
	return r.set(ctx, fmt.Sprintf("set server %s/%s health %s", backend, server, health))
}

// SetWeight sets a server's weight (0 to 256).
func (r *Runtime) SetWeight(ctx context.Context, backend, server string, weight int) error {
	if weight < 0 || weight > 256 {
		return fmt.Errorf("haproxy: weight %d out of range [0, 256]", weight)
	}
	return r.set(ctx, fmt.Sprintf("set server %s/%s weight %d", backend, server, weight))
}

// set sends a command whose success is an empty answer; anything else is
// HAProxy's error message ("No such server.", "Permission denied").
func (r *Runtime) set(ctx context.Context, cmd string) error {
	out, err := r.Command(ctx, cmd)
	if err != nil {
		return err
	}
	if msg := strings.TrimSpace(out); msg != "" {
		return fmt.Errorf("haproxy: %s: %s", cmd, msg)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	if len(line) > 200 {
		line = line[:200]
	}
	return line
}

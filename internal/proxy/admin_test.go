package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/config"
)

const testToken = "test-token" // what testConfig configures

// adminResp is an admin API answer with its headers.
type adminResp struct {
	status int
	header http.Header
	body   string
}

// adminDo calls the admin API with auth as the whole Authorization header
// ("" sends none).
func adminDo(t *testing.T, srv *Server, method, path, auth, body string) adminResp {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading answer: %v", method, path, err)
	}
	return adminResp{resp.StatusCode, resp.Header, string(b)}
}

// decodeObject decodes an admin answer that must be one JSON object.
func decodeObject(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v\n%s", err, body)
	}
	return m
}

// errorMessage checks that body is exactly {"error": "..."} and returns it.
func errorMessage(t *testing.T, body string) string {
	t.Helper()
	m := decodeObject(t, body)
	msg, ok := m["error"].(string)
	if !ok || msg == "" || len(m) != 1 {
		t.Fatalf(`want {"error": "..."} and nothing else, got %s`, body)
	}
	return msg
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sickBackend answers every health check with 503.
func sickBackend(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}))
	t.Cleanup(s.Close)
	return s
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// addPool adds a pool like testConfig's "app" to cfg.
func addPool(cfg *config.LB, name, balance string, targets ...string) *config.Pool {
	pc := *cfg.Pools["app"]
	pc.Name = name
	pc.Balance = balance
	pc.Targets = nil
	for _, a := range targets {
		pc.Targets = append(pc.Targets, config.TargetSpec{Address: a})
	}
	cfg.Pools[name] = &pc
	cfg.PoolOrder = append(cfg.PoolOrder, name)
	return &pc
}

func targetOf(t *testing.T, srv *Server, pool, addr string) map[string]any {
	t.Helper()
	r := adminDo(t, srv, "GET", "/v1/pools/"+pool, "Bearer "+testToken, "")
	if r.status != 200 {
		t.Fatalf("GET pool %s: %d %s", pool, r.status, r.body)
	}
	var p struct {
		Targets []map[string]any `json:"targets"`
	}
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatal(err)
	}
	for _, tg := range p.Targets {
		if tg["address"] == addr {
			return tg
		}
	}
	return nil
}

func TestAdminRequiresToken(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	newAddr := closedAddr(t)

	routes := []struct{ method, path, body string }{
		{"GET", "/v1/pools", ""},
		{"GET", "/v1/pools/app", ""},
		{"GET", "/v1/pools/nope", ""},
		{"POST", "/v1/pools/app/attach", `{"target":"` + newAddr + `"}`},
		{"POST", "/v1/pools/app/detach", `{"target":"` + hostPort(a.URL) + `"}`},
		{"POST", "/v1/pools/app/weight", `{"target":"` + hostPort(a.URL) + `","weight":7}`},
		{"GET", "/metrics", ""},
		{"GET", "/no/such/call", ""},
	}
	auths := []struct{ name, header string }{
		{"none", ""},
		{"wrong token", "Bearer wrong-token"},
		{"token without scheme", testToken},
		{"other scheme", "Basic " + testToken},
		{"prefix of token", "Bearer " + testToken[:len(testToken)-1]},
		{"token with suffix", "Bearer " + testToken + "x"},
		{"empty bearer", "Bearer "},
	}
	for _, rt := range routes {
		for _, au := range auths {
			t.Run(rt.method+" "+rt.path+"/"+au.name, func(t *testing.T) {
				r := adminDo(t, srv, rt.method, rt.path, au.header, rt.body)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", r.status, r.body)
				}
				if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", h)
				}
				if msg := errorMessage(t, r.body); !strings.Contains(msg, "token") {
					t.Errorf("error %q does not mention the token", msg)
				}
				if strings.Contains(r.body, "zerodown_lb_") {
					t.Errorf("401 answer leaks metrics: %s", r.body)
				}
			})
		}
	}
	// None of the refused calls changed anything.
	if st := stateOf(srv, "app", newAddr); st != "absent" {
		t.Errorf("refused attach attached the target: state %s", st)
	}
	if st := stateOf(srv, "app", hostPort(a.URL)); st != "healthy" {
		t.Errorf("refused detach changed the target: state %s", st)
	}
	if w := srv.pool("app").lookup(hostPort(a.URL)).weight.Load(); w != 1 {
		t.Errorf("refused weight call changed the weight to %d", w)
	}
	// The right token passes on every route.
	for _, rt := range routes[:3] {
		r := adminDo(t, srv, rt.method, rt.path, "Bearer "+testToken, rt.body)
		if r.status == http.StatusUnauthorized {
			t.Errorf("%s %s with the token: 401", rt.method, rt.path)
		}
	}
	if r := adminDo(t, srv, "GET", "/metrics", "Bearer "+testToken, ""); r.status != 200 {
		t.Errorf("GET /metrics with the token: %d", r.status)
	}
}

func TestAdminPoolShape(t *testing.T) {
	a, sick := backend(t, "a"), sickBackend(t)
	cfg := testConfig(t, hostPort(a.URL))
	noFailOpen := false
	addPool(cfg, "api", config.BalanceRoundRobin, hostPort(sick.URL))
	addPool(cfg, "shut", config.BalanceRoundRobin, hostPort(sick.URL)).FailOpen = &noFailOpen
	addPool(cfg, "empty", config.BalanceLeastOutstanding)
	srv, _ := startServer(t, cfg)
	eventually(t, 3*time.Second, "targets settled", func() bool {
		return stateOf(srv, "app", hostPort(a.URL)) == "healthy" &&
			stateOf(srv, "api", hostPort(sick.URL)) == "unhealthy" &&
			stateOf(srv, "shut", hostPort(sick.URL)) == "unhealthy"
	})

	r := adminDo(t, srv, "GET", "/v1/pools", "Bearer "+testToken, "")
	if r.status != 200 {
		t.Fatalf("GET /v1/pools: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	list := decodeObject(t, r.body)
	if got := keys(list); !slices.Equal(got, []string{"pools"}) {
		t.Fatalf("listing keys %v, want [pools]", got)
	}
	pools, ok := list["pools"].([]any)
	if !ok {
		t.Fatalf("pools is not a list: %s", r.body)
	}

	poolKeys := []string{"balance", "deregistration_delay_ms", "fail_open", "failing_open", "name", "targets"}
	targetKeys := []string{"address", "cut", "errors", "in_flight", "last_health_error", "requests", "state", "state_since", "weight"}
	type wantTarget struct{ addr, state string }
	want := []struct {
		name, balance     string
		failOpen, failing bool // configured, and happening now
		targets           []wantTarget
	}{
		{"app", "least_outstanding", true, false, []wantTarget{{hostPort(a.URL), "healthy"}}},
		{"api", "round_robin", true, true, []wantTarget{{hostPort(sick.URL), "unhealthy"}}},
		{"shut", "round_robin", false, false, []wantTarget{{hostPort(sick.URL), "unhealthy"}}},
		{"empty", "least_outstanding", true, false, nil},
	}
	if len(pools) != len(want) {
		t.Fatalf("%d pools, want %d: %s", len(pools), len(want), r.body)
	}
	for i, w := range want {
		t.Run(w.name, func(t *testing.T) {
			p, ok := pools[i].(map[string]any)
			if !ok {
				t.Fatalf("pool %d is not an object", i)
			}
			if got := keys(p); !slices.Equal(got, poolKeys) {
				t.Errorf("pool keys %v, want %v", got, poolKeys)
			}
			if p["name"] != w.name || p["balance"] != w.balance || p["fail_open"] != w.failOpen || p["failing_open"] != w.failing {
				t.Errorf("pool %v, want name %s balance %s fail_open %v failing_open %v", p, w.name, w.balance, w.failOpen, w.failing)
			}
			targets, ok := p["targets"].([]any)
			if !ok {
				t.Fatalf("targets is %T (%v), want a list even when empty", p["targets"], p["targets"])
			}
			if len(targets) != len(w.targets) {
				t.Fatalf("%d targets, want %d", len(targets), len(w.targets))
			}
			for j, wt := range w.targets {
				tg := targets[j].(map[string]any)
				got := keys(tg)
				// The code leaves last_health_error out while there is none.
				if _, ok := tg["last_health_error"]; !ok && wt.state == "healthy" {
					got = append(got, "last_health_error")
					slices.Sort(got)
				}
				if !slices.Equal(got, targetKeys) {
					t.Errorf("target keys %v, want %v", got, targetKeys)
				}
				if tg["address"] != wt.addr || tg["state"] != wt.state {
					t.Errorf("target %v, want %s %s", tg, wt.addr, wt.state)
				}
				for _, k := range []string{"in_flight", "weight", "requests", "errors", "cut"} {
					if _, ok := tg[k].(float64); !ok {
						t.Errorf("%s is %T, want a number", k, tg[k])
					}
				}
				if tg["weight"] != 1.0 {
					t.Errorf("weight %v, want 1", tg["weight"])
				}
				since, _ := tg["state_since"].(string)
				if ts, err := time.Parse(time.RFC3339Nano, since); err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
					t.Errorf("state_since %q is not a recent RFC 3339 time (%v)", since, err)
				}
				if wt.state == "unhealthy" {
					if msg, _ := tg["last_health_error"].(string); !strings.Contains(msg, "503") {
						t.Errorf("last_health_error %q does not give the failed status", msg)
					}
				}
			}
			// GET /v1/pools/{pool} answers the same pool.
			one := adminDo(t, srv, "GET", "/v1/pools/"+w.name, "Bearer "+testToken, "")
			if one.status != 200 {
				t.Fatalf("GET /v1/pools/%s: %d %s", w.name, one.status, one.body)
			}
			single := decodeObject(t, one.body)
			if got := keys(single); !slices.Equal(got, poolKeys) {
				t.Errorf("GET /v1/pools/%s keys %v, want %v", w.name, got, poolKeys)
			}
			if single["name"] != w.name || single["balance"] != w.balance || single["fail_open"] != w.failOpen ||
				len(single["targets"].([]any)) != len(w.targets) {
				t.Errorf("GET /v1/pools/%s = %s, differs from the listing", w.name, one.body)
			}
		})
	}
}

func TestAdminNotFound(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	other := closedAddr(t)
	valid := `{"target":"` + hostPort(a.URL) + `","weight":2}`
	tests := []struct {
		name, method, path, body, mention string
	}{
		{"get unknown pool", "GET", "/v1/pools/nope", "", "nope"},
		{"attach unknown pool", "POST", "/v1/pools/nope/attach", `{"target":"` + hostPort(a.URL) + `"}`, "nope"},
		{"detach unknown pool", "POST", "/v1/pools/nope/detach", `{"target":"` + hostPort(a.URL) + `"}`, "nope"},
		{"weight unknown pool", "POST", "/v1/pools/nope/weight", valid, "nope"},
		{"attach unknown pool bad body", "POST", "/v1/pools/nope/attach", `garbage`, "nope"},
		{"detach unknown target", "POST", "/v1/pools/app/detach", `{"target":"` + other + `"}`, other},
		{"detach wait unknown target", "POST", "/v1/pools/app/detach", `{"target":"` + other + `","wait":true}`, other},
		{"weight unknown target", "POST", "/v1/pools/app/weight", `{"target":"` + other + `","weight":3}`, other},
		{"unknown call", "GET", "/v2/pools", "", "/v2/pools"},
		{"wrong method", "DELETE", "/v1/pools/app", "", "DELETE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := adminDo(t, srv, tc.method, tc.path, "Bearer "+testToken, tc.body)
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d, want 404; body %s", r.status, r.body)
			}
			if msg := errorMessage(t, r.body); !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q does not mention %q", msg, tc.mention)
			}
		})
	}
	if st := stateOf(srv, "app", other); st != "absent" {
		t.Errorf("unknown target is now %s", st)
	}
	if srv.pool("nope") != nil {
		t.Error("a call to an unknown pool created it")
	}
}

func TestAdminBadBodies(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
	ta := hostPort(a.URL)
	huge := `{"target":"` + ta + `"}` + strings.Repeat(" ", maxAdminBody)

	type call struct{ route, body, mention string }
	tests := map[string]call{
		"empty":                {"attach", "", "empty"},
		"blank":                {"detach", " \n\t ", "empty"},
		"not JSON":             {"attach", "target=1.2.3.4:80", "not valid JSON"},
		"JSON array":           {"weight", `[{"target":"` + ta + `","weight":1}]`, "not valid JSON"},
		"JSON string":          {"detach", `"` + ta + `"`, "not valid JSON"},
		"truncated":            {"attach", `{"target":"` + ta + `"`, "not valid JSON"},
		"unknown field":        {"attach", `{"target":"` + ta + `","colour":"red"}`, "colour"},
		"weight on detach":     {"detach", `{"target":"` + ta + `","weight":1}`, "weight"},
		"wait on weight":       {"weight", `{"target":"` + ta + `","weight":1,"wait":true}`, "wait"},
		"trailing object":      {"attach", `{"target":"` + ta + `"} {}`, "after the JSON object"},
		"trailing garbage":     {"weight", `{"target":"` + ta + `","weight":1}x`, "after the JSON object"},
		"trailing bracket":     {"detach", `{"target":"` + ta + `"}]`, "after the JSON object"},
		"missing target":       {"attach", `{"weight":2}`, `"target" is required`},
		"null target":          {"detach", `{"target":null}`, `"target" is required`},
		"empty object":         {"weight", `{}`, `"target" is required`},
		"target not a string":  {"attach", `{"target":8080}`, "not valid JSON"},
		"no port":              {"attach", `{"target":"localhost"}`, `invalid address "localhost": missing port`},
		"port zero":            {"attach", `{"target":"1.2.3.4:0"}`, "the port must be a number from 1 to 65535"},
		"port too big":         {"detach", `{"target":"1.2.3.4:99999"}`, "the port must be a number from 1 to 65535"},
		"port not a number":    {"weight", `{"target":"1.2.3.4:http","weight":1}`, "the port must be a number from 1 to 65535"},
		"no host":              {"attach", `{"target":":80"}`, "missing host"},
		"URL":                  {"attach", `{"target":"http://1.2.3.4:80"}`, "http://1.2.3.4:80"},
		"signed port":          {"attach", `{"target":"1.2.3.4:+80"}`, "the port must be a number from 1 to 65535"},
		"IPv6 zone":            {"attach", `{"target":"[fe80::1%eth0]:8080"}`, "an IPv6 zone cannot be used"},
		"bad IPv4":             {"attach", `{"target":"10.0.0.256:80"}`, "not a valid IP address"},
		"IPv6 no brackets":     {"attach", `{"target":"::1:80"}`, "an IPv6 address needs brackets"},
		"weight -1":            {"attach", `{"target":"` + ta + `","weight":-1}`, "weight -1 is out of range 0-1000"},
		"weight 1001":          {"weight", `{"target":"` + ta + `","weight":1001}`, "weight 1001 is out of range 0-1000"},
		"weight fraction":      {"weight", `{"target":"` + ta + `","weight":1.5}`, "not valid JSON"},
		"weight string":        {"attach", `{"target":"` + ta + `","weight":"5"}`, "not valid JSON"},
		"weight missing":       {"weight", `{"target":"` + ta + `"}`, `"weight" is required`},
		"weight null":          {"weight", `{"target":"` + ta + `","weight":null}`, `"weight" is required`},
		"timeout soon":         {"attach", `{"target":"` + ta + `","wait":true,"timeout":"soon"}`, `timeout "soon" is not a duration`},
		"timeout soon detach":  {"detach", `{"target":"` + ta + `","wait":true,"timeout":"soon"}`, `timeout "soon" is not a duration`},
		"timeout without wait": {"attach", `{"target":"` + ta + `","timeout":"5s"}`, `"timeout" needs "wait": true`},
		"timeout wait false":   {"detach", `{"target":"` + ta + `","wait":false,"timeout":"5s"}`, `"timeout" needs "wait": true`},
		"timeout zero":         {"attach", `{"target":"` + ta + `","wait":true,"timeout":"0s"}`, "out of range"},
		"timeout negative":     {"detach", `{"target":"` + ta + `","wait":true,"timeout":"-1s"}`, "out of range"},
		"timeout too long":     {"attach", `{"target":"` + ta + `","wait":true,"timeout":"2h"}`, "out of range"},
		"body over 64 KiB":     {"attach", huge, "larger than 65536 bytes"},
		"body over 64 KiB wt":  {"weight", strings.Repeat(" ", maxAdminBody+1), "larger than 65536 bytes"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := adminDo(t, srv, "POST", "/v1/pools/app/"+tc.route, "Bearer "+testToken, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			if msg := errorMessage(t, r.body); !strings.Contains(msg, tc.mention) {
				t.Errorf("error %q does not mention %q", msg, tc.mention)
			}
		})
	}

	// Bad calls changed nothing.
	p := srv.pool("app")
	if got := p.list(); len(got) != 1 || got[0].addr != ta || got[0].weight.Load() != 1 || got[0].loadState() != stateHealthy {
		t.Fatalf("pool changed by rejected calls: %+v", got)
	}

	// A body of exactly the limit is accepted.
	exact := `{"target":"` + ta + `","weight":4}`
	exact += strings.Repeat(" ", maxAdminBody-len(exact))
	if r := adminDo(t, srv, "POST", "/v1/pools/app/weight", "Bearer "+testToken, exact); r.status != 200 {
		t.Fatalf("body of exactly %d bytes: %d %s", maxAdminBody, r.status, r.body)
	}
	if w := p.lookup(ta).weight.Load(); w != 4 {
		t.Fatalf("weight %d after a body at the limit, want 4", w)
	}
}

func TestAdminAttachWait(t *testing.T) {
	a, b, sick := backend(t, "a"), backend(t, "b"), sickBackend(t)
	down := closedAddr(t)
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)

	tests := []struct {
		name      string
		target    string
		timeout   time.Duration
		wantCode  int
		wantState []string // acceptable states in the answer
		mention   []string // in the error of a 504
	}{
		{"becomes healthy", hostPort(b.URL), 5 * time.Second, 200, []string{"healthy"}, nil},
		{"already healthy", hostPort(a.URL), 5 * time.Second, 200, []string{"healthy"}, nil},
		{"health check fails", hostPort(sick.URL), 400 * time.Millisecond, 504,
			[]string{"initial", "unhealthy"}, []string{hostPort(sick.URL), "not healthy", "status 503"}},
		{"nothing listens", down, 400 * time.Millisecond, 504,
			[]string{"initial", "unhealthy"}, []string{down, "not healthy", "last health check"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })
			body := fmt.Sprintf(`{"target":%q,"wait":true,"timeout":%q}`, tc.target, tc.timeout)
			start := time.Now()
			r := adminDo(t, srv, "POST", "/v1/pools/app/attach", "Bearer "+testToken, body)
			took := time.Since(start)
			if r.status != tc.wantCode {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.wantCode, r.body)
			}
			m := decodeObject(t, r.body)
			tg := m
			if tc.wantCode == http.StatusGatewayTimeout {
				if got := keys(m); !slices.Equal(got, []string{"error", "target"}) {
					t.Fatalf("504 keys %v, want [error target]", got)
				}
				msg, _ := m["error"].(string)
				for _, s := range tc.mention {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q does not mention %q", msg, s)
					}
				}
				tg, _ = m["target"].(map[string]any)
				if took < tc.timeout {
					t.Errorf("answered after %s, before the %s timeout", took, tc.timeout)
				}
				if took > tc.timeout+2*time.Second {
					t.Errorf("answered after %s, long after the %s timeout", took, tc.timeout)
				}
				// The target stays attached: the deploy may go on waiting.
				if st := stateOf(srv, "app", tc.target); st == "absent" || st == "draining" {
					t.Errorf("timed-out target is %s", st)
				}
			}
			if tg["address"] != tc.target || !slices.Contains(tc.wantState, fmt.Sprint(tg["state"])) {
				t.Errorf("target %v, want %s in %v", tg, tc.target, tc.wantState)
			}
			if tc.wantCode == 200 && stateOf(srv, "app", tc.target) != "healthy" {
				t.Errorf("answered healthy but the pool has it %s", stateOf(srv, "app", tc.target))
			}
		})
	}
}

func TestAdminAttachNoWaitAnswersTarget(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t)
	srv, _ := startServer(t, cfg)
	r := adminDo(t, srv, "POST", "/v1/pools/app/attach", "Bearer "+testToken, `{"target":"`+hostPort(a.URL)+`","weight":3}`)
	if r.status != 200 {
		t.Fatalf("attach: %d %s", r.status, r.body)
	}
	tg := decodeObject(t, r.body)
	if tg["address"] != hostPort(a.URL) || tg["weight"] != 3.0 {
		t.Fatalf("attach answered %s, want the target with weight 3", r.body)
	}
	if st := tg["state"]; st != "initial" && st != "healthy" {
		t.Fatalf("new target answered state %v", st)
	}
	eventually(t, 2*time.Second, "attached target healthy", func() bool { return stateOf(srv, "app", hostPort(a.URL)) == "healthy" })

	r = adminDo(t, srv, "POST", "/v1/pools/app/detach", "Bearer "+testToken, `{"target":"`+hostPort(a.URL)+`"}`)
	if r.status != 200 {
		t.Fatalf("detach: %d %s", r.status, r.body)
	}
	if tg := decodeObject(t, r.body); tg["address"] != hostPort(a.URL) || (tg["state"] != "draining" && tg["state"] != "unused") {
		t.Fatalf("detach answered %s, want the target draining or unused", r.body)
	}
}

// blockingBackend holds requests to /block until the returned release func
// is called; arrived counts the requests to /block it has received.
func blockingBackend(t *testing.T) (s *httptest.Server, release func(), arrived *atomic.Int64) {
	t.Helper()
	ch := make(chan struct{})
	var once sync.Once
	arrived = new(atomic.Int64)
	s = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			arrived.Add(1)
			select {
			case <-ch:
			case <-r.Context().Done():
			}
		}
		w.Write([]byte("ok"))
	}))
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(func() {
		release()
		s.Close()
	})
	return s, release, arrived
}

func TestAdminDetachWait(t *testing.T) {
	a := backend(t, "a")
	blk, release, arrived := blockingBackend(t)
	cfg := testConfig(t, hostPort(a.URL), hostPort(blk.URL))
	srv, url := startServer(t, cfg)
	for _, addr := range []string{hostPort(a.URL), hostPort(blk.URL)} {
		eventually(t, 2*time.Second, addr+" healthy", func() bool { return stateOf(srv, "app", addr) == "healthy" })
	}

	// Idle: detach with wait answers unused at once.
	r := adminDo(t, srv, "POST", "/v1/pools/app/detach", "Bearer "+testToken, `{"target":"`+hostPort(a.URL)+`","wait":true,"timeout":"5s"}`)
	if r.status != 200 {
		t.Fatalf("detach wait: %d %s", r.status, r.body)
	}
	if tg := decodeObject(t, r.body); tg["state"] != "unused" || tg["address"] != hostPort(a.URL) {
		t.Fatalf("detach wait answered %s, want unused", r.body)
	}
	if tg := targetOf(t, srv, "app", hostPort(a.URL)); tg == nil || tg["state"] != "unused" {
		t.Fatalf("listing has %v for the detached target, want unused", tg)
	}
	// Detaching again is harmless and still answers unused.
	r = adminDo(t, srv, "POST", "/v1/pools/app/detach", "Bearer "+testToken, `{"target":"`+hostPort(a.URL)+`","wait":true}`)
	if r.status != 200 || decodeObject(t, r.body)["state"] != "unused" {
		t.Fatalf("second detach: %d %s", r.status, r.body)
	}

	// Busy: a request in flight keeps the target draining past a short wait,
	// and the 504 names the state and the in-flight count.
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(url + "/block")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		done <- err
	}()
	// Once the backend has the request, detach must wait for it.
	eventually(t, 5*time.Second, "request at the blocking backend", func() bool { return arrived.Load() == 1 })
	r = adminDo(t, srv, "POST", "/v1/pools/app/detach", "Bearer "+testToken, `{"target":"`+hostPort(blk.URL)+`","wait":true,"timeout":"200ms"}`)
	if r.status != http.StatusGatewayTimeout {
		t.Fatalf("detach wait with a request in flight: %d %s", r.status, r.body)
	}
	m := decodeObject(t, r.body)
	msg, _ := m["error"].(string)
	for _, s := range []string{"draining", "not unused", "1 requests still in flight"} {
		if !strings.Contains(msg, s) {
			t.Errorf("504 error %q does not mention %q", msg, s)
		}
	}
	if tg, _ := m["target"].(map[string]any); tg["state"] != "draining" || tg["in_flight"] != 1.0 {
		t.Errorf("504 target %v, want draining with 1 in flight", m["target"])
	}
	// Releasing the request lets it finish and the target become unused.
	release()
	if err := <-done; err != nil {
		t.Fatalf("in-flight request during detach failed: %v", err)
	}
	r = adminDo(t, srv, "POST", "/v1/pools/app/detach", "Bearer "+testToken, `{"target":"`+hostPort(blk.URL)+`","wait":true,"timeout":"5s"}`)
	if r.status != 200 || decodeObject(t, r.body)["state"] != "unused" {
		t.Fatalf("detach wait after the request finished: %d %s", r.status, r.body)
	}
	if tg := targetOf(t, srv, "app", hostPort(blk.URL)); tg["cut"] != 0.0 {
		t.Errorf("finished request counted as cut: %v", tg)
	}
}

func TestAdminWeights(t *testing.T) {
	a, b := backend(t, "a"), backend(t, "b")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	ta, tb := hostPort(a.URL), hostPort(b.URL)
	steps := []struct {
		name, route, body string
		want              map[string]float64 // address → weight in the listing
	}{
		{"set weight", "weight", `{"target":"` + ta + `","weight":5}`, map[string]float64{ta: 5}},
		{"weight zero", "weight", `{"target":"` + ta + `","weight":0}`, map[string]float64{ta: 0}},
		{"weight max", "weight", `{"target":"` + ta + `","weight":1000}`, map[string]float64{ta: 1000}},
		{"attach with weight", "attach", `{"target":"` + tb + `","weight":7}`, map[string]float64{ta: 1000, tb: 7}},
		{"attach again keeps weight", "attach", `{"target":"` + tb + `"}`, map[string]float64{ta: 1000, tb: 7}},
		{"attach again with weight", "attach", `{"target":"` + tb + `","weight":2}`, map[string]float64{ta: 1000, tb: 2}},
		{"detach keeps weight", "detach", `{"target":"` + tb + `"}`, map[string]float64{ta: 1000, tb: 2}},
		{"reattach keeps weight", "attach", `{"target":"` + tb + `"}`, map[string]float64{ta: 1000, tb: 2}},
		{"weight back to 1", "weight", `{"target":"` + ta + `","weight":1}`, map[string]float64{ta: 1, tb: 2}},
	}
	for _, st := range steps {
		r := adminDo(t, srv, "POST", "/v1/pools/app/"+st.route, "Bearer "+testToken, st.body)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", st.name, r.status, r.body)
		}
		for addr, w := range st.want {
			tg := targetOf(t, srv, "app", addr)
			if tg == nil || tg["weight"] != w {
				t.Fatalf("%s: listing has %v for %s, want weight %v", st.name, tg, addr, w)
			}
		}
	}
}

// metricValue finds the sample of name with exactly the given labels in
// Prometheus text format.
func metricValue(text, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		got := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			for _, pair := range strings.Split(rest[1:end], ",") {
				k, v, _ := strings.Cut(pair, "=")
				got[k] = strings.Trim(v, `"`)
			}
			rest = rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") || !maps.Equal(got, labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

func TestAdminMetrics(t *testing.T) {
	a := backend(t, "a")
	blk, release, arrived := blockingBackend(t)
	cfg := testConfig(t, hostPort(a.URL))
	srv, url := startServer(t, cfg)
	ta := hostPort(a.URL)
	eventually(t, 2*time.Second, "a healthy", func() bool { return stateOf(srv, "app", ta) == "healthy" })
	const n = 7
	for i := 0; i < n; i++ {
		if code, body := get(t, http.DefaultClient, url+"/"); code != 200 {
			t.Fatalf("proxied request: %d %s", code, body)
		}
	}
	// One request held in flight on a second target.
	r := adminDo(t, srv, "POST", "/v1/pools/app/attach", "Bearer "+testToken, `{"target":"`+hostPort(blk.URL)+`","wait":true}`)
	if r.status != 200 {
		t.Fatalf("attach: %d %s", r.status, r.body)
	}
	if _, err := srv.SetWeight("app", ta, 0); err != nil { // send the next request to blk
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(url + "/block"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	eventually(t, 5*time.Second, "request at the blocking backend", func() bool { return arrived.Load() == 1 })

	r = adminDo(t, srv, "GET", "/metrics", "Bearer "+testToken, "")
	release()
	<-done
	if r.status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	tests := []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"zerodown_lb_requests_total", map[string]string{"pool": "app", "target": ta, "class": "2xx"}, func(v float64) bool { return v == n }, "7"},
		{"zerodown_lb_requests_total", map[string]string{"pool": "app", "target": ta, "class": "5xx"}, func(v float64) bool { return v == 0 }, "0"},
		{"zerodown_lb_target_in_flight", map[string]string{"pool": "app", "target": ta}, func(v float64) bool { return v == 0 }, "0"},
		{"zerodown_lb_target_in_flight", map[string]string{"pool": "app", "target": hostPort(blk.URL)}, func(v float64) bool { return v == 1 }, "1"},
		{"zerodown_lb_target_state", map[string]string{"pool": "app", "target": ta, "state": "healthy"}, func(v float64) bool { return v == 1 }, "1"},
		{"zerodown_lb_target_state", map[string]string{"pool": "app", "target": ta, "state": "unhealthy"}, func(v float64) bool { return v == 0 }, "0"},
		{"zerodown_lb_target_weight", map[string]string{"pool": "app", "target": ta}, func(v float64) bool { return v == 0 }, "0"},
		{"zerodown_lb_request_duration_seconds_count", map[string]string{"pool": "app"}, func(v float64) bool { return v >= n }, ">= 7"},
		{"zerodown_lb_request_duration_seconds_bucket", map[string]string{"pool": "app", "le": "+Inf"}, func(v float64) bool { return v >= n }, ">= 7"},
	}
	for _, tc := range tests {
		v, ok := metricValue(r.body, tc.name, tc.labels)
		if !ok {
			t.Errorf("no sample %s%v in /metrics", tc.name, tc.labels)
			continue
		}
		if !tc.check(v) {
			t.Errorf("%s%v = %v, want %s", tc.name, tc.labels, v, tc.want)
		}
	}
	for _, name := range []string{"zerodown_lb_requests_total", "zerodown_lb_target_in_flight", "zerodown_lb_target_state", "zerodown_lb_request_duration_seconds"} {
		if !regexp.MustCompile(`(?m)^# TYPE ` + name + ` `).MatchString(r.body) {
			t.Errorf("/metrics has no # TYPE line for %s", name)
		}
	}
}

func TestAdminGeneratedToken(t *testing.T) {
	tests := []struct {
		name      string
		tokenFile func(dir string) string // "" leaves token_file unset
		before    string                  // content written before New; "" writes nothing
		wantTok   string                  // expected token when before is set
		wantErr   string
	}{
		{name: "beside the state file", tokenFile: func(string) string { return "" }},
		{name: "into token_file", tokenFile: func(dir string) string { return filepath.Join(dir, "sub.token") }},
		{name: "read from token_file", tokenFile: func(dir string) string { return filepath.Join(dir, "given.token") },
			before: "  given-token \n", wantTok: "given-token"},
		{name: "empty token_file", tokenFile: func(dir string) string { return filepath.Join(dir, "empty.token") },
			before: " \n", wantErr: "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Admin.Token = ""
			dir := filepath.Dir(cfg.StateFile)
			cfg.Admin.TokenFile = tc.tokenFile(dir)
			path := cfg.Admin.TokenFile
			if path == "" {
				path = filepath.Join(dir, "lb-admin.token")
			}
			if tc.before != "" {
				if err := os.WriteFile(path, []byte(tc.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			srv, err := New(cfg, Options{Out: &out})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("New: %v, want an error naming %s and saying %q", err, path, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			shutdown := func(s *Server) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s.Shutdown(ctx)
			}
			t.Cleanup(func() { shutdown(srv) })
			if err := srv.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			tok := srv.Token()
			if tc.wantTok != "" {
				if tok != tc.wantTok {
					t.Fatalf("token %q, want %q from the file", tok, tc.wantTok)
				}
				if out.Len() != 0 {
					t.Errorf("a token read from a file printed %q", out.String())
				}
			} else {
				if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
					t.Fatalf("generated token %q is not 32 random bytes in hex", tok)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatalf("no token file: %v", err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
				}
				data, _ := os.ReadFile(path)
				if strings.TrimSpace(string(data)) != tok {
					t.Errorf("token file holds %q, server uses %q", data, tok)
				}
				if !strings.Contains(out.String(), path) {
					t.Errorf("operator message %q does not say where the token is", out.String())
				}
				if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(leftovers) != 0 {
					t.Errorf("temp files left: %v", leftovers)
				}
			}
			if r := adminDo(t, srv, "GET", "/v1/pools", "Bearer "+tok, ""); r.status != 200 {
				t.Errorf("the token does not work: %d %s", r.status, r.body)
			}
			if r := adminDo(t, srv, "GET", "/v1/pools", "Bearer "+testToken, ""); r.status != 401 {
				t.Errorf("the old configured token still works: %d", r.status)
			}
			shutdown(srv)

			// A second server reads the same file.
			again, err := New(cfg, Options{})
			if err != nil {
				t.Fatalf("second New: %v", err)
			}
			t.Cleanup(func() { shutdown(again) })
			if again.Token() != tok {
				t.Fatalf("second New has token %q, want %q", again.Token(), tok)
			}
		})
	}
}

// Fuzz tests of the body decoders: they must never panic, and whatever they
// accept must satisfy what the handlers rely on.

var fuzzBodies = []string{
	``,
	` `,
	`{}`,
	`null`,
	`[]`,
	`"1.2.3.4:80"`,
	`{"target":"1.2.3.4:80"}`,
	`{"target":"127.0.0.1:8080","weight":1}`,
	`{"target":"127.0.0.1:8080","weight":0}`,
	`{"target":"127.0.0.1:8080","weight":1000}`,
	`{"target":"127.0.0.1:8080","weight":1001}`,
	`{"target":"127.0.0.1:8080","weight":-1}`,
	`{"target":"127.0.0.1:8080","weight":1e3}`,
	`{"target":"127.0.0.1:8080","weight":99999999999999999999}`,
	`{"target":"127.0.0.1:8080","weight":null}`,
	`{"target":"[::1]:8080","wait":true}`,
	`{"target":"[::1]:8080","wait":true,"timeout":"30s"}`,
	`{"target":"[fe80::1%eth0]:8080","wait":true,"timeout":"1h"}`,
	`{"target":"host.example:443","wait":true,"timeout":"1h0m0.000000001s"}`,
	`{"target":"1.2.3.4:80","wait":true,"timeout":"soon"}`,
	`{"target":"1.2.3.4:80","wait":true,"timeout":"0s"}`,
	`{"target":"1.2.3.4:80","wait":true,"timeout":"-5s"}`,
	`{"target":"1.2.3.4:80","timeout":"5s"}`,
	`{"target":"1.2.3.4:80","wait":false,"timeout":""}`,
	`{"target":"localhost"}`,
	`{"target":"1.2.3.4:0"}`,
	`{"target":"1.2.3.4:99999"}`,
	`{"target":":80"}`,
	`{"target":"1.2.3.4:+80"}`,
	`{"target":"a b:80"}`,
	`{"target":"1.2.3.4:80","extra":1}`,
	`{"TARGET":"1.2.3.4:80","Weight":2}`,
	`{"target":"1.2.3.4:80"} {}`,
	`{"target":"1.2.3.4:80"}]`,
	`{"target":"1.2.3.4:80"`,
	`{"target":"\u0000:80"}`,
	`{"target":"\ud800:80"}`,
	"{\"target\":\"\xff:80\"}",
	`{"target":"1.2.3.4:80","target":"5.6.7.8:90"}`,
}

func FuzzDecodeAttach(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, d, err := DecodeAttach(bytes.NewReader(body))
		if err != nil {
			if d != 0 {
				t.Fatalf("error %v with timeout %s", err, d)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if len(body) > maxAdminBody {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		if norm, err := validTarget(req.Target); err != nil || norm != req.Target {
			t.Fatalf("accepted target %q (canonical %q): %v", req.Target, norm, err)
		}
		if req.Weight != nil && (*req.Weight < 0 || *req.Weight > config.MaxWeight) {
			t.Fatalf("accepted weight %d", *req.Weight)
		}
		checkTimeout(t, req.Wait, req.Timeout, d)
		// What was accepted survives a round trip unchanged.
		again, d2, err := DecodeAttach(bytes.NewReader(mustJSON(t, req)))
		if err != nil || d2 != d || again.Target != req.Target || again.Wait != req.Wait ||
			(again.Weight == nil) != (req.Weight == nil) || (req.Weight != nil && *again.Weight != *req.Weight) {
			t.Fatalf("round trip of %+v gave %+v, %s, %v", req, again, d2, err)
		}
	})
}

func FuzzDecodeDetach(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, d, err := DecodeDetach(bytes.NewReader(body))
		if err != nil {
			if d != 0 {
				t.Fatalf("error %v with timeout %s", err, d)
			}
			return
		}
		if len(body) > maxAdminBody {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		if norm, err := validTarget(req.Target); err != nil || norm != req.Target {
			t.Fatalf("accepted target %q (canonical %q): %v", req.Target, norm, err)
		}
		checkTimeout(t, req.Wait, req.Timeout, d)
		again, d2, err := DecodeDetach(bytes.NewReader(mustJSON(t, req)))
		if err != nil || again != req || d2 != d {
			t.Fatalf("round trip of %+v gave %+v, %s, %v", req, again, d2, err)
		}
	})
}

func FuzzDecodeWeight(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeWeight(bytes.NewReader(body))
		if err != nil {
			return
		}
		if len(body) > maxAdminBody {
			t.Fatalf("accepted a body of %d bytes", len(body))
		}
		if norm, err := validTarget(req.Target); err != nil || norm != req.Target {
			t.Fatalf("accepted target %q (canonical %q): %v", req.Target, norm, err)
		}
		if req.Weight == nil {
			t.Fatal("accepted a body without a weight; the handler dereferences it")
		}
		if *req.Weight < 0 || *req.Weight > config.MaxWeight {
			t.Fatalf("accepted weight %d", *req.Weight)
		}
		again, err := DecodeWeight(bytes.NewReader(mustJSON(t, req)))
		if err != nil || again.Target != req.Target || *again.Weight != *req.Weight {
			t.Fatalf("round trip of %+v gave %+v, %v", req, again, err)
		}
	})
}

// checkTimeout checks the wait timeout a decoder returned with a body it
// accepted.
func checkTimeout(t *testing.T, wait bool, timeout string, d time.Duration) {
	t.Helper()
	if wait && (d <= 0 || d > maxWaitTimeout) {
		t.Fatalf("wait with timeout %s (from %q)", d, timeout)
	}
	if !wait && timeout != "" {
		t.Fatalf("accepted timeout %q without wait", timeout)
	}
	if timeout == "" && d != defaultWaitTimeout {
		t.Fatalf("no timeout given but got %s, want the default %s", d, defaultWaitTimeout)
	}
	if timeout != "" {
		if want, err := time.ParseDuration(timeout); err != nil || want != d {
			t.Fatalf("timeout %q decoded as %s", timeout, d)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAdminTargetSpellings: one target has one spelling, whichever the
// caller used.
func TestAdminTargetSpellings(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	srv, _ := startServer(t, cfg)
	host, port, _ := net.SplitHostPort(hostPort(a.URL))
	code, body := adminCall(t, srv, "POST", "/v1/pools/app/attach", "test-token", `{"target":"`+host+`:0`+port+`"}`)
	if code != 200 || !strings.Contains(body, `"address": "`+hostPort(a.URL)+`"`) {
		t.Fatalf("attach with a leading zero: %d %s", code, body)
	}
	if n := len(srv.pool("app").list()); n != 1 {
		t.Fatalf("pool has %d targets, want 1", n)
	}
}

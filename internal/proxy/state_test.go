package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stopServer shuts srv down; safe to call twice (startServer's cleanup does
// it again).
func stopServer(t *testing.T, srv *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// readState parses the state file strictly.
func readState(t *testing.T, path string) savedState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read state file: %v", err)
	}
	var st savedState
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("state file is not valid JSON: %v\n%s", err, data)
	}
	if dec.More() {
		t.Fatalf("state file has data after the JSON object:\n%s", data)
	}
	return st
}

// noTempFiles checks that dir holds only the named files.
func noTempFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("directory of the state file holds %v, want %v (a temp file left behind?)", got, want)
	}
}

// poolTargets returns address → weight of the pool's targets, detached ones
// included.
func poolTargets(srv *Server, pool string) map[string]int {
	out := map[string]int{}
	for _, t := range srv.pool(pool).list() {
		out[t.addr] = int(t.weight.Load())
	}
	return out
}

func TestStateRestoredAfterRestart(t *testing.T) {
	a, b, c := backend(t, "a"), backend(t, "b"), backend(t, "c")
	ta, tb, tc := hostPort(a.URL), hostPort(b.URL), hostPort(c.URL)
	cfg := testConfig(t, ta)
	dir := filepath.Dir(cfg.StateFile)
	srv, _ := startServer(t, cfg)

	if _, err := os.Stat(cfg.StateFile); err == nil {
		t.Fatal("a state file was written before any change")
	}
	if _, err := srv.Attach("app", tb, 3); err != nil {
		t.Fatalf("Attach b: %v", err)
	}
	if _, err := srv.Attach("app", tc, -1); err != nil {
		t.Fatalf("Attach c: %v", err)
	}
	if _, err := srv.SetWeight("app", ta, 5); err != nil {
		t.Fatalf("SetWeight a: %v", err)
	}
	if _, err := srv.Detach("app", tc); err != nil {
		t.Fatalf("Detach c: %v", err)
	}
	// Changing a target's weight after it was detached keeps it detached.
	if _, err := srv.SetWeight("app", tc, 9); err != nil {
		t.Fatalf("SetWeight c: %v", err)
	}
	stopServer(t, srv)

	st := readState(t, cfg.StateFile)
	if st.Version != stateVersion {
		t.Errorf("state version %d, want %d", st.Version, stateVersion)
	}
	want := []savedTarget{{ta, 5, false}, {tb, 3, false}, {tc, 9, true}}
	if got := st.Pools["app"]; !slices.Equal(got, want) || len(st.Pools) != 1 {
		t.Fatalf("state file pools %+v, want app: %+v", st.Pools, want)
	}
	noTempFiles(t, dir, filepath.Base(cfg.StateFile))
	if fi, err := os.Stat(cfg.StateFile); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("state file mode: %v %v, want 0644", fi.Mode().Perm(), err)
	}

	// A new server with the same config restores a and b with their
	// weights, and c still detached: listed as unused, given no request.
	again, _ := startServer(t, cfg)
	got := poolTargets(again, "app")
	if len(got) != 3 || got[ta] != 5 || got[tb] != 3 || got[tc] != 9 {
		t.Fatalf("restored targets %v, want %s:5, %s:3 and %s:9", got, ta, tb, tc)
	}
	if st := stateOf(again, "app", tc); st != "unused" {
		t.Fatalf("detached target restored as %s, want unused", st)
	}
	for _, rt := range again.pool("app").routes.Load().targets {
		if rt.addr == tc {
			t.Fatal("the restored detached target is routable")
		}
	}
	// Order is kept: attach order, as listed.
	var order []string
	for _, tg := range again.pool("app").list() {
		order = append(order, tg.addr)
	}
	if !slices.Equal(order, []string{ta, tb, tc}) {
		t.Errorf("restored order %v, want [%s %s %s]", order, ta, tb, tc)
	}
}

func TestStateDetachedConfigTargetStaysDetached(t *testing.T) {
	a := backend(t, "a")
	ta := hostPort(a.URL)
	cfg := testConfig(t, ta)
	srv, _ := startServer(t, cfg)
	if _, err := srv.Detach("app", ta); err != nil {
		t.Fatal(err)
	}
	stopServer(t, srv)
	if st := readState(t, cfg.StateFile); !slices.Equal(st.Pools["app"], []savedTarget{{ta, 1, true}}) {
		t.Fatalf(`state has app = %#v, want only %s, detached`, st.Pools["app"], ta)
	}
	// The config still lists a, but it was detached: it must not serve again.
	again, _ := startServer(t, cfg)
	if st := stateOf(again, "app", ta); st != "unused" {
		t.Fatalf("detached config target is %s after a restart, want unused", st)
	}
	if rs := again.pool("app").routes.Load(); len(rs.targets) != 0 {
		t.Fatalf("detached config target is routable after a restart: %+v", rs)
	}
}

func TestStateReplacedAtomically(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t, hostPort(a.URL))
	dir := filepath.Dir(cfg.StateFile)
	srv, _ := startServer(t, cfg)
	if _, err := srv.SetWeight("app", hostPort(a.URL), 2); err != nil {
		t.Fatal(err)
	}
	// Holding the old file open keeps its inode from being reused, so a
	// replaced file is told apart from one rewritten in place.
	old, err := os.Open(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	// Readers never see a partly written file while saves go on.
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var badSample atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				data, err := os.ReadFile(cfg.StateFile)
				reads.Add(1)
				var st savedState
				if err != nil || json.Unmarshal(data, &st) != nil || st.Version != stateVersion || len(st.Pools["app"]) == 0 {
					bad.Add(1)
					badSample.Store(string(data))
				}
			}
		}()
	}
	for w := 0; w <= 40; w++ {
		if _, err := srv.SetWeight("app", hostPort(a.URL), w%1000); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "readers ran", func() bool { return reads.Load() >= 20 })
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d of %d reads saw a partial or missing state file, such as %q", n, reads.Load(), badSample.Load())
	}
	before, err := old.Stat()
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(cfg.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("the state file was rewritten in place, not replaced by a rename")
	}
	if data, err := io.ReadAll(old); err != nil || !strings.Contains(string(data), `"weight": 2`) {
		t.Errorf("the file as it was before the saves changed: %q %v", data, err)
	}
	if st := readState(t, cfg.StateFile); st.Pools["app"][0].Weight != 40 {
		t.Errorf("last saved weight %d, want 40", st.Pools["app"][0].Weight)
	}
	noTempFiles(t, dir, filepath.Base(cfg.StateFile))
}

func TestStateCorruptFile(t *testing.T) {
	tests := []struct {
		name, content string
		mention       []string
	}{
		{"not JSON", "{not json", []string{"corrupt"}},
		{"empty", "", []string{"corrupt"}},
		{"truncated", `{"version": 1, "pools": {"app": [{"address": "127.0.0.1:1"`, []string{"corrupt"}},
		{"wrong types", `{"version": 1, "pools": {"app": "127.0.0.1:1"}}`, []string{"corrupt"}},
		{"newer version", `{"version": 3, "pools": {}}`, []string{"version 3"}},
		{"no version", `{"pools": {}}`, []string{"version 0"}},
		{"null", `null`, []string{"version 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			if err := os.WriteFile(cfg.StateFile, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			srv, err := New(cfg, Options{})
			if err == nil {
				stopServer(t, srv)
				t.Fatal("New accepted a bad state file")
			}
			for _, s := range append(tc.mention, cfg.StateFile) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			// The file is left alone for the operator to look at.
			if data, _ := os.ReadFile(cfg.StateFile); string(data) != tc.content {
				t.Errorf("bad state file was changed to %q", data)
			}
		})
	}
}

func TestStateUnknownPoolDropped(t *testing.T) {
	a := backend(t, "a")
	cfg := testConfig(t)
	st := `{"version": 1, "pools": {"gone": [{"address": "127.0.0.1:1", "weight": 1}], "app": [{"address": "` + hostPort(a.URL) + `", "weight": 4}]}}`
	if err := os.WriteFile(cfg.StateFile, []byte(st), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _ := startServer(t, cfg)
	if srv.pool("gone") != nil {
		t.Error("a pool only the state file names was created")
	}
	if got := poolTargets(srv, "app"); len(got) != 1 || got[hostPort(a.URL)] != 4 {
		t.Errorf("restored %v, want %s with weight 4", got, hostPort(a.URL))
	}
}

// TestRestoredTargetTrusted checks that a target attached before a restart
// serves right after Start once it passes one check, without waiting for
// healthy_threshold checks, while a target attached at run time must pass
// them all.
func TestRestoredTargetTrusted(t *testing.T) {
	up, sick := backend(t, "up"), sickBackend(t)
	tests := []struct {
		name   string
		target string
		want   string // right after Start
	}{
		{"passes its first check", hostPort(up.URL), "healthy"},
		{"fails its first check", hostPort(sick.URL), "initial"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			h := &cfg.Pools["app"].Health
			// A second at 50ms: far longer than Start takes, so states seen
			// right after Start come from the first check alone.
			h.HealthyThreshold, h.UnhealthyThreshold = 20, 20
			srv, _ := startServer(t, cfg)
			tg, err := srv.Attach("app", tc.target, 2)
			if err != nil {
				t.Fatal(err)
			}
			// Attached at run time: one passed check is not enough.
			select {
			case <-tg.checked:
			case <-time.After(5 * time.Second):
				t.Fatal("no first health check")
			}
			if st := tg.loadState(); st != stateInitial {
				t.Fatalf("target attached at run time is %s after one check, want initial", st.lbState())
			}
			stopServer(t, srv)

			again, _ := startServer(t, cfg)
			if st := stateOf(again, "app", tc.target); st != tc.want {
				t.Fatalf("restored target is %s right after Start, want %s", st, tc.want)
			}
			restored := again.pool("app").lookup(tc.target)
			if w := restored.weight.Load(); w != 2 {
				t.Errorf("restored weight %d, want 2", w)
			}
			if tc.want == "healthy" {
				if rs := again.pool("app").routes.Load(); len(rs.targets) != 1 || rs.targets[0] != restored || rs.failOpen {
					t.Errorf("restored healthy target is not routable: %+v", rs)
				}
			}
		})
	}
}

func TestMergeConfigEdits(t *testing.T) {
	st := func(pairs ...any) []savedTarget {
		var out []savedTarget
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, savedTarget{Address: pairs[i].(string), Weight: pairs[i+1].(int)})
		}
		return out
	}
	cases := []struct {
		name                 string
		saved, before, after []savedTarget
		want                 []savedTarget
	}{
		{"no edits keep API changes", st("a:1", 1, "x:1", 5), st("a:1", 1, "b:1", 1), st("a:1", 1, "b:1", 1), st("a:1", 1, "x:1", 5)},
		{"added in file", st("a:1", 1), st("a:1", 1), st("a:1", 1, "c:1", 2), st("a:1", 1, "c:1", 2)},
		{"removed from file", st("a:1", 1, "b:1", 1), st("a:1", 1, "b:1", 1), st("a:1", 1), st("a:1", 1)},
		{"weight edited in file", st("a:1", 3), st("a:1", 1), st("a:1", 7), st("a:1", 7)},
		{"API weight kept when file unchanged", st("a:1", 3), st("a:1", 1), st("a:1", 1), st("a:1", 3)},
		{"added in file, already attached by API", st("a:1", 4), st(), st("a:1", 1), st("a:1", 4)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := mergeConfigEdits(c.saved, c.before, c.after)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

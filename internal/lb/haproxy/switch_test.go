package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zerodown/zerodown/internal/proctest"
)

func TestParseShowMap(t *testing.T) {
	const path = "/etc/haproxy/bg.map"
	tests := []struct {
		name, out string
		want      map[string]string
		wantErr   string // the error's start
	}{
		{"live and preview", "0x55d0c1a2b3c0 live blue\n0x55d0c1a2b3f0 preview green\n\n",
			map[string]string{"live": "blue", "preview": "green"}, ""},
		{"other entries, no trailing newline", "0x1 preview green\n0x2 live blue\n0x3 other thing",
			map[string]string{"live": "blue", "preview": "green", "other": "thing"}, ""},
		{"tabs and blank lines", "\n0x1\tlive\tgreen\n   \n",
			map[string]string{"live": "green"}, ""},
		{"a value with spaces (a shared map)", "0x1 greeting hello   world\n0x2 live blue\n",
			map[string]string{"greeting": "hello   world", "live": "blue"}, ""},
		{"empty map", "\n", map[string]string{}, ""},
		{"an unknown map", "Unknown map identifier. Please use #<id> or <file>.\n\n", nil,
			"haproxy: show map /etc/haproxy/bg.map: Unknown map identifier. Please use #<id> or <file>."},
		{"permission denied after an entry", "0x1 live blue\nPermission denied\n", nil,
			"haproxy: show map /etc/haproxy/bg.map: "},
		{"no pointer", "55d0c1a2b3c0 live blue\n", nil, "haproxy: show map /etc/haproxy/bg.map: 55d0c1a2b3c0 live blue"},
		{"key without a value", "0x1 live\n", nil, "haproxy: show map /etc/haproxy/bg.map: 0x1 live"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseShowMap(path, tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || got != nil {
					t.Fatalf("entries %v, error %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("entries %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRewriteMapFile(t *testing.T) {
	set := map[string]string{MapKeyLive: "green", MapKeyPreview: "blue"}
	tests := []struct {
		name, in, want string
	}{
		{"comments and other lines kept",
			"# blue-green map\n# live red\n\nother thing\nlive blue\n  # preview nobody\npreview green\n",
			"# blue-green map\n# live red\n\nother thing\nlive green\n  # preview nobody\npreview blue\n"},
		{"a key the file lacks is not added", "live blue\n", "live green\n"},
		{"tabs, spaces and a last line without newline", "preview\tgreen \nlive   blue", "preview blue\nlive green\n"},
		{"a commented entry is a comment", "#live blue\nlive blue\n", "#live blue\nlive green\n"},
		{"a key named alone is left", "live\n", "live\n"},
		{"already switched", "live green\npreview blue\n", "live green\npreview blue\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bluegreen.map")
			if err := os.WriteFile(path, []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := rewriteMapFile(path, set); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("file:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
	t.Run("file mode kept", func(t *testing.T) {
		for _, mode := range []fs.FileMode{0o600, 0o644, 0o640, 0o604} {
			path := filepath.Join(t.TempDir(), "bluegreen.map")
			if err := os.WriteFile(path, []byte("live blue\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil { // past the umask
				t.Fatal(err)
			}
			if err := rewriteMapFile(path, set); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != mode {
				t.Errorf("mode %v after the rewrite, want %v", st.Mode().Perm(), mode)
			}
		}
	})
	t.Run("a missing file is left alone", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "bluegreen.map")
		if err := rewriteMapFile(path, set); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the missing map was created: %v", err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("files left behind: %v", left)
		}
	})
}

func TestNewMapSwitcherErrors(t *testing.T) {
	tests := []struct {
		name, socket, path string
		pools              [2]string
		want               string
	}{
		{"no socket", "", "/etc/haproxy/bg.map", [2]string{"blue", "green"}, "haproxy: the stats socket is empty"},
		{"no map", "/run/haproxy.sock", "", [2]string{"blue", "green"}, "haproxy: the blue-green map's path is empty"},
		{"one backend twice", "/run/haproxy.sock", "/etc/haproxy/bg.map", [2]string{"blue", "blue"},
			`haproxy: blue-green needs two backends, got "blue" and "blue"`},
		{"an empty backend", "/run/haproxy.sock", "/etc/haproxy/bg.map", [2]string{"blue", ""},
			`haproxy: blue-green needs two backends, got "blue" and ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMapSwitcher(tt.socket, tt.path, tt.pools)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("switcher %v, error %v; want %q", m, err, tt.want)
			}
		})
	}
}

// switchCfg is HAProxy with its stats socket (%[1]s) and two frontends on
// unix sockets, users' (%[2]s) and the preview (%[3]s), choosing backend
// blue (server at %[4]s) or green (%[5]s) through the map %[6]s. Maps
// %[7]s and %[8]s are loaded too (HAProxy loads a map a rule names).
const switchCfg = `global
    stats socket %[1]s level admin
defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend live
    bind unix@%[2]s
    http-request set-var(txn.other) str(live),map(%[7]s,none)
    http-request set-var(txn.stray) str(live),map(%[8]s,none)
    use_backend %%[str(live),map(%[6]s)]
frontend preview
    bind unix@%[3]s
    use_backend %%[str(preview),map(%[6]s)]
backend blue
    server b1 %[4]s
backend green
    server g1 %[5]s
`

// unixGet GETs / through the frontend listening on the unix socket path
// and returns the body.
func unixGet(t *testing.T, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	resp, err := c.Get("http://haproxy/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET through %s: %d %s", filepath.Base(path), resp.StatusCode, body)
	}
	return string(body)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The switcher against a real HAProxy: users on blue and the preview on
// green; a switch sends users to green and the preview to blue, in HAProxy
// and in the map's file; a switch to another backend, and maps without a
// usable live entry, are refused.
func TestMapSwitcherAgainstHAProxy(t *testing.T) {
	bin := proctest.NeedProgram(t, "haproxy", "/usr/sbin/haproxy")
	dir, err := os.MkdirTemp("", "zd-hap") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var (
		stats   = filepath.Join(dir, "stats.sock")
		live    = filepath.Join(dir, "live.sock")
		preview = filepath.Join(dir, "preview.sock")
		bgMap   = filepath.Join(dir, "bluegreen.map")
		noLive  = filepath.Join(dir, "nolive.map")
		stray   = filepath.Join(dir, "stray.map")
		bgFile  = "# users and the preview\nlive blue\npreview green\n"
	)
	for path, content := range map[string]string{bgMap: bgFile, noLive: "preview green\n", stray: "live red\npreview green\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(bgMap, 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, switchCfg, stats, live, preview, app(t, "blue"), app(t, "green"), bgMap, noLive, stray), 0o600); err != nil {
		t.Fatal(err)
	}
	proctest.Start(t, "haproxy", bin, "-f", cfg, "-db")
	proctest.Eventually(t, 10*time.Second, "HAProxy's sockets", func() bool {
		for _, s := range []string{stats, live, preview} {
			c, err := net.DialTimeout("unix", s, time.Second)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})

	pools := [2]string{"blue", "green"}
	sw, err := NewMapSwitcher(stats, bgMap, pools)
	if err != nil {
		t.Fatal(err)
	}
	showMap := func(path string) map[string]string {
		t.Helper()
		out, err := sw.rt.Command(ctxFor(t, 5*time.Second), "show map "+path)
		if err != nil {
			t.Fatal(err)
		}
		e, err := parseShowMap(path, out)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	// state checks where live traffic and the preview go, by every
	// account: the switcher, HAProxy's map, the file, and requests.
	state := func(wantLive, wantPreview string) {
		t.Helper()
		if got, err := sw.Live(ctxFor(t, 5*time.Second)); err != nil || got != wantLive {
			t.Fatalf("Live = %q, %v; want %s", got, err, wantLive)
		}
		if e := showMap(bgMap); e[MapKeyLive] != wantLive || e[MapKeyPreview] != wantPreview || len(e) != 2 {
			t.Fatalf("show map: %v; want live %s, preview %s", e, wantLive, wantPreview)
		}
		wantFile := "# users and the preview\nlive " + wantLive + "\npreview " + wantPreview + "\n"
		if got := readFile(t, bgMap); got != wantFile {
			t.Fatalf("map file:\n%s\nwant:\n%s", got, wantFile)
		}
		if got := unixGet(t, live); got != "hello from "+wantLive {
			t.Fatalf("users got %q, want %s", got, wantLive)
		}
		if got := unixGet(t, preview); got != "hello from "+wantPreview {
			t.Fatalf("the preview got %q, want %s", got, wantPreview)
		}
	}

	state("blue", "green")

	if err := sw.SwitchLive(ctxFor(t, 5*time.Second), "green"); err != nil {
		t.Fatal(err)
	}
	state("green", "blue")
	if st, err := os.Stat(bgMap); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("map file mode after the switch: %v, %v", st.Mode(), err)
	}

	// Switching to where live traffic goes already changes nothing.
	if err := sw.SwitchLive(ctxFor(t, 5*time.Second), "green"); err != nil {
		t.Fatal(err)
	}
	state("green", "blue")

	err = sw.SwitchLive(ctxFor(t, 5*time.Second), "red")
	if err == nil || err.Error() != "haproxy: switch live traffic to red: the pools are blue and green" {
		t.Fatalf("switch to red: %v", err)
	}
	state("green", "blue")

	// And back.
	if err := sw.SwitchLive(ctxFor(t, 5*time.Second), "blue"); err != nil {
		t.Fatal(err)
	}
	state("blue", "green")

	t.Run("a map without a live entry", func(t *testing.T) {
		m, err := NewMapSwitcher(stats, noLive, pools)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.Live(ctxFor(t, 5*time.Second))
		if err == nil || !strings.Contains(err.Error(), "map "+noLive+` has no "live" entry`) ||
			!strings.Contains(err.Error(), "live blue") {
			t.Fatalf("Live = %q, %v; want an error naming %s and the line to add", live, err, noLive)
		}
		err = m.SwitchLive(ctxFor(t, 5*time.Second), "green")
		if err == nil || err.Error() != "haproxy: map "+noLive+` has no "live" entry` {
			t.Fatalf("SwitchLive: %v", err)
		}
		if e := showMap(noLive); !reflect.DeepEqual(e, map[string]string{"preview": "green"}) {
			t.Errorf("the refused switch changed HAProxy's map: %v", e)
		}
		if got := readFile(t, noLive); got != "preview green\n" {
			t.Errorf("the refused switch changed the file: %q", got)
		}
	})
	t.Run("a map whose live entry is neither pool", func(t *testing.T) {
		m, err := NewMapSwitcher(stats, stray, pools)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.Live(ctxFor(t, 5*time.Second))
		want := "haproxy: map " + stray + " sends live traffic to backend red, which is neither blue nor green"
		if err == nil || err.Error() != want {
			t.Fatalf("Live = %q, %v; want %q", live, err, want)
		}
	})
	t.Run("a map HAProxy did not load", func(t *testing.T) {
		other := filepath.Join(dir, "other.map")
		m, err := NewMapSwitcher(stats, other, pools)
		if err != nil {
			t.Fatal(err)
		}
		live, err := m.Live(ctxFor(t, 5*time.Second))
		if err == nil || !strings.Contains(err.Error(), "show map "+other+": ") {
			t.Fatalf("Live = %q, %v; want an error naming %s", live, err, other)
		}
	})
}

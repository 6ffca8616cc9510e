package nginx

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A file a person wrote, with directives, parameters and a server that is
// not a host's, comes back with all of them and only `down` and weight=
// changed.
func TestFormatKeepsEverything(t *testing.T) {
	in := `# by hand
upstream other { server 10.0.0.9:80; }
upstream app {
    zone app 64k;   # shared memory
    least_conn;
    server 127.0.0.1:8101 max_fails=3 fail_timeout=10s;
    server 127.0.0.1:8102 weight=2 down;
    server 10.0.0.5:8080 backup;
    keepalive 16;
    "quoted arg" 'single' "with \"escapes\" and \\";
}
`
	c, err := parseConf("app.conf", []byte(in), "app")
	if err != nil {
		t.Fatal(err)
	}
	if !setDown(c.server("127.0.0.1:8101"), true) || !setDown(c.server("127.0.0.1:8102"), false) {
		t.Fatal("setDown changed nothing")
	}
	if !setWeight(c.server("127.0.0.1:8101"), 5) || !setWeight(c.server("127.0.0.1:8102"), 3) || setWeight(c.server("127.0.0.1:8102"), 3) {
		t.Fatal("setWeight reported the wrong change")
	}
	c.addServer("127.0.0.1:8103")
	want := header + `upstream other {
    server 10.0.0.9:80;
}
upstream app {
    zone app 64k;
    least_conn;
    server 127.0.0.1:8101 weight=5 max_fails=3 fail_timeout=10s down;
    server 127.0.0.1:8102 weight=3;
    server 10.0.0.5:8080 backup;
    server 127.0.0.1:8103;
    keepalive 16;
    "quoted arg" single "with \"escapes\" and \\";
}
`
	if got := string(c.format()); got != want {
		t.Fatalf("formatted:\n%s\nwant:\n%s", got, want)
	}
	back, err := parseConf("app.conf", c.format(), "app")
	if err != nil {
		t.Fatal(err)
	}
	if !sameConf(c, back) {
		t.Fatal("the formatted file parses to something else")
	}
	if w := weightOf(back.server("10.0.0.5:8080")); w != 1 {
		t.Errorf("default weight %d, want 1", w)
	}
	if !isDown(back.server("127.0.0.1:8101")) || isDown(back.server("127.0.0.1:8102")) {
		t.Error("down parameters did not survive")
	}
}

func TestServerAddress(t *testing.T) {
	c, err := parseConf("f", []byte("upstream app { server 10.0.0.1; server [::1]:81; }"), "app")
	if err != nil {
		t.Fatal(err)
	}
	for addr, found := range map[string]bool{"10.0.0.1:80": true, "[::1]:81": true, "10.0.0.1:81": false, "[::1]:80": false} {
		if got := c.server(addr) != nil; got != found {
			t.Errorf("server(%s) found=%v, want %v", addr, got, found)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no block", "upstream other { server a:1; }\n", "f.conf:2: no `upstream app { ... }` block"},
		{"empty", "", "f.conf:1: no `upstream app"},
		{"unclosed", "upstream app {\n server a:1;\n", "f.conf:3: unexpected end of file, expecting \"}\""},
		{"extra close", "upstream app { server a:1; }\n}\n", "f.conf:2: unexpected \"}\""},
		{"missing semicolon", "upstream app {\n server a:1\n}", "f.conf:3: unexpected \"}\" after server"},
		{"unterminated quote", "upstream app {\n server \"a:1;\n}\n", "f.conf:2: unterminated quoted string"},
		{"quote glued", "upstream app { server \"a:1\"x; }", `f.conf:1: unexpected 'x' after a quoted string`},
		{"not a block", "upstream app;", "f.conf:1: upstream app is not a block"},
		{"twice", "upstream app {server a:1;}\nupstream app {server a:1;}", "f.conf:2: a second upstream app block (the first is at line 1)"},
		{"bare server", "upstream app {\n server;\n}", "f.conf:2: a server directive in upstream app needs an address"},
		{"stray semicolon", "upstream app { ; }", `f.conf:1: unexpected ";" with no directive name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConf("f.conf", []byte(tc.in), "app")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "upstream file f.conf:") {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

// A change to a file nginx cannot read is refused before anything is
// written; a file that does not exist is an upstream with no servers.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	b, err := New(Config{UpstreamFile: filepath.Join(dir, "up.conf"), Upstream: "app", Test: []string{"false"}, Reload: []string{"false"},
		PidFile: filepath.Join(dir, "pid"), HealthPath: "/healthz", Targets: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := b.Targets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].State != "unused" || !strings.Contains(ts[0].Reason, "no server 127.0.0.1:1 in nginx upstream app in "+b.cfg.UpstreamFile) {
		t.Fatalf("targets of a missing file: %+v", ts)
	}
	if err := os.WriteFile(b.cfg.UpstreamFile, []byte("upstream app {\n server 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = b.Detach(t.Context(), "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), b.cfg.UpstreamFile+":3: unexpected end of file") {
		t.Fatalf("detach with a broken file: %v", err)
	}
	// A new file that nginx does not take is removed again.
	app := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(app.Close)
	if err := os.Remove(b.cfg.UpstreamFile); err != nil {
		t.Fatal(err)
	}
	b.cfg.HealthPath = "/"
	b.cfg.Targets = []string{strings.TrimPrefix(app.URL, "http://")}
	b.cfg.Test = []string{"true"}
	err = b.Attach(t.Context(), b.cfg.Targets[0])
	if err == nil || (procSupported && !strings.Contains(err.Error(), "read nginx's pid file")) || !strings.Contains(err.Error(), b.cfg.UpstreamFile+" is removed again, as it was") {
		t.Fatalf("attach with no nginx running: %v", err)
	}
	if _, err := os.Stat(b.cfg.UpstreamFile); !os.IsNotExist(err) {
		t.Fatalf("the upstream file is left after a failed attach: %v", err)
	}
	if err := b.Detach(t.Context(), "127.0.0.1:2"); err == nil || !strings.Contains(err.Error(), "not one of the hosts' targets") {
		t.Fatalf("detach of a server that is not a host's: %v", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	ok := Config{UpstreamFile: "/x.conf", Upstream: "app", Test: []string{"nginx", "-t"}, Reload: []string{"nginx", "-s", "reload"}, PidFile: "/run/nginx.pid", HealthPath: "/healthz"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"file", func(c *Config) { c.UpstreamFile = "" }, "upstream file is empty"},
		{"name", func(c *Config) { c.Upstream = "" }, "upstream name is empty"},
		{"test", func(c *Config) { c.Test = nil }, "test command is empty"},
		{"reload", func(c *Config) { c.Reload = []string{""} }, "reload command is empty"},
		{"pid", func(c *Config) { c.PidFile = "" }, "pid file is empty"},
		{"health", func(c *Config) { c.HealthPath = "healthz" }, "does not start with '/'"},
		{"target", func(c *Config) { c.Targets = []string{"10.0.0.1"} }, `target "10.0.0.1" is not ip:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	b, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if b.cfg.HealthTimeout != DefaultHealthTimeout {
		t.Errorf("health timeout %s", b.cfg.HealthTimeout)
	}
	if s := b.String(); s != "nginx upstream app in /x.conf" {
		t.Errorf("String() = %q", s)
	}
}

// sameConf compares two parses, lines aside.
func sameConf(a, b *conf) bool {
	return reflect.DeepEqual(withoutLines(a.Top), withoutLines(b.Top))
}

func withoutLines(ds []*directive) []*directive {
	out := make([]*directive, len(ds))
	for i, d := range ds {
		c := *d
		c.Line = 0
		c.Block = withoutLines(d.Block)
		if !d.IsBlock {
			c.Block = nil
		}
		if len(c.Args) == 0 {
			c.Args = nil
		}
		out[i] = &c
	}
	return out
}

// FuzzParse: parsing never panics, and what format writes parses back to
// the same directives (and formats to the same bytes).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"upstream app { server 127.0.0.1:8101; }",
		"upstream app {\n zone z 64k; least_conn;\n server 127.0.0.1:8101 weight=2 max_fails=3 down;\n server h:1 backup; keepalive 8;\n}\n",
		"# c\nupstream other { server a:1; }\nupstream app { server \"a b\" 'c\\'d'; x \"\\t\\n\\\\\"; }",
		"upstream app { server a:1; } map $a $b { default 1; }",
		"upstream app { server a\\;b; }",
		"upstream app {",
		"upstream app { server \"a\"b; }",
		"\"\" \"\"; upstream app { \"\" {} }",
		"upstream app { server a:1 # comment\n; }",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConf("f", data, "app")
		if err != nil {
			return
		}
		out := c.format()
		back, err := parseConf("f", out, "app")
		if err != nil {
			t.Fatalf("the formatted file does not parse: %v\n%s", err, out)
		}
		if !sameConf(c, back) {
			t.Fatalf("the formatted file parses to something else:\n%q\nformatted:\n%s", data, out)
		}
		if again := back.format(); string(again) != string(out) {
			t.Fatalf("formatting twice differs:\n%s\n%s", out, again)
		}
	})
}

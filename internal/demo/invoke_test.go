package demo

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestInvocationLine(t *testing.T) {
	const (
		tree   = "/home/ada/src/zerodown"
		goTmp  = "/tmp/go-build2812426339/b001/exe/zerodown"
		cached = "/home/ada/.cache/go-build/ab/abcdef-d/zerodown"
	)
	tests := []struct {
		name string
		inv  Invocation
		want string
	}{
		{
			name: "go run from the root of the tree",
			inv:  Invocation{Exe: goTmp, Dir: tree, Source: tree, Tree: tree},
			want: "go run ./cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run from a directory below the root",
			inv:  Invocation{Exe: goTmp, Dir: tree + "/internal/demo", Source: tree, Tree: tree},
			want: "go run ../../cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run from the command's own directory",
			inv:  Invocation{Exe: goTmp, Dir: tree + "/cmd/zerodown", Source: tree, Tree: tree},
			want: "go run . history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run from examples, one level down",
			inv:  Invocation{Exe: goTmp, Dir: tree + "/examples", Source: tree, Tree: tree},
			want: "go run ../cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run of a tree the shell is not in",
			inv:  Invocation{Exe: goTmp, Dir: "/home/ada", Source: tree},
			want: "go -C /home/ada/src/zerodown run ./cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run from a sibling directory whose name starts like the tree's",
			inv:  Invocation{Exe: goTmp, Dir: tree + "-old", Source: tree},
			want: "go -C /home/ada/src/zerodown run ./cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run built with -trimpath: the tree the shell is in",
			inv:  Invocation{Exe: goTmp, Dir: tree + "/docs", Tree: tree},
			want: "go run ../cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run of a version from the module cache",
			inv:  Invocation{Exe: goTmp, Dir: "/home/ada", Source: "/home/ada/go/pkg/mod/github.com/zerodown/zerodown@v0.3.1"},
			want: "go run github.com/zerodown/zerodown/cmd/zerodown@v0.3.1 history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run cached in the build cache",
			inv:  Invocation{Exe: "/var/gocache/ab/zerodown", Dir: tree, GoCache: "/var/gocache", Source: tree, Tree: tree},
			want: "go run ./cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run cached in the default build cache",
			inv:  Invocation{Exe: cached, Dir: tree, Source: tree, Tree: tree},
			want: "go run ./cmd/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "go run with no source to name: the executable, while it lasts",
			inv:  Invocation{Exe: goTmp, Dir: "/home/ada"},
			want: goTmp + " history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "installed and on PATH",
			inv:  Invocation{Exe: "/usr/local/bin/zerodown", Dir: "/home/ada", OnPath: "/usr/local/bin/zerodown", Source: tree},
			want: "zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "another zerodown first on PATH",
			inv:  Invocation{Exe: "/opt/zerodown/bin/zerodown", Dir: "/home/ada", OnPath: "/usr/local/bin/zerodown"},
			want: "/opt/zerodown/bin/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "built in the tree, not on PATH",
			inv:  Invocation{Exe: tree + "/zerodown", Dir: tree, Source: tree, Tree: tree},
			want: "/home/ada/src/zerodown/zerodown history -c /tmp/d/zerodown.yaml",
		},
		{
			name: "a path that needs quoting",
			inv:  Invocation{Exe: "/home/ada/my programs/zerodown", Dir: "/home/ada"},
			want: "'/home/ada/my programs/zerodown' history -c /tmp/d/zerodown.yaml",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.inv.Line("history", "-c", "/tmp/d/zerodown.yaml"); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "''",
		"v3":                     "v3",
		"/tmp/zerodown-demo-1/a": "/tmp/zerodown-demo-1/a",
		"a b":                    "'a b'",
		"it's":                   `'it'\''s'`,
		"$HOME":                  "'$HOME'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestSourceTree checks which directories count as the zerodown source
// tree: the nearest go.mod decides, and it must be zerodown's with the
// sample app in it.
func TestSourceTree(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("zd/go.mod", "// the tree\nmodule github.com/zerodown/zerodown // ours\n\ngo 1.26\n")
	write("zd/examples/hello/main.go", "package main\n")
	write("zd/internal/demo/x.go", "package demo\n")
	write("zd/testdata/other/go.mod", "module example.com/other\n")
	write("quoted/go.mod", "module \"github.com/zerodown/zerodown\"\n")
	write("quoted/examples/hello/main.go", "package main\n")
	write("nohello/go.mod", "module github.com/zerodown/zerodown\n")
	write("fork/go.mod", "module github.com/zerodown/zerodown-fork\n")
	write("fork/examples/hello/main.go", "package main\n")
	write("plain/file", "")

	tests := []struct{ dir, want string }{
		{"zd", "zd"},
		{"zd/internal/demo", "zd"},
		{"zd/testdata/other", ""},
		{"quoted", "quoted"},
		{"nohello", ""},
		{"fork/examples", ""},
		{"plain", ""},
	}
	for _, tt := range tests {
		want := ""
		if tt.want != "" {
			want = filepath.Join(root, tt.want)
		}
		if got := SourceTree(filepath.Join(root, tt.dir)); got != want {
			t.Errorf("SourceTree(%s) = %q, want %q", tt.dir, got, want)
		}
	}
}

func TestAppRun(t *testing.T) {
	tests := []struct {
		app  App
		want string
	}{
		{HelloApp("/x/hello"), `["./hello", "--listen", "127.0.0.1:${PORT}", "--fail-health"]`},
		{App{Exe: "/usr/bin/zerodown", Name: "zerodown", Args: []string{"sample-app"}}, `["./zerodown", "sample-app", "--listen", "127.0.0.1:${PORT}", "--fail-health"]`},
	}
	for _, tt := range tests {
		if got := tt.app.run("--listen", "127.0.0.1:${PORT}", "--fail-health"); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	if !reflect.DeepEqual(tests[1].app.Args, []string{"sample-app"}) {
		t.Errorf("run changed the app's Args: %q", tests[1].app.Args)
	}
}

package demo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// modulePath is the zerodown module, as its go.mod declares it.
const modulePath = "github.com/zerodown/zerodown"

// App is the sample app a sandbox deploys: one executable, packed alone into
// the release artifact, and the words that come before the app's own flags
// on its command line.
type App struct {
	// Exe is the executable packed into the release.
	Exe string
	// Name is its file name in the release: the agents run ./Name.
	Name string
	// Args come right after ./Name: for the zerodown binary, the hidden
	// subcommand that serves the sample app.
	Args []string
}

// HelloApp is a build of examples/hello at exe.
func HelloApp(exe string) App { return App{Exe: exe, Name: "hello"} }

// run is the app's command line in the zerodown.yaml, as a YAML flow
// sequence: ./Name, Args, then the sample app's flags.
func (a App) run(flags ...string) string {
	words := append(append([]string{"./" + a.Name}, a.Args...), flags...)
	for i, w := range words {
		// A Go-quoted ASCII string is a valid YAML double-quoted scalar.
		words[i] = strconv.QuoteToASCII(w)
	}
	return "[" + strings.Join(words, ", ") + "]"
}

// SourceTree returns the root of the zerodown source tree that holds dir:
// the nearest directory at or above dir with a go.mod, when that go.mod
// declares the zerodown module and examples/hello is there. It returns ""
// when dir is not inside one.
func SourceTree(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for {
		if mod, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			path := moduleOf(mod)
			mod.Close()
			if path != modulePath {
				return "" // another module, or one nested in zerodown's tree
			}
			if _, err := os.Stat(filepath.Join(dir, "examples", "hello", "main.go")); err != nil {
				return ""
			}
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// moduleOf reads the module path from a go.mod.
func moduleOf(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '"') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if p, err := strconv.Unquote(rest); err == nil {
			return p
		}
		return rest
	}
	return ""
}

// BuildHello builds examples/hello of the source tree at root into out with
// the go command at goBin; the go command's own messages go to stderr.
func BuildHello(ctx context.Context, goBin, root, out string, stderr io.Writer) (App, error) {
	build := exec.CommandContext(ctx, goBin, "build", "-o", out, "./examples/hello")
	build.Dir = root
	build.Stdout, build.Stderr = stderr, stderr
	if err := build.Run(); err != nil {
		return App{}, fmt.Errorf("go build ./examples/hello in %s: %w", root, err)
	}
	return HelloApp(out), nil
}
